"""A measuring child (``python -m ember.tune.measure``) with a planted fault: any kernel whose
``conv2d.rows`` knob is set kills the process while it compiles, as a schedule bug would."""

import os
import sys

from ember.target import Target

_knob = Target.knob


def knob(self, name, default):
    if name == "conv2d.rows" and any(k == name for k, _ in self.knobs):
        os.abort()
    return _knob(self, name, default)


Target.knob = knob

from ember.tune.measure import main  # noqa: E402  (after the fault is planted)

sys.exit(main())

"""A measuring child (``python -m ember.tune.measure``) with a planted fault:
``crash_on_workload_child.py WORKLOAD REQUEST.json RESULT.json`` kills itself whenever the
request sets knobs on the kernel ``WORKLOAD``, as a schedule bug of that kernel would."""

import json
import os
import sys

workload, request, result = sys.argv[1:]
with open(request) as f:
    if workload in (json.load(f).get("kernel_knobs") or {}):
        os.abort()

from ember.tune.measure import main  # noqa: E402

sys.exit(main([request, result]))

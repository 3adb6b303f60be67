"""The search space of one kernel: the schedule knobs its lowering asked (``Target.knob``), each
with the values :func:`ember.schedules.knobs.candidates` gives; a candidate sets all of them
(the defaults, all those that are valid values)."""

from __future__ import annotations

import itertools
import random

from ..driver.records import frozen
from ..schedules.knobs import KNOBS, MODEL_KNOBS, candidates

#: a space up to this size is listed whole; a larger one is sampled
ENUMERATE_UP_TO = 512

#: knobs the tuner leaves at their defaults: what ``parallel_min`` changes (whether the thread
#: pool wakes for a kernel) lands in the time of the next parallel kernel, which the per-kernel
#: profile charges to that one, so a kernel's own time cannot judge it
NOT_SEARCHED = frozenset({"parallel_min"})


class Space:
    """The candidates of a kernel whose lowering asked ``asked`` (name -> value it had)."""

    def __init__(self, asked: dict):
        tunable = {n: v for n, v in sorted(asked.items())
                   if n in KNOBS and n not in MODEL_KNOBS and n not in NOT_SEARCHED}
        self.axes = [(n, candidates(n)) for n in tunable]
        #: the defaults as a candidate; a default a schedule's own model chose outside the knob's
        #: range (a register tile of 17 rows) is left out: unset, the schedule chooses it again
        self.default = {n: v for n, v in tunable.items() if KNOBS[n][2](v)}

    @property
    def size(self) -> int:
        n = 1
        for _, values in self.axes:
            n *= len(values)
        return n

    def sample(self, rng: random.Random, count: int, exclude: set) -> list[dict]:
        """Up to ``count`` candidates not in ``exclude`` (a set of ``records.frozen`` candidates)."""
        if self.size <= ENUMERATE_UP_TO:
            names = [n for n, _ in self.axes]
            pool = [dict(zip(names, vs)) for vs in itertools.product(*(v for _, v in self.axes))]
            pool = [c for c in pool if frozen(c) not in exclude]
            rng.shuffle(pool)
            return pool[:count]
        out, seen = [], set(exclude)
        for _ in range(count * 4):
            c = {n: rng.choice(values) for n, values in self.axes}
            if frozen(c) not in seen:
                seen.add(frozen(c))
                out.append(c)
                if len(out) == count:
                    break
        return out

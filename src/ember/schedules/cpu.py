"""The CPU schedules (target kind ``cpu``: x86, ARM, RISC-V and wasm hosts alike).

For now the op-specific schedules are still methods of the op classes (``Op.schedule``) and the
x86-tuned helpers live in ``ops/schedule_cpu.py``; this module registers them for the ``cpu``
kind so the driver finds every schedule through :mod:`ember.schedules`.
"""

from __future__ import annotations

from ..ops import OPS
from ..ops.schedule_cpu import default_schedule
from . import register, register_default

register_default("cpu")(default_schedule)


def _method(op):
    def schedule(attrs, s, anchor, target):
        op.schedule(attrs, s, anchor, target)
    schedule.__name__ = f"{op.name}_schedule"
    return schedule


for _op in OPS.values():
    if hasattr(_op, "schedule"):
        register("cpu", _op.name)(_method(_op))

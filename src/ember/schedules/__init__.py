"""Schedules by target kind: *how* an op's loops run on one kind of device.

An op says *what* it computes (``Op.compute``, a tensor expression); the schedules that decide
how those loops are tiled, vectorized, parallelized or bound to GPU threads live here, one
module per target kind (``cpu``, later ``gpu``), registered by ``(kind, op name)``:

    @register("cpu", "Conv")
    def conv(attrs, s, anchor, target): ...

A schedule receives the node's attributes, the :class:`ember.te.Schedule` of the kernel, the
tensor its op computed (the anchor of the fused group) and the :class:`ember.Target`.  Every
kind also registers a default schedule (``register_default``), used for kernels whose lead op
has no schedule of its own; the driver reports when it falls back to it.

Lookup tries the target's kind first, then its family (``Target.family``: e.g. every GPU
target shares the ``gpu`` schedules), so a new device kind adds schedules without editing an op.
"""

from __future__ import annotations

from typing import Callable

from ..errors import TargetError

ScheduleFn = Callable[..., None]          # (attrs, schedule, anchor tensor, target) -> None
DefaultFn = Callable[..., None]           # (schedule, target) -> None

_SCHEDULES: dict[tuple[str, str], ScheduleFn] = {}
_DEFAULTS: dict[str, DefaultFn] = {}


def register(kind: str, *ops: str) -> Callable[[ScheduleFn], ScheduleFn]:
    """Registers the decorated function as the schedule of ``ops`` on targets of ``kind``."""
    def deco(fn: ScheduleFn) -> ScheduleFn:
        for op in ops:
            if (kind, op) in _SCHEDULES:
                raise ValueError(f"a {kind} schedule for {op} is registered twice")
            _SCHEDULES[(kind, op)] = fn
        return fn
    return deco


def register_default(kind: str) -> Callable[[DefaultFn], DefaultFn]:
    """Registers the decorated function as the default schedule of targets of ``kind``."""
    def deco(fn: DefaultFn) -> DefaultFn:
        if kind in _DEFAULTS:
            raise ValueError(f"the default {kind} schedule is registered twice")
        _DEFAULTS[kind] = fn
        return fn
    return deco


def _kinds(target) -> list[str]:
    _load()
    kinds = [target.kind]
    family = getattr(target, "family", None)
    if family and family != target.kind:
        kinds.append(family)
    return kinds


def lookup(target, op: str) -> ScheduleFn | None:
    """The schedule of ``op`` for ``target``, or None where only the default applies."""
    for kind in _kinds(target):
        fn = _SCHEDULES.get((kind, op))
        if fn is not None:
            return fn
    return None


def default(target) -> DefaultFn:
    """The default schedule for ``target``; a target kind with none is an error."""
    for kind in _kinds(target):
        fn = _DEFAULTS.get(kind)
        if fn is not None:
            return fn
    raise TargetError(f"no schedules are registered for targets of kind {target.kind!r}; "
                      f"kinds with schedules: {', '.join(sorted(_DEFAULTS)) or 'none'}")


def registered(kind: str) -> list[str]:
    """The ops with a schedule of their own for ``kind`` (sorted)."""
    _load()
    return sorted(op for k, op in _SCHEDULES if k == kind)


_LOADED = False


def _load() -> None:
    """Imports the modules that register schedules (once, on first lookup)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import cpu  # noqa: F401  (registers the cpu kind)
    from . import gpu  # noqa: F401  (registers the gpu family)

"""Replaying a schedule's recorded steps on a tensor expression.

``Schedule.steps`` lists every primitive a schedule applied as ``(stage label, primitive,
*arguments)`` with loops by name (:mod:`ember.te.schedule`).  :func:`replay` applies such a list
to a fresh schedule of the same tensor expression, finding each stage by its label and each loop
by its name among the stage's current loops, so the result lowers to the same loop IR as the
schedule that recorded them; the replayed schedule's own ``steps`` then equal the list.

A step that names a stage or loop the schedule does not have (now), a loop name two loops share,
or a primitive this module does not know is a :class:`ReplayError`, naming the step.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..errors import CodegenError
from .schedule import Schedule, Stage

#: the primitives with loops for arguments, by the name ``Schedule.steps`` gives them
ANNOTATIONS = {"parallel": "parallel", "vectorized": "vectorize", "unrolled": "unroll"}


class ReplayError(CodegenError):
    """Recorded steps that do not apply to this tensor expression's schedule."""


def replay(s: Schedule, steps: Iterable[Sequence]) -> Schedule:
    """Apply ``steps`` (``Schedule.steps`` of a schedule of the same tensor expression, as
    tuples or lists) to ``s``, in order; returns ``s``."""
    for k, step in enumerate(steps):
        try:
            _apply(s, step)
        except (CodegenError, TypeError, ValueError, IndexError) as e:
            raise ReplayError(f"step {k + 1} ({_text(step)}) does not apply: {str(e).split('] ', 1)[-1]}") from None
    return s


def _apply(s: Schedule, step: Sequence) -> None:
    if not isinstance(step, (list, tuple)) or len(step) < 2 or not all(isinstance(x, str) for x in step[:2]):
        raise ReplayError(f"not a schedule step: {step!r}")
    label, prim, *args = step
    st = s.stage(label)
    if prim == "split":
        name, factor = args
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise ReplayError(f"split factor {factor!r} is not an integer")
        st.split(_loop(st, name), factor)
    elif prim == "fuse":
        a, b = args
        st.fuse(_loop(st, a), _loop(st, b))
    elif prim == "reorder":
        st.reorder(*[_loop(st, n) for n in args])
    elif prim in ANNOTATIONS:
        (name,) = args
        getattr(st, ANNOTATIONS[prim])(_loop(st, name))
    elif prim == "compute_inline":
        if args:
            raise ReplayError("compute_inline takes no loop")
        st.compute_inline()
    elif prim == "compute_at":
        (name,) = args
        st.compute_at(s.root, None if name == "<top>" else _loop(s.root, name))
    elif "." in prim and prim.split(".")[0] in ("blockIdx", "threadIdx"):
        (name,) = args
        st.bind(_loop(st, name), prim)
    else:
        raise ReplayError(f"unknown schedule primitive {prim!r}")


def _loop(st: Stage, name: str):
    found = [v for v in st.leaves if v.name == name]
    if not found:
        raise ReplayError(f"stage {st.label} has no loop {name!r}; its loops: "
                          f"{', '.join(v.name for v in st.leaves)}")
    if len(found) > 1:
        raise ReplayError(f"stage {st.label} has {len(found)} loops named {name!r}")
    return found[0]


def _text(step) -> str:
    if isinstance(step, (list, tuple)) and len(step) >= 2:
        return f"{step[0]}.{step[1]}({', '.join(map(str, step[2:]))})"
    return repr(step)

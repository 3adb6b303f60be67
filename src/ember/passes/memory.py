"""Static memory planning: place every intermediate tensor of a fused graph in one arena.

The intermediates are the outputs of the fused groups (all outputs of a region group, and its
bodies' scratch buffer), except graph outputs (the caller
supplies their buffers) and constants (embedded in the artifact).  A buffer is live from the
group that writes it to the last group that reads it, inclusive: a group never writes over
what it reads.  Buffers whose lifetimes do not intersect may share bytes.

Placement is greedy by size: the largest buffers are placed first, each into the smallest gap
between the already placed buffers it is live together with (best fit), or above them all.
Every size is rounded up to ``alignment``, so every offset is aligned.

A tensor of symbolic shape is planned at its largest: every dimension at its largest value
with the symbols within their bounds (``bounds``; ``16 - seq`` is largest at seq = 0).  Its size at run time is never larger (the runtime refuses inputs beyond the
bounds), so the offsets and the arena planned once serve every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ShapeError
from ..graph.ir import Graph, Value
from .fusion import Group


def _fmt_bytes(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


@dataclass
class MemoryPlan:
    """Where each intermediate lives in the arena."""

    offsets: dict[Value, int]                 # byte offset of each intermediate in the arena
    arena_bytes: int                          # size of the arena
    total_intermediate_bytes: int             # sum of the intermediates' exact sizes
    sizes: dict[Value, int] = field(default_factory=dict)                  # bytes reserved (aligned)
    lifetimes: dict[Value, tuple[int, int]] = field(default_factory=dict)  # first, last group index
    alignment: int = 64

    def summary(self) -> str:
        n = len(self.offsets)
        if not self.total_intermediate_bytes:
            return f"memory plan: arena {_fmt_bytes(self.arena_bytes)}, {n} intermediate buffer(s)"
        ratio = self.arena_bytes / self.total_intermediate_bytes
        return (f"memory plan: arena {_fmt_bytes(self.arena_bytes)} for {n} intermediate buffer(s) of "
                f"{_fmt_bytes(self.total_intermediate_bytes)} in total ({ratio:.0%}; "
                f"alignment {self.alignment})")


def _round_up(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def plan_memory(graph: Graph, groups: list[Group], alignment: int = 64,
                bounds: dict[str, int] | None = None, exclude: set[Value] = frozenset()) -> MemoryPlan:
    """Plan the arena for ``groups`` (as returned by ``fuse(graph)``, in execution order);
    symbolic shapes are sized at their largest with the symbols within ``bounds`` (default:
    ``graph.bounds``).  Values in ``exclude`` live elsewhere (tensors the data sizes during the
    run get blocks of their own: ``build.data_dims``)."""
    bounds = dict(graph.bounds if bounds is None else bounds)
    if alignment < 1:
        raise ValueError(f"alignment must be positive, got {alignment}")
    outputs = set(graph.outputs)
    lifetimes: dict[Value, tuple[int, int]] = {}
    exact: dict[Value, int] = {}
    for k, g in enumerate(groups):
        for v in g.outputs:
            if v in outputs or v.is_const or v in exclude or v in lifetimes:
                continue
            if v.type.is_static:
                exact[v] = v.type.nbytes
            else:
                missing = sorted(v.type.symbols - set(bounds))
                if missing:
                    raise ShapeError(f"memory planning needs an upper bound of symbol(s) {', '.join(missing)}; "
                                     f"%{v.name} has type {v.type}")
                exact[v] = v.type.max_nbytes(bounds)
            lifetimes[v] = (k, k)
    for k, g in enumerate(groups):
        for v in g.inputs:
            if v in lifetimes:
                first, last = lifetimes[v]
                lifetimes[v] = (first, max(last, k))
    sizes = {v: _round_up(n, alignment) for v, n in exact.items()}

    offsets: dict[Value, int] = {}
    placed: list[tuple[int, int]] = []          # (offset, size)
    # the placed buffers live at each group: a buffer only meets those it shares a group with,
    # so placing one costs its lifetime, not the number placed before it
    live_at: list[list[int]] = [[] for _ in groups]
    order = sorted(lifetimes, key=lambda v: (-sizes[v], lifetimes[v][0], v.uid))
    for v in order:
        size = sizes[v]
        if size == 0:
            offsets[v] = 0
            continue
        first, last = lifetimes[v]
        met = {i for k in range(first, last + 1) for i in live_at[k]}
        busy = sorted((placed[i][0], placed[i][0] + placed[i][1]) for i in met)
        best, best_gap, top = None, None, 0
        for lo, hi in busy:
            gap = lo - top
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            top = max(top, hi)
        offset = best if best is not None else top
        offsets[v] = offset
        for k in range(first, last + 1):
            live_at[k].append(len(placed))
        placed.append((offset, size))
    arena = max((o + s for o, s in placed), default=0)
    return MemoryPlan(offsets, arena, sum(exact.values()), sizes, lifetimes, alignment)

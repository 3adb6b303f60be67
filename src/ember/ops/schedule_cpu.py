"""Schedules shared by many ops on CPUs: the default for elementwise / injective / reduction
groups, and the register-tiled micro-kernel used by convolution and matrix multiply."""

from __future__ import annotations

from ..te.schedule import Schedule, Stage
from ..tir.analysis import upper_bound

#: below this many output elements a kernel runs on one thread
PARALLEL_MIN_ELEMENTS = 16384

#: the size a schedule plans for along a symbolic axis whose largest value is not known
SYMBOLIC_EXTENT_HINT = 128


def size_hint(extent) -> int:
    """The extent a schedule plans for: the extent itself, or for a symbolic one its largest
    value (the symbols' bounds), which the loops' tails keep correct for smaller ones."""
    if isinstance(extent, int):
        return extent
    hi = upper_bound(extent)
    return hi if hi is not None and hi > 0 else SYMBOLIC_EXTENT_HINT


def divides(factor: int, extent) -> bool:
    """Whether ``factor`` divides ``extent`` whatever its size variables are."""
    if isinstance(extent, int):
        return extent % factor == 0
    from ..te.lower import _divisible

    return _divisible(extent, factor)


def default_schedule(s: Schedule, target, knobs: dict | None = None) -> None:
    """Vectorize the innermost axis, run the outer axes in parallel when the work is large."""
    knobs = knobs or {}
    root = s.root
    lanes = knobs.get("lanes", target.lanes)
    axes = list(root.leaves)
    if not axes:
        return
    size = 1
    for a in axes:
        size *= size_hint(a.extent)
    inner = axes[-1]
    if size_hint(inner.extent) >= lanes:
        _, vi = root.split(inner, lanes)
        root.vectorize(vi)
    if size >= knobs.get("parallel_min", PARALLEL_MIN_ELEMENTS) and len(root.leaves) > 1:
        # fuse outer axes (not the vector loop) until there is enough parallel work
        outer = root.leaves[0]
        k = 1
        while size_hint(outer.extent) < 4 * target.num_cores and k < len(root.leaves) - 1 and \
                root.kinds.get(root.leaves[k]) != "vectorized":
            outer = root.fuse(outer, root.leaves[k])
        if size_hint(outer.extent) > 1:
            root.parallel(outer)


def vectorize_partials(s: Schedule) -> None:
    """Vectorize the lane axis of the per-lane partial stages of row reductions
    (``ops.nn.row_reduce``): their reduce loop outside, the lanes inside."""
    for st in s.stages.values():
        if st.tensor.name.endswith("_partial") and st.attached and st.reduce_axes:
            lane = st.tensor.axes[-1]
            st.reorder(*st.reduce_axes, lane)
            st.vectorize(lane)


def pick_tile(extent, lo: int, hi: int) -> int:
    """A tile size in [lo, hi] that maximizes the average tile (``extent`` / number of tiles),
    the larger one on ties: a tail tile costs one more pass of the loop body.  A symbolic
    extent gets the largest tile (its size is not known, its tail is handled)."""
    if not isinstance(extent, int):
        return hi
    lo, hi = max(1, min(lo, extent)), max(1, min(hi, extent))
    best = max(range(lo, hi + 1), key=lambda t: (extent / -(-extent // t), t))
    return best


def register_tile(root: Stage, red, row_axis, col_axis, rows: int, cols: int, lanes: int,
                  before=(), after=(), min_parallel: int = 2) -> None:
    """Tile the output into ``rows`` x ``cols`` blocks computed in registers.

    ``col_axis`` is vectorized (``cols`` a multiple of ``lanes``) and ``row_axis`` unrolled.  The
    reduction ``red`` (a stage, or a list of stages of the same shape, each its own tile) is
    attached inside the row-tile loop, so its accumulators stay in
    registers and the root's epilogue (bias, activation, residual) runs once per tile.  Loop
    order: ``before`` axes, column tiles, ``after`` axes, row tiles, then the tile itself; every
    loop above the row tiles is fused into one parallel loop.
    """
    even = divides(cols, col_axis.extent)
    co, ci = root.split(col_axis, cols)
    ro, ri = root.split(row_axis, rows)
    if even:
        order = list(before) + [co] + list(after) + [ro, ri, ci]
        fusable = order[:order.index(ro)]
    elif not isinstance(col_axis.extent, int) and before:
        # a symbolic width: the column tiles (with their tail copy) stay inside the loops over
        # the batch, which run in parallel, so each matrix is finished while it is in cache
        order = list(before) + [co] + list(after) + [ro, ri, ci]
        fusable = list(before)
    else:
        # an uneven column split gets a tail copy of its loop body, so its loop cannot be fused:
        # it goes outermost and runs in parallel by itself (the tail runs after it)
        order = [co] + list(before) + list(after) + [ro, ri, ci]
        fusable = [co]
    root.reorder(*order)
    par = fusable[0]
    for v in fusable[1:]:
        par = root.fuse(par, v)
    if size_hint(par.extent) >= min_parallel:
        root.parallel(par)
    root.unroll(ri)
    root.vectorize(ci)
    # the reduction (or several, each a tile of accumulators): reduce loops outside, the
    # register tile inside
    for r in (red if isinstance(red, (list, tuple)) else [red]):
        r.compute_at(root, ro)
        r_axes = r.tensor.axes
        r_row, r_col = r_axes[_axis_index(root, row_axis)], r_axes[_axis_index(root, col_axis)]
        order_r = list(r.reduce_axes) + [r_row]
        if cols > lanes:
            cvo, cvi = r.split(r_col, lanes)
            order_r += [cvo, cvi]
            r.unroll(cvo)
            r.vectorize(cvi)
        else:
            order_r.append(r_col)
            r.vectorize(r_col)
        r.reorder(*order_r)
        r.unroll(r_row)


def _axis_index(root: Stage, axis) -> int:
    return list(root.tensor.axes).index(axis)

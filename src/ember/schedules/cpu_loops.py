"""The loop transformations the CPU schedules share: the default schedule of every kernel
without one of its own (elementwise, injective and reduction groups), vectorized row partials,
and the register-tiled micro-kernel of convolutions, matmuls and pools."""

from __future__ import annotations

from ..errors import CodegenError
from ..te.schedule import Schedule, Stage
from .cpu_model import divides, size_hint

#: below this many output elements a kernel runs on one thread
PARALLEL_MIN_ELEMENTS = 16384


def default_schedule(s: Schedule, target, work: int = 1) -> None:
    """Vectorize the innermost axis, run the outer axes in parallel when the work is large
    (the output's elements times ``work``, the work of one)."""
    root = s.root
    lanes = target.lanes
    axes = list(root.leaves)
    if not axes:
        return
    size = work
    for a in axes:
        size *= size_hint(a.extent)
    inner = axes[-1]
    if size_hint(inner.extent) >= lanes:
        _, vi = root.split(inner, lanes)
        root.vectorize(vi)
    if size >= target.knob("parallel_min", PARALLEL_MIN_ELEMENTS) and len(root.leaves) > 1:
        # fuse outer axes (not the vector loop) until there is enough parallel work
        outer = root.leaves[0]
        k = 1
        while size_hint(outer.extent) < 4 * target.num_cores and k < len(root.leaves) - 1 and \
                root.kinds.get(root.leaves[k]) != "vectorized":
            outer = root.fuse(outer, root.leaves[k])
        if size_hint(outer.extent) > 1:
            root.parallel(outer)


def row_length(s: Schedule) -> int:
    """The elements one output element of a row reduction reads (1 where there is none): the
    largest count of the reduce loops of a stage, times the lanes of partial results."""
    longest = 1
    for st in s.stages.values():
        n = 1
        for r in st.reduce_axes:
            n *= size_hint(r.extent)
        if st.tensor.name.endswith("_partial") and st.reduce_axes:
            n *= size_hint(st.tensor.axes[-1].extent)
        longest = max(longest, n)
    return longest


def vectorize_partials(s: Schedule) -> None:
    """Vectorize the lane axis of the per-lane partial stages of row reductions
    (``ops.reduce.row_reduce``): their reduce loop outside, the lanes inside."""
    for st in s.stages.values():
        if st.tensor.name.endswith("_partial") and st.attached and st.reduce_axes:
            lane = st.tensor.axes[-1]
            st.reorder(*st.reduce_axes, lane)
            st.vectorize(lane)


def blocked_conv_stages(s: Schedule, conv, target):
    """The root and reduction stages of a convolution in NCHW[x]c, its root axes (n, oc, y, x,
    o) and the vectors per output block; the block must be whole vectors."""
    root, red = s.root, s[conv]
    axes = root.tensor.axes
    ob = axes[4].extent
    if ob % target.lanes:
        raise CodegenError(f"output block {ob} is not a multiple of {target.lanes} lanes")
    return root, red, axes, ob // target.lanes


def register_tile(root: Stage, red, row_axis, col_axis, rows: int, cols: int, lanes: int,
                  before=(), after=(), min_parallel: int = 2, unroll: int = 1) -> None:
    """Tile the output into ``rows`` x ``cols`` blocks computed in registers.

    ``col_axis`` is vectorized (``cols`` a multiple of ``lanes``) and ``row_axis`` unrolled.  The
    reduction ``red`` (a stage, or a list of stages of the same shape, each its own tile) is
    attached inside the row-tile loop, so its accumulators stay in
    registers and the root's epilogue (bias, activation, residual) runs once per tile.  Loop
    order: ``before`` axes, column tiles, ``after`` axes, row tiles, then the tile itself; every
    loop above the row tiles is fused into one parallel loop.  ``unroll`` > 1 splits the
    innermost reduce loop by that factor (where it divides the loop) and unrolls the inner part:
    that many copies of the tile's body one after another.
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
        reduce = list(r.reduce_axes)
        if unroll > 1 and reduce and isinstance(reduce[-1].extent, int) and reduce[-1].extent % unroll == 0:
            ko, ki = r.split(reduce[-1], unroll)
            reduce[-1:] = [ko, ki]
            r.unroll(ki)
        order_r = reduce + [r_row]
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


def reduce_unroll(red, target, knob: str) -> int:
    """The unroll factor of ``red``'s innermost reduce loop: knob ``knob`` (default 1, none), asked
    only where that loop has a known extent of at least 2."""
    r = red[0] if isinstance(red, (list, tuple)) else red
    k = r.reduce_axes[-1] if r.reduce_axes else None
    if k is None or not isinstance(k.extent, int) or k.extent < 2:
        return 1
    return target.knob(knob, 1)


def _axis_index(root: Stage, axis) -> int:
    return list(root.tensor.axes).index(axis)

"""Schedules shared by many ops on CPUs: the default for elementwise / injective / reduction
groups, and the register-tiled micro-kernel used by convolution and matrix multiply."""

from __future__ import annotations

from ..te.schedule import Schedule, Stage
from ..tir.analysis import planned_extent

#: below this many output elements a kernel runs on one thread
PARALLEL_MIN_ELEMENTS = 16384

#: the size a schedule plans for along a symbolic axis whose largest value is not known
SYMBOLIC_EXTENT_HINT = 128


# ---- knobs -----------------------------------------------------------------------------------
# Every choice a CPU schedule makes by a cost model or a rule of thumb can be set instead, per
# compile, through the target (``ember.compile(model, knobs={"matmul.rows": 4})``,
# ``ember compile --knob matmul.rows=4``): the defaults are what the schedules below compute, a
# tuner searches the values.  Any valid value gives correct code; only the speed changes.

def _int_in(lo: int, hi: int):
    def check(v):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    check.expects = f"an integer from {lo} to {hi}"
    return check


def _one_of(*choices):
    def check(v):
        return v in choices
    check.expects = "one of " + ", ".join(repr(c) for c in choices)
    return check


#: name -> (what it sets, its default, the check of a value)
KNOBS = {
    "matmul.rows": ("rows of a matmul's register tile", "register_rows' cost model", _int_in(1, 16)),
    "matmul.vectors": ("vectors per row of a matmul's register tile", "matmul_vectors: 4 with 32 "
                       "registers, else 2, when they divide N; 1 when only one does", _int_in(1, 4)),
    "conv2d.rows": ("output pixels per register tile of a blocked (NCHWc) convolution",
                    "register_rows' cost model (depthwise: 5-8)", _int_in(1, 16)),
    "conv2d.order": ("which loop of a dense blocked convolution goes outside",
                     "conv_loop_order's L2 model", _one_of("rows", "channels")),
    "attention.rows": ("query rows per tile of the fused attention kernel", "register_rows (at most 12 "
                       "accumulators)", _int_in(1, 16)),
    "pool.rows": ("output pixels per register tile of a blocked pooling", "pick_tile in 2-14",
                  _int_in(1, 16)),
    "vector.lanes": ("float32 lanes of the generated code's vectors (at most the target's)",
                     "the target's: 16 with AVX-512, 8 with AVX2, 4 otherwise", _one_of(4, 8, 16)),
    "parallel_min": ("output elements below which a default-scheduled kernel runs on one thread",
                     str(16384), _int_in(0, 1 << 40)),
}


def check_knobs(knobs) -> dict:
    """``knobs`` as a dict, every name known and every value valid, else a TargetError."""
    from ..errors import TargetError

    out = {}
    for name, value in dict(knobs).items():
        if name not in KNOBS:
            raise TargetError(f"unknown schedule knob {name!r}; the knobs are: {', '.join(sorted(KNOBS))}")
        check = KNOBS[name][2]
        if not check(value):
            raise TargetError(f"schedule knob {name!r} expects {check.expects}, got {value!r}")
        out[name] = value
    return out


def size_hint(extent) -> int:
    """The extent a schedule plans for: the extent itself, or for a symbolic one its largest
    value (the symbols' bounds), which the loops' tails keep correct for smaller ones."""
    if isinstance(extent, int):
        return extent
    hi = planned_extent(extent)
    return hi if hi is not None and hi > 0 else SYMBOLIC_EXTENT_HINT


def divides(factor: int, extent) -> bool:
    """Whether ``factor`` divides ``extent`` whatever its size variables are."""
    if isinstance(extent, int):
        return extent % factor == 0
    from ..te.lower import _divisible

    return _divisible(extent, factor)


def default_schedule(s: Schedule, target) -> None:
    """Vectorize the innermost axis, run the outer axes in parallel when the work is large."""
    root = s.root
    lanes = target.lanes
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
    if size >= target.knob("parallel_min", PARALLEL_MIN_ELEMENTS) and len(root.leaves) > 1:
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


def conv_loop_order(in_bytes: int, weight_bytes: int, out_rows: int, out_blocks: int, kernel_rows: int,
                    in_height: int, l2_bytes: int) -> str:
    """Which loop of a direct convolution goes outside: ``"channels"`` (one output-channel block
    at a time over the whole image: the block's weights stay in cache, the input is read once per
    block) or ``"rows"`` (one output row at a time through every channel block: the rows of
    input it reads stay in cache, the weights are read once per row).

    Each order costs nothing beyond one pass over its data when what it keeps fits one core's L2;
    otherwise it rereads the other operand from L3, ``out_blocks`` times for the input and
    ``out_rows`` times for the weights.  Input rereads count three times: they are C/cb strided
    streams (one per channel block) that prefetch worse than the weights' one contiguous stream
    (ResNet-50, one core: its stride-2 and 1x1 reduction convolutions over 28x28 and larger
    images gain 10-30% from ``rows``; its 7x7 layers, whose weights dwarf the image, lose 5%)."""
    block_weights = weight_bytes // max(out_blocks, 1)
    row_input = in_bytes * min(kernel_rows, in_height) // max(in_height, 1)
    cost_channels = 0 if in_bytes + block_weights <= l2_bytes else 3 * out_blocks * in_bytes
    cost_rows = 0 if weight_bytes + row_input <= l2_bytes else out_rows * weight_bytes
    return "rows" if cost_rows < cost_channels else "channels"


#: a model of the register-tiled micro-kernel on x86 cores (16 vector registers, or 32 with
#: AVX-512VL; two FMA and two vector-load ports): cycles per step of the reduction for a tile of
#: ``rows`` x ``vecs`` vectors, of which ``register_rows`` picks the cheapest way to cover an
#: output width
VECTOR_REGISTERS = 16
FMA_CHAIN_CYCLES = 5          # one FMA's latency (4) plus slack: the floor of any tile's step
TILE_OVERHEAD_CYCLES = 0.25   # loop and epilogue, spread over the reduction


def tile_step_cycles(rows: int, vecs: int, registers: int = VECTOR_REGISTERS) -> float:
    """Cycles of one reduction step of a rows x vecs tile: the FMAs on two ports, the loads on
    two (one broadcast per row; the weight vectors in registers when they fit next to the
    accumulators and the broadcast, else re-read as memory operands of every row's FMAs), and
    the accumulator's dependency chain."""
    acc = rows * vecs
    free = registers - acc - 1
    loads = rows + (vecs if free >= vecs else 1 + rows * (vecs - max(free, 0)))
    return max(acc / 2, loads / 2, FMA_CHAIN_CYCLES) + TILE_OVERHEAD_CYCLES


def max_accumulators(registers: int = VECTOR_REGISTERS) -> int:
    """The most accumulators a register tile may have: room is left for the broadcast and a
    couple of weight vectors (14 of 16 registers, 28 of 32)."""
    return registers - registers // 8


def register_rows(extent, vecs: int, max_acc: int | None = None, registers: int = VECTOR_REGISTERS) -> int:
    """The rows of a register tile of ``vecs`` vectors per row (at most ``max_acc``
    accumulators, by default ``max_accumulators(registers)``) that cover ``extent`` output rows in
    the fewest modeled cycles, counting the tail tile; ties go to the larger tile.  E.g. with two
    vectors and 16 registers: 7 rows for widths 7 and 14 (one or two exact tiles), 6 for 56 and
    197 (a 7-row tile is bound by its 15 loads per step)."""
    if max_acc is None:
        max_acc = max_accumulators(registers)
    hi = max(1, max_acc // vecs)
    n = size_hint(extent)

    def cost(r: int) -> float:
        full, tail = divmod(n, r)
        return full * tile_step_cycles(r, vecs, registers) + (tile_step_cycles(tail, vecs, registers) if tail else 0.0)

    return min(range(1, min(hi, n) + 1), key=lambda r: (cost(r), -r))


def matmul_vectors(n, lanes: int, registers: int = VECTOR_REGISTERS) -> int:
    """Vectors per row of a matmul's register tile for an output width ``n``: the widest of 4
    (with 32 registers), 2 and 1 that divides it, 2 when none does (its tail is a copy of the
    loop).  Wider tiles read the left operand fewer times: on a 32-register core a 6 x 4 tile
    runs ViT-B/16's matmuls 5% faster than 6 x 2."""
    for vecs in ((4, 2) if registers >= 32 else (2,)):
        if divides(vecs * lanes, n):
            return vecs
    return 1 if divides(lanes, n) else 2


def blocked_conv_stages(s: Schedule, conv, target):
    """The root and reduction stages of a convolution in NCHW[x]c, its root axes (n, oc, y, x,
    o) and the vectors per output block; the block must be whole vectors."""
    root, red = s.root, s[conv]
    axes = root.tensor.axes
    ob = axes[4].extent
    if ob % target.lanes:
        from ..errors import CodegenError

        raise CodegenError(f"output block {ob} is not a multiple of {target.lanes} lanes")
    return root, red, axes, ob // target.lanes


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

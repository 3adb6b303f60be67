"""The cost models and rules of thumb of the CPU schedules: the sizes a schedule plans for, tile
sizes, the loop order of a direct convolution, and the register-tiled micro-kernel's model.

The micro-kernel's numbers (vector registers, FMA and load ports, the FMA's latency chain) are
the target's (:class:`ember.target.CoreModel`, ``Target.core``), not constants of one ISA.
"""

from __future__ import annotations

from ..target import CoreModel
from ..tir.analysis import planned_extent

#: the size a schedule plans for along a symbolic axis whose largest value is not known
SYMBOLIC_EXTENT_HINT = 128


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


# ---- the register-tiled micro-kernel ---------------------------------------------------------
# cycles per step of the reduction for a tile of ``rows`` x ``vecs`` vectors on a core described
# by a CoreModel, of which ``register_rows`` picks the cheapest way to cover an output width

def tile_step_cycles(rows: int, vecs: int, core: CoreModel) -> float:
    """Cycles of one reduction step of a rows x vecs tile: the FMAs on the FMA ports, the loads
    on the load ports (one broadcast per row; the weight vectors in registers when they fit next
    to the accumulators and the broadcast, else re-read as memory operands of every row's FMAs),
    and the accumulator's dependency chain."""
    acc = rows * vecs
    free = core.registers - acc - 1
    loads = rows + (vecs if free >= vecs else 1 + rows * (vecs - max(free, 0)))
    return max(acc / core.fma_ports, loads / core.load_ports, core.fma_chain_cycles) + core.tile_overhead_cycles


def max_accumulators(core: CoreModel) -> int:
    """The most accumulators a register tile may have: room is left for the broadcast and a
    couple of weight vectors (14 of 16 registers, 28 of 32)."""
    return core.registers - core.registers // 8


def register_rows(extent, vecs: int, core: CoreModel, max_acc: int | None = None) -> int:
    """The rows of a register tile of ``vecs`` vectors per row (at most ``max_acc``
    accumulators, by default ``max_accumulators(core)``) that cover ``extent`` output rows in
    the fewest modeled cycles, counting the tail tile; ties go to the larger tile.  E.g. with two
    vectors and 16 registers: 7 rows for widths 7 and 14 (one or two exact tiles), 6 for 56 and
    197 (a 7-row tile is bound by its 15 loads per step)."""
    if max_acc is None:
        max_acc = max_accumulators(core)
    hi = max(1, max_acc // vecs)
    n = size_hint(extent)

    def cost(r: int) -> float:
        full, tail = divmod(n, r)
        return full * tile_step_cycles(r, vecs, core) + (tile_step_cycles(tail, vecs, core) if tail else 0.0)

    return min(range(1, min(hi, n) + 1), key=lambda r: (cost(r), -r))


def matmul_vectors(n, lanes: int, core: CoreModel) -> int:
    """Vectors per row of a matmul's register tile for an output width ``n``: the widest of 4
    (with 32 registers), 2 and 1 that divides it, 2 when none does (its tail is a copy of the
    loop).  Wider tiles read the left operand fewer times: on a 32-register core a 6 x 4 tile
    runs ViT-B/16's matmuls 5% faster than 6 x 2."""
    for vecs in ((4, 2) if core.registers >= 32 else (2,)):
        if divides(vecs * lanes, n):
            return vecs
    return 1 if divides(lanes, n) else 2

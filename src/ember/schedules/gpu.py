"""The GPU schedules (target family ``gpu``: CUDA and OpenCL devices alike).

Each output element is one thread: the default schedule fuses the output's loops into one,
splits it into blocks of :data:`THREADS` threads and binds the two parts to ``blockIdx.x`` and
``threadIdx.x``; a split that does not divide the output gets a bounds check (a bound loop
cannot have a tail copy).  Every reduction of the kernel (the sum of a matmul or convolution)
is computed by the thread of the element that reads it, in the thread's own registers
(``compute_at`` the thread loop), so it needs no shared memory and no barrier.

Reductions, softmax and layer norm run one block per row instead (:func:`rows`): the schedule
binds the rows to ``blockIdx.x`` and leaves the row's elements a serial loop, and the GPU
loop-IR pipeline (``tir.gpu_threads.share_block_work``) gives the block's threads the row: each
reduction over the row is computed by all of them and combined by a tree in shared memory, and
the row's elements are dealt out among them.  Matmul runs a block per 16 x 16 output tile
(:func:`matmul`) with its operands staged through shared memory (``tir.gpu_threads.stage_tiles``);
convolution (not grouped) the same way, with the output channels as rows and the image
positions as columns (:func:`conv2d`).  Grouped (depthwise) convolutions and pooling run a block
per 2-D tile of one output image plane (:func:`image_tiles`): a thread per output position, its
window sum or maximum in registers; neighbouring threads read overlapping windows of one input
plane, which the device's caches share.
"""

from __future__ import annotations

from ..errors import CodegenError
from . import register, register_default

#: threads per block of the default schedule
THREADS = 256

#: the knobs of the gpu schedules (``ember.compile(..., knobs=...)``): name -> (what, check)
KNOBS = {
    "gpu.threads": ("threads per block of the default schedule (a power of two, 1 to 1024)",
                    lambda v: isinstance(v, int) and 1 <= v <= 1024 and v & (v - 1) == 0),
    "gpu.matmul_tile": ("rows and columns of a matmul or convolution block tile (8, 16 or 32)",
                        lambda v: v in (8, 16, 32)),
    "gpu.tiles": ("1: tiled matmul and convolution schedules (shared memory); 0: the default schedule",
                  lambda v: v in (0, 1)),
}


def check_knobs(knobs) -> dict:
    """``knobs`` as a dict, every name a gpu knob and every value valid, else a TargetError."""
    from ..errors import TargetError

    out = {}
    for name, value in dict(knobs).items():
        if name not in KNOBS:
            raise TargetError(f"unknown GPU schedule knob {name!r}; the knobs are: {', '.join(sorted(KNOBS))}")
        if isinstance(value, bool) or not KNOBS[name][1](value):
            raise TargetError(f"GPU schedule knob {name!r} expects {KNOBS[name][0]}, got {value!r}")
        out[name] = value
    return out


@register_default("gpu")
def one_thread_per_element(s, target) -> None:
    s.guard_uneven = True
    root = s.root
    leaves = _static_leaves(s)
    if not leaves:
        return                  # a scalar: one thread of one block (tir.gpu.as_gpu_kernel)
    fused = leaves[0]
    for v in leaves[1:]:
        fused = root.fuse(fused, v)
    threads = int(target.knob("gpu.threads", THREADS))
    block, thread = root.split(fused, max(1, min(threads, fused.extent)))
    _bind(root, block, "blockIdx.x", "block")
    _bind(root, thread, "threadIdx.x", "thread")
    for st in s.stages.values():
        if st.attached:
            st.compute_at(root, thread)


def _bind(root, v, axis: str, name: str) -> None:
    """Binds ``v`` to ``axis`` and names it for what it counts, so generated kernels read
    ``block * 256 + thread`` rather than the fused axes' names."""
    root.bind(v, axis)
    v.name = name


def _static_leaves(s) -> list:
    leaves = list(s.root.leaves)
    for v in leaves:
        if not isinstance(v.extent, int):
            raise CodegenError(f"GPU kernels need static shapes: {s.output.name} has the symbolic "
                               f"extent {v.extent!r}")
    return leaves


@register("gpu", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "softmax", "layer_norm")
def rows(attrs, s, anchor, target) -> None:
    """One block per row: the leading output axes whose count matches the reductions' outputs
    are fused and bound to blocks, the rest (the row) fused into one serial loop, and every
    reduction attached at the block loop (one per row).  Raises CodegenError (and the driver
    falls back to the default) where the reductions do not follow the leading axes."""
    s.guard_uneven = True
    root = s.root
    leaves = _static_leaves(s)
    reductions = [st for st in s.stages.values() if st.attached and st.is_reduction]
    if not reductions or not leaves:
        raise CodegenError("no reduction to give a block per row")
    # a row's result: the smallest count above 1 (a long row's reduction may have P partial
    # results per row first, ops.reduce.row_reduce: a whole multiple of the rows)
    counts = [_count(st.tensor.shape) for st in reductions]
    outputs = min([c for c in counts if c > 1] or [1])
    k, count = 0, 1
    while k < len(leaves) and count < outputs:
        count *= leaves[k].extent
        k += 1
    if count != outputs or k == 0 or any(c != 1 and c % outputs for c in counts):
        raise CodegenError("the reductions do not follow the leading axes")
    row = leaves[0]
    for v in leaves[1:k]:
        row = root.fuse(row, v)
    if k < len(leaves):
        col = leaves[k]
        for v in leaves[k + 1:]:
            col = root.fuse(col, v)
    _bind(root, row, "blockIdx.x", "row")
    for st in s.stages.values():
        if st.attached:
            st.compute_at(root, row)


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


#: rows and columns of the output tile of one block of the matmul schedule
MATMUL_TILE = 16


def _tiles_wanted(target) -> None:
    """The knob ``gpu.tiles`` = 0 turns the tiled matmul and convolution schedules off (the
    default schedule instead): on OpenCL's CPU drivers a barrier costs more than the global
    reads the shared tiles save."""
    if not int(target.knob("gpu.tiles", 1)):
        raise CodegenError("tiled GPU schedules are turned off (knob gpu.tiles=0)")


@register("gpu", "matmul")
def matmul(attrs, s, mm, target) -> None:
    """A block per 16 x 16 tile of the output (and batch index), a thread per element of it
    (``threadIdx.y`` rows, ``threadIdx.x`` columns), its sum in the thread's registers; the GPU
    loop-IR pipeline (``tir.gpu_threads.stage_tiles``) stages the operands through shared memory."""
    _tiles_wanted(target)
    s.guard_uneven = True
    leaves = _static_leaves(s)
    if len(leaves) < 2:
        raise CodegenError("a matmul tile needs rows and columns")
    *batch, m, n = leaves
    _tiles(s, target, batch, m, n, "row", "col")


@register("gpu", "conv2d")
def conv2d(attrs, s, conv, target) -> None:
    """As :func:`matmul`, with the output channels as the tile's rows and the output positions
    (y, x fused) as its columns, the reductions over input channels and taps fused into one loop,
    so ``tir.gpu_threads.stage_tiles`` stages the weights and the (padded) input through shared memory.
    A grouped convolution (depthwise) gets :func:`image_tiles` (it has no shared tiles, so
    ``gpu.tiles`` = 0 leaves it on)."""
    if attrs.get("groups", 1) != 1:
        image_tiles(attrs, s, conv, target)
        return
    _tiles_wanted(target)
    s.guard_uneven = True
    root = s.root
    leaves = _static_leaves(s)
    if len(leaves) != 4:
        raise CodegenError("conv2d has 4 output axes")
    red = s[conv]
    r = red.leaves[len(red.axes)]
    for v in red.leaves[len(red.axes) + 1:]:
        r = red.fuse(r, v)
    n, co, y, x = leaves
    _tiles(s, target, [n], co, root.fuse(y, x), "channel", "pos")


#: the largest side of the output tile of one block of :func:`image_tiles`
IMAGE_TILE = 16


def _tile_side(extent: int) -> int:
    """The smallest power of two at least ``extent``, at most :data:`IMAGE_TILE` (a 7-wide plane
    gets 8 threads a row, not 16 of which 9 idle)."""
    side = 1
    while side < min(extent, IMAGE_TILE):
        side *= 2
    return side


@register("gpu", "max_pool2d", "avg_pool2d")
def image_tiles(attrs, s, anchor, target) -> None:
    """A block per tile of up to 16 x 16 output positions of one image plane (batch and channel
    in the block index as well), a thread per position (``threadIdx.y`` rows, ``threadIdx.x``
    columns), the window's reduction (a depthwise convolution's sum, a pool's maximum, sum and
    count) in the thread's registers.  Used for grouped convolutions and pooling in NCHW."""
    if attrs.get("layout", "NCHW") != "NCHW":
        raise CodegenError("the GPU pooling schedule takes NCHW")
    s.guard_uneven = True
    root = s.root
    leaves = _static_leaves(s)
    if len(leaves) != 4:
        raise CodegenError("an image kernel has 4 output axes (N, C, H, W)")
    n, c, y, x = leaves
    yo, yi = root.split(y, _tile_side(y.extent))
    xo, xi = root.split(x, _tile_side(x.extent))
    root.reorder(n, c, yo, xo, yi, xi)
    block = n
    for v in (c, yo, xo):
        block = root.fuse(block, v)
    _bind(root, block, "blockIdx.x", "tile")
    _bind(root, yi, "threadIdx.y", "ty")
    _bind(root, xi, "threadIdx.x", "tx")
    for st in s.stages.values():
        if st.attached:
            st.compute_at(root, xi)


def _tiles(s, target, outer: list, rows, cols, row_name: str, col_name: str) -> None:
    """Square tiles of ``rows`` x ``cols`` (leaves of the root): a block per tile and per index of
    the ``outer`` leaves, a thread per element of the tile, every reduction attached at the
    thread (in its registers)."""
    root = s.root
    tile = int(target.knob("gpu.matmul_tile", MATMUL_TILE))
    ro, ri = root.split(rows, tile)
    co, ci = root.split(cols, tile)
    root.reorder(ro, co, ri, ci)
    block = None
    for v in outer + [ro, co]:
        block = v if block is None else root.fuse(block, v)
    _bind(root, block, "blockIdx.x", "tile")
    _bind(root, ri, "threadIdx.y", row_name)
    _bind(root, ci, "threadIdx.x", col_name)
    for st in s.stages.values():
        if st.attached:
            st.compute_at(root, ci)

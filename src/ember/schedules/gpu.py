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
positions as columns (:func:`conv2d`).
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
    outputs = max(_count(st.tensor.shape) for st in reductions)
    k, count = 0, 1
    while k < len(leaves) and count < outputs:
        count *= leaves[k].extent
        k += 1
    if count != outputs or k == 0 or any(_count(st.tensor.shape) not in (1, outputs) for st in reductions):
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
    A grouped convolution (depthwise) gets the default schedule."""
    _tiles_wanted(target)
    if attrs.get("groups", 1) != 1:
        raise CodegenError("grouped convolutions take the default GPU schedule")
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

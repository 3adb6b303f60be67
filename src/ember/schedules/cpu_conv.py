"""CPU schedules of convolutions and pools: register tiles of output pixels x output-channel
vectors (NCHW[x]c), the reduction over input channels and the window outside them; Winograd's
transforms as unrolled blocks per tile."""

from __future__ import annotations

from ..errors import CodegenError
from ..ops.winograd import blocked_input, tile_grid
from . import register
from .cpu_loops import blocked_conv_stages, default_schedule, reduce_unroll, register_tile
from .cpu_model import conv_loop_order, pick_tile, register_rows, size_hint


@register("cpu", "conv2d")
def conv2d(a, s, conv, target):
    """conv2d with an unpacked weight: only depthwise has a tuned schedule; others the default."""
    x_c, width = conv.shape[1], conv.shape[3]
    if a["groups"] > 1 and a["groups"] == x_c and (not isinstance(width, int) or width >= target.lanes):
        depthwise(s, conv, target)
    else:
        default_schedule(s, target)


def depthwise(s, conv, target):
    """NCHW depthwise convolution: vectorized along the width, a few rows per register tile."""
    root, red = s.root, s[conv]
    n, o, y, x = root.tensor.axes
    lanes = target.lanes
    cols = 2 * lanes if x.extent % (2 * lanes) == 0 else lanes
    rows = pick_tile(y.extent, 2, 4)
    register_tile(root, red, row_axis=y, col_axis=x, rows=rows, cols=cols, lanes=lanes, before=[n, o])


def _packed_blocks(conv) -> int:
    """Number of output-channel blocks of a packed conv tensor (read from its weight operand)."""
    for t in conv.inputs():
        if len(t.shape) == 5:
            return t.shape[0]
    raise ValueError("not a packed convolution")


@register("cpu", "conv2d_packed")
def conv2d_packed(a, s, conv, target):
    """Tiles of 4-7 (two vectors of output channels) or 8-14 output pixels along the width."""
    root, red = s.root, s[conv]
    n, o, y, x = root.tensor.axes
    ob = conv.shape[1] // _packed_blocks(conv)
    lanes = target.lanes
    rows = pick_tile(x.extent, 4, 7) if ob >= 2 * lanes else pick_tile(x.extent, 8, 14)
    rows = target.knob("conv2d.rows", rows)
    register_tile(root, red, row_axis=x, col_axis=o, rows=rows, cols=ob, lanes=lanes, before=[n], after=[y])


@register("cpu", "conv2d_nchwc")
def conv2d_nchwc(a, s, conv, target):
    root, red, (n, oc, y, x, o), vecs = blocked_conv_stages(s, conv, target)
    lanes, ob = target.lanes, o.extent
    # accumulators: rows x (ob / lanes) vectors, the rows chosen by the micro-kernel's cost
    # model (cpu_model.register_rows, planned for at most 16 registers: 14-row tiles on 32
    # measured no faster on ResNet-50); depthwise tiles stay small (one load per FMA)
    dense = a["groups"] == 1
    rows = (register_rows(x.extent, vecs, target.core.limited(16)) if dense
            else pick_tile(x.extent, max(1, 8 // vecs - 3), 8 // vecs))
    rows = target.knob("conv2d.rows", rows)
    order = "channels"
    if dense:
        rc, ry, rx, ri = red.reduce_axes
        (sh, sw), (dh, dw) = a["strides"], a["dilations"]
        c, kh, kw = rc.extent * ri.extent, ry.extent, rx.extent
        oh, ow = size_hint(y.extent), size_hint(x.extent)
        ih, iw = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1
        order = conv_loop_order(in_bytes=4 * c * ih * iw, weight_bytes=4 * c * kh * kw * oc.extent * ob,
                                out_rows=oh, out_blocks=oc.extent, kernel_rows=kh, in_height=ih,
                                l2_bytes=target.l2_bytes)
        order = target.knob("conv2d.order", order)
    outer, inner = (y, oc) if order == "rows" else (oc, y)
    register_tile(root, red, row_axis=x, col_axis=o, rows=rows, cols=ob, lanes=lanes, before=[n, outer], after=[inner],
                  unroll=reduce_unroll(red, target, "conv2d.unroll") if dense else 1)


@register("cpu", "conv2d_int_nchwc")
def conv2d_int_nchwc(a, s, conv, target):
    root, red, (n, oc, y, x, o), vecs = blocked_conv_stages(s, conv, target)
    # accumulators: rows x (ob / lanes) int32 vectors, beside the x broadcast, the vector of
    # ones of the pairwise add and a temporary
    rows = pick_tile(x.extent, max(1, 12 // vecs - 2), 12 // vecs)
    register_tile(root, red, row_axis=x, col_axis=o, rows=rows, cols=o.extent, lanes=target.lanes,
                  before=[n, oc], after=[y])
    if len(red.reduce_axes) == 1 and red.reduce_axes[0].extent <= 64:
        # the flattened reduction of a few channels: unrolled, its (ky, kx, c) index
        # arithmetic folds to constants and most groups of four become one 32-bit load
        red.unroll(red.reduce_axes[0])


@register("cpu", "conv2d_split_k_nchwc")
def conv2d_split_k_nchwc(a, s, conv, target):
    """Each block of input channels is its own register tile of partial sums."""
    root, _, (n, oc, y, x, o), vecs = blocked_conv_stages(s, conv, target)
    parts = [s[t] for t in conv.inputs()]
    rows = pick_tile(x.extent, max(1, 14 // vecs - 3), 14 // vecs)
    register_tile(root, parts, row_axis=x, col_axis=o, rows=rows, cols=o.extent, lanes=target.lanes,
                  before=[n, oc], after=[y])


@register("cpu", "max_pool2d", "avg_pool2d")
def pool2d(a, s, pooled, target):
    """In NCHW[x]c, vectorize over the channel block and keep a row of windows in registers."""
    root = s.root
    red = s[pooled]
    lanes = target.lanes
    if a["layout"] != "NCHWc" or root.tensor.axes[4].extent % lanes or not red.reduce_axes:
        default_schedule(s, target)
        return
    n, c, y, x, cb = root.tensor.axes
    rows = target.knob("pool.rows", pick_tile(x.extent, 2, 14 // (cb.extent // lanes)))
    register_tile(root, red, row_axis=x, col_axis=cb, rows=rows, cols=cb.extent, lanes=lanes,
                  before=[n, c], after=[y])


@register("cpu", "winograd_input")
def winograd_input(a, s, v, target):
    """Per tile and channel vector, all alpha^2 points in one unrolled block."""
    root = s.root
    t, p, *tx, c = root.tensor.axes
    lanes = target.lanes
    n, _, h, w, cb = blocked_input(v).shape
    if cb % lanes:
        raise CodegenError(f"channel block {cb} is not a multiple of {lanes} lanes")
    m, (pt, pl, pb, pr) = a["m"], a["pads"]
    th, tw = tile_grid(h + pt + pb - 2, w + pl + pr - 2, m)
    # the tile loop as (tile row, tile column): the column's part of the input indices is
    # affine, and only the row loop divides by the grid (a single tile loop would leave
    # divisions in every load, and make lowering the unrolled block slow)
    # (a symbolic grid's compute has the two loops already)
    tile_loops = [p] + tx if tx else list(root.split(p, tw))
    co, ci = root.split(c, cb)
    cio, civ = root.split(ci, lanes)
    root.reorder(*tile_loops, co, cio, t, civ)
    root.parallel(tile_loops[0])
    root.unroll(t)
    root.vectorize(civ)


@register("cpu", "winograd_output")
def winograd_output(a, s, out, target):
    """Per tile and output-channel vector, the m x m outputs in one unrolled block; the
    epilogue (bias, activation, residual) runs on them in registers."""
    m = a["m"]
    root = s.root
    n, oc, y, x, o = root.tensor.axes
    lanes = target.lanes
    if o.extent % lanes:
        raise CodegenError(f"output block {o.extent} is not a multiple of {lanes} lanes")
    yo, yi = root.split(y, m)
    xo, xi = root.split(x, m)
    oo, ov = root.split(o, lanes)
    root.reorder(n, oc, yo, xo, oo, yi, xi, ov)
    root.parallel(root.fuse(root.fuse(n, oc), yo))
    root.unroll(yi)
    root.unroll(xi)
    root.vectorize(ov)

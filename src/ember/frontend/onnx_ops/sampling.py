"""ONNX ops that sample data at coordinates computed at run time: GridSample (and helpers that
others share), and AffineGrid, which computes such coordinates.  Sampling is a sum, over the interpolation taps, of ``gather``s at run-time
indices times run-time weights; out-of-range taps get weight 0 and a clamped index, so a kernel
never reads outside its buffer.  Sizes may be symbolic: coordinate arithmetic then reads them
as scalars computed at run time."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_float, np_dtype
from ...symbolic import Sym, product
from . import data_dims, translates
from .arith import T
from .indexing import iota
from .tensor import _dim_tensor

_CUBIC_A = -0.75


def _num(cx, d, dtype: str):
    """Dimension ``d`` for arithmetic on values of ``dtype``: the int, or a scalar tensor
    computed at run time when it is symbolic."""
    return T(cx, _dim_tensor(cx, d)).cast(dtype) if isinstance(d, Sym) else d


def _iota(cx, n, axis: int, rank: int) -> T:
    return T(cx, iota(cx, n, axis, rank))


def reflect(x: T, lo: float, hi: "float | T") -> T:
    """Fold coordinates into [lo, hi] by reflecting at the borders, as ONNX's GridSample does
    (``hi`` is a tensor when the size is symbolic)."""
    rng = hi - lo
    if isinstance(rng, T):
        empty = rng <= 0
        folded = _reflect(x, lo, hi, empty.where(1.0, rng))
        return empty.where(x * 0 + lo, folded)
    if rng <= 0:
        return x * 0 + lo
    return _reflect(x, lo, hi, rng)


def _reflect(x: T, lo, hi, rng) -> T:
    below = lo - x                        # > 0 left of the range
    above = x - hi                        # > 0 right of the range
    d = below.max(above).max(0.0)         # distance outside the range
    n = (d / rng).floor()
    r = d - n * rng
    even = (n % 2).eq(0)
    from_lo, from_hi = r + lo, (r * -1) + hi
    left = even.where(from_lo, from_hi)   # reflected from the lower border
    right = even.where(from_hi, from_lo)
    return (x < lo).where(left, (x > hi).where(right, x))


def cubic_weights(t: T) -> list[T]:
    """Keys cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction t in [0, 1)."""
    a = _CUBIC_A

    def far(u):   # 1 < |u| < 2
        return ((u * a - 5 * a) * u + 8 * a) * u - 4 * a

    def near(u):  # |u| <= 1
        return (u * (a + 2) - (a + 3)) * u * u + 1

    one_minus = (t * -1) + 1
    return [far(t + 1), near(t), near(one_minus), far(one_minus + 1)]


@translates("GridSample")
def grid_sample(cx):
    x, grid = cx.input(0), cx.input(1)
    dims, gdims = tuple(x.shape), tuple(grid.shape)
    k = len(dims) - 2
    if k < 1 or len(gdims) != k + 2 or gdims[-1] != k or gdims[0] != dims[0]:
        raise cx.fail(f"grid {grid.type} does not fit input {x.type}")
    if not is_float(x.dtype) or not is_float(grid.dtype):
        raise cx.fail(f"expects floating-point input and grid, got {x.type} and {grid.type}")
    mode = cx.attr("mode", "linear" if cx.opset >= 20 else "bilinear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = cx.attr("padding_mode", "zeros")
    align = bool(cx.attr("align_corners", 0))
    if mode not in ("nearest", "linear", "cubic") or padding not in ("zeros", "border", "reflection"):
        raise cx.fail(f"unknown mode {mode!r} or padding_mode {padding!r}")
    n, c = dims[0], dims[1]
    space = dims[2:]
    out_space = gdims[1:-1]
    ct = "float64" if "float64" in (x.dtype, grid.dtype) else "float32"
    g = T(cx, grid).cast(ct)

    # per spatial axis i: the source coordinate of every output position, [N, *out_space]
    coords = []
    for i, d in enumerate(space):
        d = _num(cx, d, ct)
        u = g.gather(cx.scalar(k - 1 - i, "int64"), axis=k + 1)     # the grid lists x (last axis) first
        u = (u + 1) * ((d - 1) / 2.0) if align else ((u + 1) * d - 1) / 2.0
        if mode == "nearest":
            u = u.unary("round")
        lo, hi = (0.0, d - 1.0) if align else (-0.5, d - 0.5)
        if padding == "border":
            u = ((u < lo) | (u > hi)).where(u.clip(0.0, d - 1.0), u)
        elif padding == "reflection":
            u = reflect(u, lo, hi)
        coords.append((u, d, lo, hi))

    # per axis: taps as (index, weight, valid) with index an integer-valued coordinate
    taps_per_axis = []
    for u, d, lo, hi in coords:
        if mode == "nearest":
            taps_per_axis.append([(_trunc(u), None)])
            continue
        base = u.floor()
        t = u - base
        if mode == "linear":
            weights = [(t * -1) + 1, t]
            offsets = [0, 1]
        else:
            weights = cubic_weights(t)
            offsets = [-1, 0, 1, 2]
        taps_per_axis.append([(base + o if o else base, w) for o, w in zip(offsets, weights)])

    # X as rows [N * prod(space), C]: one gather per combination of taps
    xt = T(cx, x).reshape((n, c, product(space))).transpose((0, 2, 1)).reshape((n * product(space), c))
    batch_off = _iota(cx, n, 0, 1 + len(out_space)) * _num(cx, product(space), "int64")
    strides = [_num(cx, product(space[i + 1:]), "int64") for i in range(k)]
    total = None
    for combo in np.ndindex(*[len(t) for t in taps_per_axis]):
        lin, weight, valid = None, None, None
        for i, j in enumerate(combo):
            pos, w = taps_per_axis[i][j]
            _, d, lo, hi = coords[i]
            idx, ok = _pixel_index(pos, d, lo, hi, padding)
            term = idx if isinstance(strides[i], int) and strides[i] == 1 else idx * strides[i]
            lin = term if lin is None else lin + term
            if w is not None:
                weight = w if weight is None else weight * w
            if ok is not None:
                valid = ok if valid is None else valid & ok
        rows = xt.gather(lin + batch_off, axis=0)                     # [N, *out, C]
        wv = weight.cast(x.dtype) if weight is not None else None
        if valid is not None:
            wv = valid.where(wv if wv is not None else T(cx, cx.scalar(1, x.dtype)), 0.0)
        if wv is not None:
            rows = rows * wv.reshape(wv.shape + (1,))
        total = rows if total is None else total + rows
    r = len(out_space)
    return total.transpose((0, r + 1) + tuple(range(1, r + 1))).v


def _trunc(u: T) -> T:
    """Rounding toward zero of integral-or-not coordinates, as a C cast does."""
    return (u < 0).where((u * -1).floor() * -1, u.floor())


def _pixel_index(pos: T, d: "int | T", lo: float, hi: "float | T", padding: str):
    """(int64 index, validity or None) of the pixel at integer-valued coordinate ``pos``."""
    if padding == "zeros":
        ok = (pos >= 0) & (pos <= d - 1)
        return pos.clip(0.0, d - 1.0).cast("int64"), ok
    if padding == "border":
        return pos.clip(0.0, d - 1.0).cast("int64"), None
    p = _trunc(reflect(pos, lo, hi))
    return p.clip(0.0, d - 1.0).cast("int64"), None


@translates("AffineGrid")
def affine_grid(cx):
    """ONNX AffineGrid (opset 20): theta [N, k, k + 1] applied to the normalized coordinates of
    every position of a k-D grid of the spatial sizes in ``size`` ([N, C, H, W] or [N, C, D, H,
    W]); the result [N, *sizes, k] lists x (the last axis) first.  Along an axis of L positions
    the coordinate of i is (2i + 1) / L - 1, or -1 + 2i / (L - 1) with align_corners (-1 where
    L is 1).  The sizes may be read at run time: bound as data symbols (a batch other than
    theta's fails the binding) and the coordinates computed from the bound values.  No base
    grid is made: each output sums theta's columns times the coordinates broadcast along their
    axes, then adds the translation column."""
    theta, size = cx.input(0), cx.input(1)
    align = bool(cx.attr("align_corners", 0))
    if size.type.rank != 1 or size.shape[0] not in (4, 5):
        raise cx.fail(f"size must be a 1-D tensor of 4 or 5 sizes, got {size.type}")
    k = size.shape[0] - 2
    tdims = tuple(theta.shape)
    if not is_float(theta.dtype) or len(tdims) != 3 or tuple(tdims[1:]) != (k, k + 1):
        raise cx.fail(f"theta {theta.type} must be floats of shape [N, {k}, {k + 1}] for sizes {size.type}")
    n = tdims[0]
    ct = "float64" if theta.dtype == "float64" else "float32"
    run = data_dims.runtime_operand(cx, 1)
    if run is None:
        dims = cx.dims_input(1, "size", required=True)
        if any(isinstance(d, int) and d < 0 for d in dims):
            raise cx.fail(f"size {dims} has a negative size")
        cx.require(dims[0] - n, "==", f"the batch of size ({dims[0]}) equal to theta's ({n})")
        space = dims[2:]
        lengths = [_num(cx, d, ct) for d in space]
        steps = [_iota(cx, d, 0, 1) for d in space]
    else:
        sizes = data_dims.shape_operand(cx, run, "size")
        bad = T(cx, data_dims.element(cx, sizes, 0)).ne(T(cx, _dim_tensor(cx, n)))
        spatial = T(cx, sizes).gather(cx.const(np.arange(2, k + 2, dtype=np.int64)), axis=0)
        bound, space = data_dims.bind(cx, data_dims.invalid_if(cx, spatial.v, bad.v),
                                      ["depth", "height", "width"][3 - k:])
        lengths = [T(cx, data_dims.element(cx, bound, a)).cast(ct) for a in range(k)]
        steps = [T(cx, data_dims.iota(cx, bound, d)) for d in space]
    r = k + 2
    out = None
    th = T(cx, theta).cast(ct)
    for a, (d, length, i) in enumerate(zip(space, lengths, steps)):
        i = i.cast(ct)
        if align:
            step = 2.0 / max(length - 1, 1) if not isinstance(length, T) else 2.0 / (length - 1.0).max(1.0)
            u = i * step - 1.0
        else:
            u = (i * 2.0 + 1.0) / length - 1.0
        shape = [1] * r
        shape[1 + a] = d
        col = th.gather(cx.scalar(k - 1 - a, "int64"), axis=2).reshape((n,) + (1,) * k + (k,))
        term = col * u.reshape(shape)
        out = term if out is None else out + term
    shift = th.gather(cx.scalar(k, "int64"), axis=2).reshape((n,) + (1,) * k + (k,))
    return (out + shift).cast(theta.dtype).v


@translates("RoiAlign")
def roi_align(cx):
    # per region r, the bin (ph, pw) averages (or maxes) a grid of gh x gw bilinear samples; the
    # sample coordinates are separable: y depends on (r, ph, iy), x on (r, pw, ix)
    x, rois, batch = cx.input(0), cx.input(1), cx.input(2)
    dims, rdims = tuple(x.shape), tuple(rois.shape)
    if len(dims) != 4 or len(rdims) != 2 or rdims[1] != 4 or tuple(batch.shape) != (rdims[0],):
        raise cx.fail(f"expects X [N, C, H, W], rois [R, 4] and batch_indices [R], got {x.type}, "
                      f"{rois.type}, {batch.type}")
    if not is_float(x.dtype):
        raise cx.fail(f"expects floating-point data, got {x.type}")
    n, c, h, w = dims
    r = rdims[0]
    oh, ow = cx.attr("output_height", 1), cx.attr("output_width", 1)
    ratio = cx.attr("sampling_ratio", 0)
    if ratio <= 0:
        raise cx.unsupported("sampling_ratio=0 (a sampling grid that depends on the region sizes)")
    scale = cx.attr("spatial_scale", 1.0)
    half_pixel = cx.attr("coordinate_transformation_mode", "half_pixel") == "half_pixel" if cx.opset >= 16 else False
    mode = cx.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise cx.fail(f"unknown mode {mode!r}")
    g = ratio
    box = T(cx, rois).cast(x.dtype)
    offset = 0.5 if half_pixel else 0.0

    def axis_taps(lo_col, hi_col, bins, size):
        size = _num(cx, size, x.dtype)
        lo = box.gather(cx.scalar(lo_col, "int64"), axis=1) * scale - offset       # [R]
        hi = box.gather(cx.scalar(hi_col, "int64"), axis=1) * scale - offset
        length = hi - lo
        if not half_pixel:
            length = length.max(1.0)
        step = length / bins
        frac = np.array([p + (i + 0.5) / g for p in range(bins) for i in range(g)], dtype=np_dtype(x.dtype))
        pos = lo.reshape((r, 1)) + step.reshape((r, 1)) * T(cx, cx.const(frac, x.dtype))   # [R, bins * g]
        valid = (pos >= -1.0) & (pos <= (size if isinstance(size, T) else float(size)))
        pos = pos.max(0.0)
        low = pos.floor()
        at_end = low >= size - 1
        low = at_end.where(size - 1 if isinstance(size, T) else T(cx, cx.scalar(size - 1, x.dtype)), low)
        pos = at_end.where(low, pos)
        high = at_end.where(low, low + 1)
        frac_hi = pos - low
        zero = T(cx, cx.scalar(0, x.dtype))
        taps = [(low.cast("int64"), valid.where((frac_hi * -1) + 1, zero)),
                (high.cast("int64"), valid.where(frac_hi, zero))]
        return taps

    ys = axis_taps(1, 3, oh, h)        # [R, oh * g]
    xs = axis_taps(0, 2, ow, w)        # [R, ow * g]
    rows = T(cx, x).transpose((0, 2, 3, 1)).reshape((n * h * w, c))
    base = (T(cx, batch).cast("int64") * _num(cx, h * w, "int64")).reshape((r, 1, 1))
    w_i = _num(cx, w, "int64")
    sy, sx = oh * g, ow * g
    total = None
    for yi, wy in ys:
        for xi, wx in xs:
            idx = base + yi.reshape((r, sy, 1)) * w_i + xi.reshape((r, 1, sx))     # [R, sy, sx]
            val = rows.gather(idx, axis=0) * (wy.reshape((r, sy, 1)) * wx.reshape((r, 1, sx))).reshape((r, sy, sx, 1))
            if total is None:
                total = val
            elif mode == "avg":
                total = total + val
            else:
                total = total.max(val)
    grid = total.reshape((r, oh, g, ow, g, c))
    if mode == "avg":
        pooled = grid.sum((2, 4)) / float(g * g)
    else:
        pooled = T(cx, cx.op("reduce_max", [grid.v], axes=(2, 4), keepdims=False))
    return pooled.transpose((0, 3, 1, 2)).v


@translates("DeformConv")
def deform_conv(cx):
    # sample every input channel at each kernel tap moved by its offset (bilinear, zeros outside),
    # scale by the mask, then contract with the weight per group as a matrix product
    x, wt, off = cx.input(0), cx.input(1), cx.input(2)
    bias, mask = cx.input(3, required=False), cx.input(4, required=False)
    dims, wdims, odims = tuple(x.shape), tuple(wt.shape), tuple(off.shape)
    if len(dims) != 4 or len(wdims) != 4 or len(odims) != 4:
        raise cx.unsupported(f"{len(dims) - 2}-D input (2-D only)")
    if not wt.type.is_static or isinstance(dims[1], Sym):
        raise cx.fail(f"W {wt.type} and the channels of X {x.type} must be static (they decide the groups and "
                      f"the kernel taps); fix them with shapes=")
    n, c, h, w = dims
    oc, icg, kh, kw = wdims
    group, og = cx.attr("group", 1), cx.attr("offset_group", 1)
    if c != icg * group or oc % group or c % og:
        raise cx.fail(f"W {wt.type} and group={group} do not fit X {x.type}")
    oh, ow = odims[2], odims[3]
    k = kh * kw
    if odims[1] != og * k * 2 or odims[0] != n:
        raise cx.fail(f"offset {off.type} must be [N, offset_group * {k} * 2, oh, ow]")
    sh, sw = cx.attr("strides", [1, 1])
    dh, dw = cx.attr("dilations", [1, 1])
    pads = cx.attr("pads", [0, 0, 0, 0])
    cg = c // og
    ft = x.dtype
    # everything in the layout of the columns the matrix product reads:
    # [N, oh, ow, offset group, channel in group, kh, kw]
    o = T(cx, off).reshape((n, og, kh, kw, 2, oh, ow)).transpose((0, 5, 6, 1, 4, 2, 3))

    def coords(comp, pad, stride, dil, kdim, odim):
        # the tap's position without offset, [1, oh, ow, 1, 1, kh, kw]
        tap = np.arange(kdim) * dil
        shift = o.gather(cx.const(np.array([comp], dtype=np.int64)), axis=4)   # [N, oh, ow, og, 1, kh, kw]
        if isinstance(odim, Sym):
            out = (_iota(cx, odim, 1 + comp, 7) * stride - pad).cast(ft)
            return shift + out + T(cx, cx.const(tap.astype(np_dtype(ft)).reshape((1,) * (5 + comp) + (kdim,)
                                                                                 + (1,) * (1 - comp)), ft))
        out = np.arange(odim) * stride - pad
        if comp == 0:
            base = out.reshape(1, odim, 1, 1, 1, 1, 1) + tap.reshape(1, 1, 1, 1, 1, kdim, 1)
        else:
            base = out.reshape(1, 1, odim, 1, 1, 1, 1) + tap.reshape(1, 1, 1, 1, 1, 1, kdim)
        return shift + T(cx, cx.const(base.astype(np_dtype(ft)), ft))

    ys = coords(0, pads[0], sh, dh, kh, oh)
    xs = coords(1, pads[1], sw, dw, kw, ow)
    # flat element offsets of (n, offset group, channel in group): [N, 1, 1, og, cg, 1, 1]
    if isinstance(n, Sym) or isinstance(h * w, Sym):
        within = np.arange(og * cg, dtype=np.int64).reshape(1, 1, 1, og, cg, 1, 1)      # og * cg == c
        chan = (_iota(cx, n, 0, 7) * c + T(cx, cx.const(within))) * _num(cx, h * w, "int64")
    else:
        chan = (np.arange(n).reshape(n, 1, 1) * c + np.arange(og).reshape(1, og, 1) * cg
                + np.arange(cg).reshape(1, 1, cg)) * (h * w)
        chan = T(cx, cx.const(chan.astype(np.int64).reshape(n, 1, 1, og, cg, 1, 1)))
    flat = T(cx, x).reshape((n * c * h * w,))
    hf, wf, w_i = _num(cx, h, ft), _num(cx, w, ft), _num(cx, w, "int64")
    y0, x0 = ys.floor(), xs.floor()
    sampled = None
    for ty in (0, 1):
        for tx in (0, 1):
            yi, xi = y0 + ty, x0 + tx
            wgt = (((ys - yi).abs() * -1) + 1) * (((xs - xi).abs() * -1) + 1)
            ok = (yi >= 0) & (yi <= hf - 1) & (xi >= 0) & (xi <= wf - 1)
            wgt = ok.where(wgt, 0.0)
            idx = chan + yi.clip(0.0, hf - 1.0).cast("int64") * w_i + xi.clip(0.0, wf - 1.0).cast("int64")
            val = flat.gather(idx, axis=0) * wgt                                   # [N, oh, ow, og, cg, kh, kw]
            sampled = val if sampled is None else sampled + val
    if mask is not None:
        m = T(cx, mask).reshape((n, og, 1, kh, kw, oh, ow)).transpose((0, 5, 6, 1, 2, 3, 4))
        sampled = sampled * m
    cols = sampled.reshape((n, oh * ow, c, k))
    ocg = oc // group
    outs = []
    for gi in range(group):
        part = T(cx, cx.op("slice", [cols.v], starts=(0, 0, gi * icg, 0), ends=(n, oh * ow, (gi + 1) * icg, k),
                           steps=(1, 1, 1, 1))).reshape((n, oh * ow, icg * k))
        wg = T(cx, cx.op("slice", [wt], starts=(gi * ocg, 0, 0, 0), ends=((gi + 1) * ocg, icg, kh, kw),
                         steps=(1, 1, 1, 1))).reshape((ocg, icg * k)).transpose((1, 0))
        outs.append(T(cx, cx.op("matmul", [part.v, wg.v])))
    y = outs[0] if group == 1 else T(cx, cx.op("concat", [v.v for v in outs], axis=2))
    y = y.transpose((0, 2, 1)).reshape((n, oc, oh, ow))
    if bias is not None:
        y = y + T(cx, bias).reshape((oc, 1, 1))
    return y.v

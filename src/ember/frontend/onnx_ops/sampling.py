"""ONNX ops that sample data at coordinates computed at run time: GridSample (and helpers that
others share).  Sampling is a sum, over the interpolation taps, of ``gather``s at run-time
indices times run-time weights; out-of-range taps get weight 0 and a clamped index, so a kernel
never reads outside its buffer."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_float
from . import translates
from .arith import T
from .tensor import prod, static_shape

_CUBIC_A = -0.75


def reflect(x: T, lo: float, hi: float) -> T:
    """Fold coordinates into [lo, hi] by reflecting at the borders, as ONNX's GridSample does."""
    rng = hi - lo
    if rng <= 0:
        return x * 0 + lo
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
    dims = static_shape(cx, x)
    gdims = static_shape(cx, grid, "grid")
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
    xt = T(cx, x).reshape((n, c, prod(space))).transpose((0, 2, 1)).reshape((n * prod(space), c))
    batch_off = cx.const((np.arange(n, dtype=np.int64) * prod(space)).reshape((n,) + (1,) * len(out_space)))
    strides = [prod(space[i + 1:]) for i in range(k)]
    total = None
    for combo in np.ndindex(*[len(t) for t in taps_per_axis]):
        lin, weight, valid = None, None, None
        for i, j in enumerate(combo):
            pos, w = taps_per_axis[i][j]
            _, d, lo, hi = coords[i]
            idx, ok = _pixel_index(pos, d, lo, hi, padding)
            term = idx * strides[i] if strides[i] != 1 else idx
            lin = term if lin is None else lin + term
            if w is not None:
                weight = w if weight is None else weight * w
            if ok is not None:
                valid = ok if valid is None else valid & ok
        rows = xt.gather(lin + T(cx, batch_off), axis=0)              # [N, *out, C]
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


def _pixel_index(pos: T, d: int, lo: float, hi: float, padding: str):
    """(int64 index, validity or None) of the pixel at integer-valued coordinate ``pos``."""
    if padding == "zeros":
        ok = (pos >= 0) & (pos <= d - 1)
        return pos.clip(0.0, d - 1.0).cast("int64"), ok
    if padding == "border":
        return pos.clip(0.0, d - 1.0).cast("int64"), None
    p = _trunc(reflect(pos, lo, hi))
    return p.clip(0.0, d - 1.0).cast("int64"), None

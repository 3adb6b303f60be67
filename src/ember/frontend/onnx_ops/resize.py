"""ONNX Resize and Upsample, decomposed axis by axis (the interpolations are separable).

For each resized axis the source coordinate of every output position is known at compile time,
so nearest mode is one ``gather`` with constant indices and linear/cubic modes are a weighted
sum of ``gather``s of the neighbouring taps with constant weights.
"""

from __future__ import annotations

import math

import numpy as np

from ...graph.types import is_float
from . import translates
from ...symbolic import exact_div
from .tensor import norm_axes, reshape, static_shape

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_crop_and_resize")


def source_coords(mode: str, out_n: int, in_n: int, scale: float, roi: tuple[float, float],
                  length: float | None = None) -> np.ndarray:
    """Source coordinate of each output index along one axis, as the ONNX spec writes
    coordinate_transformation_mode.  ``out_n`` is the integral output length; ``length`` the
    spec's ``length_resized = scale * length_original``, fractional when the output length comes
    from a scale (default ``out_n``)."""
    y = np.arange(out_n, dtype=np.float64)
    n = float(out_n if length is None else length)
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = in_n / 2 * (1 - out_n / (scale * in_n))
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if n > 1 else np.zeros(out_n)
    if mode == "align_corners":
        return y * (in_n - 1) / (n - 1) if n > 1 else np.zeros(out_n)
    if mode == "asymmetric":
        return y / scale
    # tf_crop_and_resize
    lo, hi = roi
    if n > 1:
        return lo * (in_n - 1) + y * (hi - lo) * (in_n - 1) / (n - 1)
    return np.full(out_n, 0.5 * (lo + hi) * (in_n - 1))


def nearest_index(x: np.ndarray, mode: str, in_n: int) -> np.ndarray:
    if mode == "round_prefer_floor":
        i = np.ceil(x - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(x + 0.5)
    elif mode == "floor":
        i = np.floor(x)
    elif mode == "ceil":
        i = np.ceil(x)
    else:
        raise ValueError(f"unknown nearest_mode {mode!r}")
    return np.clip(i, 0, in_n - 1).astype(np.int64)


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def interp_taps(x: np.ndarray, in_n: int, mode: str, scale: float, cubic_a: float, antialias: bool,
                exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both [out, taps]: output i = sum_j weight[i, j] * input[indices[i, j]]."""
    # the tap left of x; an integral x counts as the right end of the interval below it
    base = np.floor(x)
    base = np.where(base == x, base - 1, base)
    s = min(scale, 1.0) if antialias else 1.0   # antialiasing widens the kernel when shrinking
    support = 1.0 if mode == "linear" else 2.0
    half = int(math.ceil(support / s))             # taps on each side of x
    offsets = np.arange(-half + 1, half + 1)
    idx = base[:, None] + offsets[None, :]
    dist = (idx - x[:, None]) * s
    if mode == "linear":
        w = np.clip(1 - np.abs(dist), 0, None)
    else:
        w = _cubic(dist, cubic_a)
    idx = idx.astype(np.int64)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_n), 0.0, w)
    if antialias or exclude_outside:
        tot = w.sum(axis=1, keepdims=True)
        w = w / np.where(tot == 0, 1.0, tot)
    return np.clip(idx, 0, in_n - 1), w


def _repeats_each(factor: int, coord: str, nearest_mode: str) -> bool:
    """Whether nearest resizing by the whole ``factor`` reads input o // factor for output o (each
    input repeated ``factor`` times) with these modes, whatever the axis' length."""
    for n in range(1, 9):
        src = source_coords(coord, n * factor, n, float(factor), (0.0, 1.0), n * factor)
        if not np.array_equal(nearest_index(src, nearest_mode, n), np.arange(n * factor) // factor):
            return False
    return True


def _resize_symbolic(cx, x, sizes, scales, roi, mode, coord, nearest_mode):
    """Resize of an input with symbolic dims: nearest by whole factors on every resized axis
    (FPN and U-Net upsampling), as a broadcast of each input element over its factor."""
    dims, r = tuple(x.shape), x.type.rank
    factors = []
    for ax in range(r):
        f = exact_div(sizes[ax], dims[ax]) if dims[ax] != 0 else None
        if not isinstance(f, int) or f < 1 or not math.isclose(scales[ax], f) or \
                (roi[ax], roi[ax + r]) != (0.0, 1.0):
            raise cx.fail(f"resizes axis {ax} of {x.type} to {sizes[ax]}: with symbolic sizes only nearest "
                          f"resizing by whole factors is compiled; fix the sizes with shapes=")
        factors.append(f)
    if mode != "nearest" and any(f != 1 for f in factors):
        raise cx.unsupported(f"mode={mode!r} over symbolic sizes (only nearest by whole factors)")
    if any(f > 1 and not _repeats_each(f, coord, nearest_mode) for f in factors):
        raise cx.unsupported(f"coordinate_transformation_mode={coord!r} with nearest_mode={nearest_mode!r} "
                             f"over symbolic sizes")
    inter = tuple(v for d in dims for v in (d, 1))
    big = tuple(v for d, f in zip(dims, factors) for v in (d, f))
    t = cx.op("broadcast_to", [reshape(cx, x, inter)], shape=big)
    return reshape(cx, t, tuple(d * f for d, f in zip(dims, factors)))


def _resize(cx, x, sizes, scales, roi, mode, coord, nearest_mode, cubic_a, exclude_outside, extrapolation,
            antialias):
    if not x.type.is_static or not all(isinstance(v, int) for v in sizes):
        return _resize_symbolic(cx, x, sizes, scales, roi, mode, coord, nearest_mode)
    dims = static_shape(cx, x)
    r = len(dims)
    if mode != "nearest" and not is_float(x.dtype):
        raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
    out = x
    for ax in range(r):
        in_n, out_n, scale = dims[ax], sizes[ax], scales[ax]
        lo, hi = roi[ax], roi[ax + r]
        if out_n == in_n and math.isclose(scale, 1.0) and math.isclose(lo, 0.0) and math.isclose(hi, 1.0):
            continue
        if in_n == 0 or out_n == 0:
            raise cx.fail(f"cannot resize axis {ax} from {in_n} to {out_n}")
        length = in_n * scale                   # the spec's length_resized: fractional from a scale
        src = source_coords(coord, out_n, in_n, scale, (lo, hi), out_n if math.isclose(length, out_n) else length)
        shp = [1] * r
        shp[ax] = out_n
        if mode == "nearest":
            y = cx.op("gather", [out, cx.const(nearest_index(src, nearest_mode, in_n))], axis=ax)
        else:
            idx, w = interp_taps(src, in_n, mode, scale, cubic_a, antialias, exclude_outside)
            y = None
            for j in range(idx.shape[1]):
                g = cx.op("gather", [out, cx.const(idx[:, j])], axis=ax)
                t = cx.op("mul", [g, cx.const(w[:, j].reshape(shp).astype(x.dtype), x.dtype)])
                y = t if y is None else cx.op("add", [y, t])
        if coord == "tf_crop_and_resize":
            outside = (src < 0) | (src > in_n - 1)
            if outside.any():
                y = cx.op("where", [cx.const(outside.reshape(shp)), cx.scalar(extrapolation, x.dtype), y])
        out = y
    return out


@translates("Resize")
def resize(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    mode = cx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise cx.fail(f"unknown mode {mode!r}")
    if cx.opset < 11:
        scales_in = cx.const_input(1, "scales", required=True)
        return _upsample_like(cx, x, dims, [float(s) for s in scales_in.reshape(-1)], mode)
    coord = cx.attr("coordinate_transformation_mode", "half_pixel")
    # roi is read only by tf_crop_and_resize: in other modes it may be anything, known or not
    roi = cx.const_input(1, "roi") if coord == "tf_crop_and_resize" else None
    scales = cx.const_input(2, "scales")
    sizes = cx.dims_input(3, "sizes")
    axes = cx.attr("axes", None)
    axes = norm_axes(cx, axes, r) if axes is not None else list(range(r))
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and len(sizes) == 0:
        sizes = None
    if (scales is None) == (sizes is None):
        raise cx.fail("needs exactly one of scales and sizes")
    full_roi = [0.0] * r + [1.0] * r
    if roi is not None and roi.size:
        roi = [float(v) for v in roi.reshape(-1)]
        if len(roi) != 2 * len(axes):
            raise cx.fail(f"roi needs {2 * len(axes)} values, got {len(roi)}")
        for k, a in enumerate(axes):
            full_roi[a], full_roi[a + r] = roi[k], roi[k + len(axes)]
    sc = [1.0] * r
    out = list(dims)
    if scales is not None:
        vals = [float(v) for v in scales.reshape(-1)]
        if len(vals) != len(axes) or any(v <= 0 for v in vals):
            raise cx.fail(f"scales {vals} must be {len(axes)} positive values")
        for a, v in zip(axes, vals):
            sc[a] = v
            out[a] = int(math.floor(dims[a] * v)) if isinstance(dims[a], int) else \
                dims[a] * int(v) if v == int(v) else None
            if out[a] is None:
                raise cx.fail(f"scales axis {a} of {x.type} by {v}: the size of a symbolic dim is only "
                              f"computed for whole factors; fix it with shapes=")
    else:
        if len(sizes) != len(axes):
            raise cx.fail(f"sizes {sizes} must have {len(axes)} values")
        for a, v in zip(axes, sizes):
            out[a] = v
            if isinstance(v, int) and isinstance(dims[a], int):
                sc[a] = v / dims[a] if dims[a] else 1.0
            else:
                f = exact_div(v, dims[a])
                sc[a] = float(f) if isinstance(f, int) else math.nan
        policy = cx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max if policy == "not_smaller" else None
            if pick is None:
                raise cx.fail(f"unknown keep_aspect_ratio_policy {policy!r}")
            if not all(isinstance(dims[a], int) and isinstance(out[a], int) for a in axes):
                raise cx.fail(f"keep_aspect_ratio_policy={policy!r} over symbolic sizes; fix them with shapes=")
            s = pick(sc[a] for a in axes)
            for a in axes:
                sc[a] = s
                out[a] = int(s * dims[a] + 0.5)
    if coord not in _COORD_MODES:
        raise cx.fail(f"unknown coordinate_transformation_mode {coord!r}")
    return _resize(cx, x, out, sc, full_roi, mode, coord, cx.attr("nearest_mode", "round_prefer_floor"),
                   cx.attr("cubic_coeff_a", -0.75), bool(cx.attr("exclude_outside", 0)),
                   cx.attr("extrapolation_value", 0.0), bool(cx.attr("antialias", 0)) and mode != "nearest")


def _upsample_like(cx, x, dims, scales, mode):
    """Upsample and Resize-10: asymmetric coordinates; nearest picks floor (ceil when shrinking)."""
    r = len(dims)
    if len(scales) != r or any(s <= 0 for s in scales):
        raise cx.fail(f"scales {scales} must be {r} positive values")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise cx.fail(f"unknown mode {mode!r}")
    out = x
    for ax in range(r):
        in_n, s = dims[ax], scales[ax]
        out_n = int(math.floor(in_n * s))
        if out_n == in_n and s == 1.0:
            continue
        src = np.arange(out_n, dtype=np.float64) / s
        shp = [1] * r
        shp[ax] = out_n
        if mode == "nearest":
            idx = np.clip(np.floor(src) if s >= 1 else np.ceil(src), 0, in_n - 1).astype(np.int64)
            out = cx.op("gather", [out, cx.const(idx)], axis=ax)
            continue
        if not is_float(x.dtype):
            raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
        i0 = np.clip(np.floor(src), 0, in_n - 1).astype(np.int64)
        i1 = np.clip(i0 + 1, 0, in_n - 1)
        w1 = np.clip(src - i0, 0, 1)
        a = cx.op("mul", [cx.op("gather", [out, cx.const(i0)], axis=ax),
                          cx.const((1 - w1).reshape(shp).astype(x.dtype), x.dtype)])
        b = cx.op("mul", [cx.op("gather", [out, cx.const(i1)], axis=ax),
                          cx.const(w1.reshape(shp).astype(x.dtype), x.dtype)])
        out = cx.op("add", [a, b])
    return out


@translates("Upsample")
def upsample(cx):
    x = cx.input(0)
    dims = static_shape(cx, x)
    if cx.opset >= 9:
        scales = [float(s) for s in cx.const_input(1, "scales", required=True).reshape(-1)]
    else:
        scales = [float(s) for s in cx.attr("scales")]
    return _upsample_like(cx, x, dims, scales, cx.attr("mode", "nearest"))

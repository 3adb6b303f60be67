"""ONNX Resize and Upsample, decomposed axis by axis (the interpolations are separable).

For each resized axis of static sizes the source coordinate of every output position is known at
compile time, so nearest mode is one ``gather`` with constant indices and linear/cubic modes are
a weighted sum of ``gather``s of the neighbouring taps with constant weights.  Where the input or
output size of an axis is symbolic, the same coordinates, indices and weights are computed in the
graph from the run's sizes (one float64 vector of the output length per tap); nearest resizing by
a whole factor is a broadcast instead.
"""

from __future__ import annotations

import math

import numpy as np

from fractions import Fraction

from ...graph.types import is_float
from ...symbolic import Sym, compare, exact_div
from ...graph.ir import Value
from . import data_dims, translates
from .arith import T
from .indexing import iota
from .tensor import _dim_tensor, norm_axes, reshape

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


def _whole_factor(in_n, out_n, scale, lo, hi, coord, nearest_mode) -> int | None:
    """The whole factor by which nearest resizing repeats each element along an axis of symbolic
    size (FPN and U-Net upsampling: a broadcast, no gather), or None."""
    f = exact_div(out_n, in_n) if in_n != 0 else None
    if not isinstance(f, int) or f < 1 or (lo, hi) != (0.0, 1.0):
        return None
    if scale is not None and not math.isclose(scale, f):
        return None
    return f if f == 1 or _repeats_each(f, coord, nearest_mode) else None


def _repeat_axis(cx, x, ax: int, f: int):
    """Each element of axis ``ax`` repeated ``f`` times, as a broadcast."""
    dims = tuple(x.shape)
    t = reshape(cx, x, dims[:ax + 1] + (1,) + dims[ax + 1:])
    t = cx.op("broadcast_to", [t], shape=dims[:ax + 1] + (f,) + dims[ax + 1:])
    return reshape(cx, t, dims[:ax] + (dims[ax] * f,) + dims[ax + 1:])


def _runtime_axis(cx, x, ax, in_n, out_n, scale, roi, mode, coord, nearest_mode, cubic_a, exclude_outside,
                  extrapolation, antialias, bound=None):
    """Resize of axis ``ax`` whose input or output size is symbolic: the source coordinates, taps
    and weights of :func:`source_coords` / :func:`interp_taps`, computed in float64 from the
    run's sizes (a vector of the output length), then the same gathers and weighted sum as the
    static form.  ``scale`` is None when it is the run's ``out_n / in_n`` (from ``sizes``).
    Where the operands are read at run time (``bound``: a :class:`_RunTimeAxis`), ``scale`` and
    the roi's ends may be float64 values, and ``out_n`` a data symbol."""
    r = x.type.rank
    f64 = "float64"
    n_in = T(cx, _dim_tensor(cx, in_n)).cast(f64) if isinstance(in_n, Sym) else float(in_n)
    if bound is not None and bound.n_out is not None:
        n_out, y = bound.n_out, bound.seq
    else:
        n_out = T(cx, _dim_tensor(cx, out_n)).cast(f64) if isinstance(out_n, Sym) else float(out_n)
        y = T(cx, iota(cx, out_n, 0, 1)).cast(f64)
    if scale is None:
        s = n_out / n_in if isinstance(n_out, T) or isinstance(n_in, T) else float(out_n) / float(in_n)
        length = n_out                   # in_n * (out_n / in_n)
    else:
        s = scale
        length = n_in * scale
        if isinstance(length, T):        # the integral size when the product is it (up to rounding)
            near = (length - n_out).abs() <= (length.abs().max(n_out) * 1e-9)
            length = near.where(n_out, length)
        elif isinstance(out_n, int) and math.isclose(length, float(out_n)):
            length = n_out

    def when_long(then, other):
        # coordinates for length_resized > 1, else the constant ones
        if isinstance(length, T):
            return (length > 1.0).where(then, other)
        return then if length > 1.0 else other

    lo, hi = roi
    if coord == "half_pixel":
        src = (y + 0.5) / s - 0.5
    elif coord == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / (s * n_in))
        src = (y + 0.5) / s - 0.5 + offset
    elif coord == "pytorch_half_pixel":
        src = when_long((y + 0.5) / s - 0.5, 0.0)
    elif coord == "align_corners":
        src = when_long(y * (n_in - 1) / (length - 1), 0.0)
    elif coord == "asymmetric":
        src = y / s
    else:
        src = when_long(y * ((hi - lo) * (n_in - 1)) / (length - 1) + lo * (n_in - 1), 0.5 * (lo + hi) * (n_in - 1))
    if not isinstance(src, T):
        src = y * 0.0 + src
    shp = [1] * r
    shp[ax] = out_n
    last = n_in - 1

    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            i = (src - 0.5).unary("ceil")
        elif nearest_mode == "round_prefer_ceil":
            i = (src + 0.5).floor()
        elif nearest_mode in ("floor", "ceil"):
            i = src.unary(nearest_mode)
        else:
            raise cx.fail(f"unknown nearest_mode {nearest_mode!r}")
        # the index as the sum of a one-row table: a reduction ends a fused group, so the index
        # is computed once per output position, not again in the gather for every element
        idx = i.max(0.0).min(last).cast("int64").reshape((1, out_n)).sum((0,))
        out = T(cx, x).gather(idx, ax)
    else:
        support = 1.0 if mode == "linear" else 2.0
        if antialias and isinstance(s, T):
            # a ratio only the run knows: as many taps as its smallest gives, those past the
            # actual support weigh 0
            narrow = s.min(1.0)
            half = bound.antialias_half(support)
        else:
            if antialias and (scale is None or scale < 1.0):
                if scale is None and compare(out_n, ">=", in_n, cx.bounds) is not True:
                    raise cx.fail(f"antialias when resizing axis {ax} from {in_n} to {out_n}: the number of taps "
                                  f"grows as the ratio shrinks, so it must be known at compile time; pass scales "
                                  f"instead of sizes, or fix the sizes with shapes=")
            narrow = min(scale, 1.0) if antialias and scale is not None else 1.0
            half = int(math.ceil(support / narrow))
        # every tap at once, [taps, out]: the index and weight tables are then computed once per
        # output position (each is read by one gather per tap), not again for every element
        base = src.floor()
        base = base.eq(src).where(base - 1.0, base).reshape((1, out_n))
        taps = 2 * half
        i = base + cx.const(np.arange(-half + 1, half + 1, dtype=np.float64).reshape(taps, 1))
        t = ((i - src.reshape((1, out_n))) * narrow).abs()
        if mode == "linear":
            w = (1.0 - t).max(0.0)
        else:
            a = cubic_a
            near = ((t * (a + 2) - (a + 3)) * t * t + 1.0)
            far = (((t * a - 5 * a) * t + 8 * a) * t - 4 * a)
            w = (t <= 1.0).where(near, (t < 2.0).where(far, 0.0))
        if exclude_outside:
            w = ((i < 0.0) | (i >= n_in)).where(0.0, w)
        if antialias or exclude_outside:
            tot = w.sum((0,), keepdims=True)
            w = w / tot.eq(0.0).where(1.0, tot)
        idx = i.max(0.0).min(last).cast("int64")      # the gather checks them (an empty axis: an error)
        w = w.cast(x.dtype)
        out = None
        for j in range(taps):
            ij, wj = (T(cx, cx.op("slice", [v.v], starts=(j, 0), ends=(j + 1, out_n), steps=(1, 1))) for v in (idx, w))
            term = T(cx, x).gather(ij.reshape((out_n,)), ax) * wj.reshape(shp)
            out = term if out is None else out + term
    if coord == "tf_crop_and_resize":
        outside = (src < 0.0) | (src > last)
        out = outside.reshape(shp).where(cx.scalar(extrapolation, x.dtype), out)
    return out.v


MAX_RUN_TIME_TAPS = 64


class _RunTimeAxis:
    """An axis that a Resize with operands read at run time resizes: its output length as
    float64 (``n_out``) and the output positions 0 .. n_out - 1 (``seq``), read from the bound
    size (None where the size is known while compiling), and the taps antialiasing needs for the
    smallest ratio that still gives an output (``ratio_floor``: ``1 / in_n``, or ``1 / (2 in_n)``
    where sizes are rounded to the nearest), refused above ``MAX_RUN_TIME_TAPS``."""

    def __init__(self, cx, ax: int, in_n, n_out, seq, ratio_floor: int):
        self.cx, self.ax, self.in_n, self.n_out, self.seq, self.ratio_floor = cx, ax, in_n, n_out, seq, ratio_floor

    def antialias_half(self, support: float) -> int:
        why = (f"antialias on axis {self.ax} with scales or sizes read at run time: the number of taps grows as "
               f"the ratio shrinks")
        if not isinstance(self.in_n, int):
            raise self.cx.fail(f"{why}, and the axis has the symbolic size {self.in_n}; pass scales or sizes as "
                               "constants, or fix the size with shapes=")
        half = int(math.ceil(support * self.ratio_floor * max(self.in_n, 1)))
        if 2 * half > MAX_RUN_TIME_TAPS:
            raise self.cx.fail(f"{why}: {2 * half} taps for an axis of {self.in_n} (at most {MAX_RUN_TIME_TAPS}); "
                               "pass scales or sizes as constants")
        return half


def _resize_at_run_time(cx, x, axes, roi, scales, sizes, policy, mode, coord, nearest_mode, cubic_a,
                        exclude_outside, extrapolation, antialias):
    """Resize whose scales, sizes or roi are read at run time (each either a value of one element
    per axis of ``axes``, or the constant list): the output sizes that depend on them (floor(d *
    scale), the sizes themselves, or round(d * scale) under a keep_aspect_ratio_policy) are bound
    as data symbols, and every axis of ``axes`` is resized by :func:`_runtime_axis` from the run's
    scale and roi.  A scale of 0 or less is an error of the run."""
    dims = tuple(x.shape)
    k = len(axes)
    f64 = "float64"
    if mode != "nearest" and not is_float(x.dtype):
        raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
    for what, v in (("scales", scales), ("sizes", sizes), ("roi", roi)):
        n = 2 * k if what == "roi" else k
        if isinstance(v, Value) and (v.type.rank != 1 or v.shape[0] != n):
            raise cx.fail(f"{what} must hold {n} values for the axes {list(axes)}, got {v.type}")
        if isinstance(v, list) and len(v) != n:
            raise cx.fail(f"{what} {v} must hold {n} values for the axes {list(axes)}")

    def item(v, j, dtype):
        return T(cx, data_dims.element(cx, v, j) if dtype == "int64" else
                 cx.op("cast", [cx.op("gather", [v, cx.scalar(j, "int64")], axis=0)], to=dtype))

    d_t = [T(cx, _dim_tensor(cx, dims[a])).cast(f64) if isinstance(dims[a], Sym) else float(dims[a]) for a in axes]
    scale, out, bad = [None] * k, [None] * k, None
    if isinstance(scales, Value):
        for j, a in enumerate(axes):
            scale[j] = item(scales, j, f64)
            out[j] = (scale[j] * d_t[j]).floor().cast("int64")
            nonpositive = scale[j] <= 0.0
            bad = nonpositive if bad is None else bad | nonpositive
    elif scales is not None:
        for j, a in enumerate(axes):
            if scales[j] <= 0:
                raise cx.fail(f"scales {scales} must be positive")
            scale[j], out[j] = scales[j], scaled_dim(dims[a], scales[j])
            if out[j] is None:
                raise cx.fail(f"scales axis {a} of {x.type} by {scales[j]}: floor({dims[a]} * {scales[j]}) is past "
                              f"the int64 arithmetic of symbolic sizes; fix it with shapes=")
    else:
        want = [item(sizes, j, "int64") if isinstance(sizes, Value) else sizes[j] for j in range(k)]
        if policy == "stretch":
            out = want
        else:
            pick = {"not_larger": "min", "not_smaller": "max"}.get(policy)
            if pick is None:
                raise cx.fail(f"unknown keep_aspect_ratio_policy {policy!r}")
            ratio = None
            for j in range(k):
                w = want[j] if isinstance(want[j], T) else T(cx, _dim_tensor(cx, want[j]))
                rj = w.cast(f64) / d_t[j]
                ratio = rj if ratio is None else getattr(ratio, pick)(rj)
            for j in range(k):
                scale[j] = ratio
                out[j] = (ratio * d_t[j] + 0.5).floor().cast("int64")
    # the sizes read at run time, bound together
    run = [j for j in range(k) if isinstance(out[j], T)]
    bound_vec = None
    if run:
        vals = cx.op("concat", [reshape(cx, out[j].v, (1,)) for j in run], axis=0)
        if bad is not None:
            vals = data_dims.invalid_if(cx, vals, bad.v)
        bound_vec, syms = data_dims.bind(cx, vals, [f"axis{axes[j]}" for j in run])
        for n, j in enumerate(run):
            out[j] = syms[n]
    lo_hi = []
    for j in range(k):
        if isinstance(roi, Value):
            lo_hi.append((item(roi, j, f64), item(roi, j + k, f64)))
        else:
            lo_hi.append((roi[j], roi[j + k]) if roi is not None else (0.0, 1.0))
    y = x
    for j, a in enumerate(axes):
        n_out = seq = None
        if bound_vec is not None and j in run and isinstance(out[j], Sym):
            n_out = T(cx, data_dims.element(cx, bound_vec, run.index(j))).cast(f64)
            seq = T(cx, data_dims.iota(cx, bound_vec, out[j])).cast(f64)
        at = _RunTimeAxis(cx, a, dims[a], n_out, seq, 1 if policy == "stretch" or scales is not None else 2)
        y = _runtime_axis(cx, y, a, dims[a], out[j], scale[j], lo_hi[j], mode, coord, nearest_mode, cubic_a,
                          exclude_outside, extrapolation, antialias, at)
    return y


def _resize(cx, x, sizes, scales, roi, mode, coord, nearest_mode, cubic_a, exclude_outside, extrapolation,
            antialias):
    """Resize axis by axis; ``scales[ax]`` is None where it is the run's ``sizes[ax] / dims[ax]``."""
    dims = tuple(x.shape)
    r = len(dims)
    if mode != "nearest" and not is_float(x.dtype):
        raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
    out = x
    for ax in range(r):
        in_n, out_n, scale = dims[ax], sizes[ax], scales[ax]
        lo, hi = roi[ax], roi[ax + r]
        if isinstance(in_n, Sym) or isinstance(out_n, Sym):
            if out_n == in_n and (scale is None or math.isclose(scale, 1.0)) and (lo, hi) == (0.0, 1.0):
                continue
            f = _whole_factor(in_n, out_n, scale, lo, hi, coord, nearest_mode) if mode == "nearest" else None
            if f is not None:
                out = _repeat_axis(cx, out, ax, f)
            else:
                out = _runtime_axis(cx, out, ax, in_n, out_n, scale, (lo, hi), mode, coord, nearest_mode, cubic_a,
                                    exclude_outside, extrapolation, antialias)
            continue
        if scale is None:
            scale = out_n / in_n if in_n else 1.0
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


def scaled_dim(d, scale: float):
    """floor(d * scale), for a symbolic ``d`` too (``scale`` is taken as the exact binary
    fraction it is, as the float product is for any size below 2**29); None past int64's reach."""
    if isinstance(d, int):
        return int(math.floor(d * scale))
    q = Fraction(scale)
    if q.denominator > 1 << 32 or q.numerator > 1 << 32:
        return None
    return (d * q.numerator) // q.denominator


@translates("Resize")
def resize(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    mode = cx.attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise cx.fail(f"unknown mode {mode!r}")
    if cx.opset < 11:
        if data_dims.runtime_operand(cx, 1) is not None:
            return _upsample_at_run_time(cx, x, cx.input(1), mode)
        scales_in = cx.const_input(1, "scales", required=True)
        return _upsample_like(cx, x, dims, [float(s) for s in scales_in.reshape(-1)], mode)
    coord = cx.attr("coordinate_transformation_mode", "half_pixel")
    # roi is read only by tf_crop_and_resize: in other modes it may be anything, known or not
    axes = cx.attr("axes", None)
    axes = norm_axes(cx, axes, r) if axes is not None else list(range(r))
    run_time = _run_time_operands(cx, coord)
    if run_time is not None:
        return _resize_at_run_time(cx, x, axes, *run_time, cx.attr("keep_aspect_ratio_policy", "stretch"), mode,
                                   coord, cx.attr("nearest_mode", "round_prefer_floor"), cx.attr("cubic_coeff_a", -0.75),
                                   bool(cx.attr("exclude_outside", 0)), cx.attr("extrapolation_value", 0.0),
                                   bool(cx.attr("antialias", 0)) and mode != "nearest")
    roi = cx.const_input(1, "roi") if coord == "tf_crop_and_resize" else None
    scales = cx.const_input(2, "scales")
    sizes = cx.dims_input(3, "sizes")
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
            out[a] = scaled_dim(dims[a], v)
            if out[a] is None:
                raise cx.fail(f"scales axis {a} of {x.type} by {v}: floor({dims[a]} * {v}) is past the "
                              f"int64 arithmetic of symbolic sizes; fix it with shapes=")
    else:
        if len(sizes) != len(axes):
            raise cx.fail(f"sizes {sizes} must have {len(axes)} values")
        for a, v in zip(axes, sizes):
            out[a] = v
            if isinstance(v, int) and isinstance(dims[a], int):
                sc[a] = v / dims[a] if dims[a] else 1.0
            else:
                f = exact_div(v, dims[a])
                sc[a] = float(f) if isinstance(f, int) else None     # the run's ratio
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


def _run_time_operands(cx, coord: str):
    """(roi, scales, sizes) when one of them is read at run time: each a value, the constant
    list, or None where absent (or empty); None when all are known while compiling."""
    present = {}
    for i, what in ((1, "roi"), (2, "scales"), (3, "sizes")):
        v = cx.input(i, required=False)
        if v is None or v.type.num_elements == 0 or (what == "roi" and coord != "tf_crop_and_resize"):
            present[what] = None
        else:
            present[what] = data_dims.runtime_operand(cx, i)
    if all(v is None for v in present.values()):
        return None
    if present["roi"] is None and coord == "tf_crop_and_resize" and cx.has_input(1) and cx.input(1).type.num_elements:
        present["roi"] = [float(v) for v in cx.const_input(1, "roi").reshape(-1)]
    if present["scales"] is None and cx.has_input(2) and cx.input(2).type.num_elements:
        present["scales"] = [float(v) for v in cx.const_input(2, "scales").reshape(-1)]
    if present["sizes"] is None and cx.has_input(3) and cx.input(3).type.num_elements:
        present["sizes"] = cx.dims_input(3, "sizes")
    if (present["scales"] is None) == (present["sizes"] is None):
        raise cx.fail("needs exactly one of scales and sizes")
    return present["roi"], present["scales"], present["sizes"]


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
        out_n = scaled_dim(in_n, s)
        if out_n is None:
            raise cx.fail(f"scales axis {ax} of {x.type} by {s}: floor({in_n} * {s}) is past the int64 "
                          f"arithmetic of symbolic sizes; fix it with shapes=")
        if out_n == in_n and s == 1.0:
            continue
        if isinstance(in_n, Sym):
            rounding = "floor" if s >= 1 else "ceil"
            f = _whole_factor(in_n, out_n, s, 0.0, 1.0, "asymmetric", rounding) if mode == "nearest" else None
            if f is not None:
                out = _repeat_axis(cx, out, ax, f)
            else:
                if mode != "nearest" and not is_float(x.dtype):
                    raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
                out = _runtime_axis(cx, out, ax, in_n, out_n, s, (0.0, 1.0), mode, "asymmetric", rounding, -0.75,
                                    False, 0.0, False)
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


def _upsample_at_run_time(cx, x, scales: Value, mode: str):
    """Upsample (and Resize-10) by scales read at run time: each axis' size floor(d * scale) is
    bound (a scale of 0 or less: an error of the run); the source positions o / scale, nearest
    (floor, or ceil when shrinking) or linear between the two neighbours, as
    :func:`_upsample_like`."""
    dims = tuple(x.shape)
    r = len(dims)
    f64 = "float64"
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise cx.fail(f"unknown mode {mode!r}")
    if mode != "nearest" and not is_float(x.dtype):
        raise cx.unsupported(f"mode={mode!r} on {x.dtype} data")
    if scales.type.rank != 1 or scales.shape[0] != r:
        raise cx.fail(f"scales must hold {r} values, got {scales.type}")
    sv = T(cx, cx.op("cast", [scales], to=f64))
    s = [sv.gather(cx.scalar(a, "int64"), 0) for a in range(r)]
    d = [T(cx, _dim_tensor(cx, n)).cast(f64) if isinstance(n, Sym) else float(n) for n in dims]
    n_out = T(cx, cx.op("concat", [(s[a] * d[a]).floor().cast("int64").reshape((1,)).v for a in range(r)], axis=0))
    bad = (sv <= 0.0).cast("int64").sum((0,)) > 0
    bound, syms = data_dims.bind(cx, data_dims.invalid_if(cx, n_out.v, bad.v), [f"axis{a}" for a in range(r)])
    out = x
    for a in range(r):
        src = T(cx, data_dims.iota(cx, bound, syms[a])).cast(f64) / s[a]
        last = d[a] - 1.0
        shp = [1] * r
        shp[a] = syms[a]
        if mode == "nearest":
            i = (s[a] >= 1.0).where(src.floor(), src.unary("ceil"))
            out = T(cx, out).gather(i.max(0.0).min(last).cast("int64"), a).v
            continue
        i0 = src.floor().max(0.0).min(last)
        w1 = (src - i0).clip(0.0, 1.0).cast(x.dtype).reshape(shp)
        g0 = T(cx, out).gather(i0.cast("int64"), a)
        g1 = T(cx, out).gather((i0 + 1.0).min(last).cast("int64"), a)
        out = (g0 * (1.0 - w1) + g1 * w1).v
    return out


@translates("Upsample")
def upsample(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if cx.opset >= 9 and data_dims.runtime_operand(cx, 1) is not None:
        return _upsample_at_run_time(cx, x, cx.input(1), cx.attr("mode", "nearest"))
    if cx.opset >= 9:
        scales = [float(s) for s in cx.const_input(1, "scales", required=True).reshape(-1)]
    else:
        scales = [float(s) for s in cx.attr("scales")]
    return _upsample_like(cx, x, dims, scales, cx.attr("mode", "nearest"))

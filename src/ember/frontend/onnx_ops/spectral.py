"""ONNX signal-processing ops: DFT and STFT as matrix products with constant cosine and sine
matrices (the transform lengths are known at compile time; the other axes, and the signal length
an STFT cuts into frames, may be symbolic; an STFT's frame_step and frame_length may be read at
run time, the matrices of a run-time length computed in the graph), and MelWeightMatrix, a
constant of constant scalars (computed in the graph from scalars read at run time)."""

from __future__ import annotations

import numpy as np

from ...graph.ir import Value
from ...graph.types import is_float, is_int, np_dtype
from ...symbolic import Sym, product
from . import data_dims, translates
from .arith import T
from .tensor import norm_axis, pick_by_axis, reshape


def _scalar_int(cx, i, what, default=None):
    vals = cx.ints_input(i, what)
    if vals is None:
        return default
    if len(vals) != 1:
        raise cx.fail(f"{what} must hold one value, got {vals}")
    return vals[0]


def dft(cx, x: T, axis: int, length: int | None, inverse: bool, onesided: bool) -> T:
    """DFT of ``x`` ([..., 1 or 2], real or (re, im) last) along ``axis``; [..., 2], or [..., 1]
    for an inverse one-sided transform (a real signal)."""
    dims = x.shape
    r = len(dims)
    if dims[-1] not in (1, 2) or r < 2:
        raise cx.fail(f"the last axis of the input must hold 1 (real) or 2 (re, im) values, got {dims}")
    if not 0 <= axis < r - 1:
        raise cx.fail(f"axis {axis} must be a signal axis of {dims}, not the last one")
    n = dims[axis]
    if isinstance(n, Sym):
        raise cx.fail(f"the transformed axis {axis} of {x.v.type} has the symbolic length {n}: the transform "
                      f"matrices are built at compile time, so it must be static (fix it with shapes=)")
    irfft = inverse and onesided
    if length is None:
        length = 2 * (n - 1) if irfft else n
    if length < 1:
        raise cx.fail(f"dft_length must be positive, got {length}")
    used = min(n, length // 2 + 1 if irfft else length)           # input samples read
    n_out = length // 2 + 1 if (onesided and not inverse) else length
    # [input index, output index]: the phase is their product either way
    theta = 2 * np.pi * ((np.arange(used)[:, None] * np.arange(n_out)[None, :]) % length) / length
    cos, sin = np.cos(theta), np.sin(theta)
    if irfft:
        # a one-sided spectrum stands for its Hermitian-symmetric whole
        c = np.full((used, 1), 2.0)
        c[0] = 1.0
        if length % 2 == 0 and used > length // 2:
            c[length // 2] = 1.0
        cos, sin = cos * c, sin * c
    if inverse:
        cos, sin = cos / length, sin / length
    # accumulated in float64: the sums of many rounded products would otherwise leave
    # residues where the exact transform is 0
    out_dtype = x.dtype
    x = x.cast("float64")
    dt = "float64"
    npdt = np_dtype(dt)

    # signal axis last, real and imaginary parts apart: [rows, used]
    perm = [d for d in range(r - 1) if d != axis] + [axis]
    rest = [dims[d] for d in perm[:-1]]

    def part(p):
        v = x.gather(cx.scalar(p, "int64"), axis=r - 1)
        if perm != list(range(r - 1)):
            v = v.transpose(perm)
        if used != n:
            starts = [0] * (r - 1)
            ends = rest + [used]
            v = T(cx, cx.op("slice", [v.v], starts=tuple(starts), ends=tuple(ends), steps=(1,) * (r - 1)))
        return v.reshape((product(rest), used))

    def mm(a, m):
        return T(cx, cx.op("matmul", [a.v, cx.const(m.astype(npdt), dt)]))

    re_in = part(0)
    im_in = part(1) if dims[-1] == 2 else None
    sign = 1.0 if inverse else -1.0        # e^(sign * i theta)
    re = mm(re_in, cos)
    im = mm(re_in, sin * sign)
    if im_in is not None:
        re = re - mm(im_in, sin * sign)
        im = im + mm(im_in, cos)
    outs = [re] if irfft else [re, im]
    inv = [perm.index(d) for d in range(r - 1)]
    res = []
    for o in outs:
        o = o.reshape(tuple(rest) + (n_out,))
        if perm != list(range(r - 1)):
            o = o.transpose(inv)
        res.append(o.reshape(o.shape + (1,)))
    out = res[0] if len(res) == 1 else T(cx, cx.op("concat", [v.v for v in res], axis=r - 1))
    return out.cast(out_dtype)


@translates("DFT")
def dft_(cx):
    x = T(cx, cx.input(0))
    if not is_float(x.dtype):
        raise cx.fail(f"expects a floating-point input, got {x.v.type}")
    length = _scalar_int(cx, 1, "dft_length")
    inverse, onesided = bool(cx.attr("inverse", 0)), bool(cx.attr("onesided", 0))
    r = len(x.shape)
    if cx.opset >= 20 and cx.has_input(2) and cx.known_input(2) is None:
        # an axis known at run time only: the transform along each axis but the last (the
        # complex one), and the one it names picked (when they all have one shape)
        # (a one-sided transform's length along the axis differs: the run's is bound)
        return pick_by_axis(cx, cx.input(2), r, r - 1, lambda ax: dft(cx, x, ax, length, inverse, onesided).v,
                            shaped=True)
    if cx.opset >= 20:
        axis = _scalar_int(cx, 2, "axis", -2)
    else:
        axis = cx.attr("axis", 1)
    axis = norm_axis(cx, axis, r)
    return dft(cx, x, axis, length, inverse, onesided).v


@translates("STFT")
def stft(cx):
    x = T(cx, cx.input(0))
    if len(x.shape) == 2:
        # a real signal without its trailing axis, as PyTorch exports it (onnxruntime takes it)
        x = x.reshape(x.shape + (1,))
    dims = x.shape
    if len(dims) != 3 or isinstance(dims[-1], Sym) or dims[-1] not in (1, 2):
        raise cx.fail(f"signal must be [batch, length, 1 or 2] (or [batch, length], real), got {x.v.type}")
    window = cx.input(2, required=False)
    if data_dims.runtime_operand(cx, 1) is not None or data_dims.runtime_operand(cx, 3) is not None:
        return _stft_at_run_time(cx, x, window)
    step = _scalar_int(cx, 1, "frame_step")
    frame_length = _scalar_int(cx, 3, "frame_length")
    if frame_length is None:
        frame_length = dims[1] if window is None else window.shape[0]
    if isinstance(frame_length, Sym):
        raise cx.fail(f"the frame length {frame_length} (from the {'window' if window is not None else 'signal'}) is "
                      f"symbolic: the transform is built at compile time, so it must be static (fix it with shapes=)")
    if step is None or step < 1 or frame_length < 1 or (isinstance(dims[1], int) and frame_length > dims[1]):
        raise cx.fail(f"frame_step {step} and frame_length {frame_length} do not fit signal {x.v.type}")
    # a symbolic signal length gives a symbolic frame count (a signal shorter than one frame
    # is an error at run time, as in onnxruntime)
    n_frames = 1 + (dims[1] - frame_length) // step
    within = np.arange(frame_length, dtype=np.int64).reshape(1, frame_length)
    if isinstance(n_frames, Sym):
        starts = reshape(cx, cx.op("arange", [], length=n_frames, start=0, delta=step, dtype="int64"), (n_frames, 1))
        idx = cx.op("add", [starts, cx.const(within)])
    else:
        idx = cx.const(np.arange(n_frames, dtype=np.int64)[:, None] * step + within)
    frames = x.gather(idx, axis=1)                              # [batch, frames, frame_length, c]
    if window is not None:
        if tuple(window.shape) != (frame_length,):
            raise cx.fail(f"window {window.type} must have frame_length {frame_length} values")
        w = T(cx, window).cast(x.dtype)
        frames = frames * w.reshape((frame_length, 1))
    return dft(cx, frames, 2, frame_length, False, bool(cx.attr("onesided", 1))).v


def _stft_at_run_time(cx, x: T, window) -> Value:
    """STFT whose frame_step or frame_length is read at run time: the frame count (and a
    frame_length read at run time, with the length of the one-sided spectrum) bound as data
    symbols; a step below 1, a frame longer than the signal or other than the window's length
    fail the binding.  Frames are gathered at ``f * step + j``; a frame length known only at run
    time is transformed with cosine and sine matrices computed in the graph (float64, the phase
    from the integer product of the indices modulo the length)."""
    from .tensor import _dim_tensor

    b_n, n, c = x.shape
    onesided = bool(cx.attr("onesided", 1))
    i64 = lambda v: T(cx, cx.scalar(v, "int64"))  # noqa: E731

    def scalar(i, what):
        v = cx.input(i)
        if v.type.num_elements != 1 or not is_int(v.dtype):
            raise cx.fail(f"{what} must be one integer, got {v.type}")
        return T(cx, data_dims.scalar_of(cx, v)).cast("int64")

    step = scalar(1, "frame_step")
    if cx.has_input(3):
        fl = scalar(3, "frame_length") if data_dims.runtime_operand(cx, 3) is not None else None
        fl_static = None if fl is not None else _scalar_int(cx, 3, "frame_length")
    else:
        fl, fl_static = None, None
    if window is not None and (window.type.rank != 1 or not isinstance(window.shape[0], int)):
        raise cx.fail(f"window must be a 1-D tensor of static length, got {window.type}")
    if fl is None and fl_static is None:
        fl_static = n if window is None else window.shape[0]    # (the defaults)
    if isinstance(fl_static, Sym) or (fl_static is not None and fl_static < 1):
        raise cx.fail(f"frame_length {fl_static} must be static and positive here")
    length = T(cx, _dim_tensor(cx, n))
    f = fl if fl is not None else i64(fl_static)
    bad = (step < 1) | (f < 1) | (f > length)
    if window is not None and fl is not None:
        bad = bad | f.ne(window.shape[0])
    if window is not None and fl is None and fl_static != window.shape[0]:
        raise cx.fail(f"window {window.type} must have frame_length {fl_static} values")
    count = (length - f) / step.max(1) + 1
    if fl is not None and window is not None:
        fl, fl_static = None, window.shape[0]          # the window fixes it (checked above)
    vals = [count]
    if fl is not None:
        vals += [f, f / 2 + 1 if onesided else f]
    vals = cx.op("concat", [v.reshape((1,)).v for v in vals], axis=0)
    lim = n if isinstance(n, int) else None
    names = ["frames"] + (["frame_length", "bins"] if fl is not None else [])
    bound, syms = data_dims.bind(cx, data_dims.invalid_if(cx, vals, bad.v), names, limits=[lim] * len(names))
    n_frames = syms[0]
    width = syms[1] if fl is not None else fl_static
    starts = T(cx, data_dims.iota(cx, bound, n_frames)).reshape((n_frames, 1)) * step
    within = T(cx, data_dims.iota(cx, bound, width)).reshape((1, width))
    frames = x.gather(starts + within, axis=1)                        # [batch, frames, frame_length, c]
    if window is not None:
        frames = frames * T(cx, window).cast(x.dtype).reshape((width, 1))
    if fl is None:
        return dft(cx, frames, 2, fl_static, False, onesided).v
    # the transform of a length only the run gives: [j, k] phases from (j * k) mod length
    bins = syms[2]
    fb = T(cx, data_dims.element(cx, bound, 1))
    j = T(cx, data_dims.iota(cx, bound, width)).reshape((width, 1))
    k = T(cx, data_dims.iota(cx, bound, bins)).reshape((1, bins))
    theta = ((j * k) % fb).cast("float64") * (2 * np.pi) / fb.cast("float64")
    cos, sin = theta.unary("cos"), theta.unary("sin")
    fr = frames.cast("float64")

    def part(p):
        return fr.gather(cx.scalar(p, "int64"), axis=3)                   # [batch, frames, frame_length]

    def mm(a, m):
        return T(cx, cx.op("matmul", [a.v, m.v]))

    re_in = part(0)
    re, im = mm(re_in, cos), mm(re_in, sin) * -1.0
    if c == 2:
        im_in = part(1)
        re, im = re + mm(im_in, sin), im + mm(im_in, cos)
    out = cx.op("concat", [re.reshape(re.shape + (1,)).v, im.reshape(im.shape + (1,)).v], axis=3)
    return T(cx, out).cast(x.dtype).v


@translates("MelWeightMatrix")
def mel_weight_matrix(cx):
    # a constant of the scalar inputs: triangular filters between mel-spaced bin edges
    from ..onnx import onnx_dtype

    def scalar(i, what):
        v = cx.const_input(i, what, required=True)
        if v.size != 1:
            raise cx.fail(f"{what} must be a scalar, got shape {list(v.shape)}")
        return v.reshape(()).item()

    if any(data_dims.runtime_operand(cx, i) is not None for i in range(5)):
        return _mel_weight_matrix_at_run_time(cx)
    n_mel, n_dft = int(scalar(0, "num_mel_bins")), int(scalar(1, "dft_length"))
    rate = scalar(2, "sample_rate")
    lo_hz, hi_hz = scalar(3, "lower_edge_hertz"), scalar(4, "upper_edge_hertz")
    if n_mel < 1 or n_dft < 1 or rate <= 0:
        raise cx.fail(f"num_mel_bins {n_mel}, dft_length {n_dft} and sample_rate {rate} must be positive")
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    lo, hi = to_mel(lo_hz), to_mel(hi_hz)
    mels = lo + np.arange(n_mel + 2) * ((hi - lo) / (n_mel + 2))
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    edges = ((n_dft + 1) * hz // rate).astype(np.int64)
    out = np.zeros((n_dft // 2 + 1, n_mel))
    for m in range(n_mel):
        left, center, right = edges[m], edges[m + 1], edges[m + 2]
        if center == left:
            out[center, m] = 1.0
        else:
            j = np.arange(left, center + 1)
            out[j, m] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, m] = (right - j) / (right - center)
    dtype = onnx_dtype(cx.attr("output_datatype", 1), "output_datatype", cx.name, cx.op_type)
    return cx.const(out.astype(np_dtype(dtype)), dtype)


def _mel_weight_matrix_at_run_time(cx) -> Value:
    """MelWeightMatrix of scalars read at run time: the number of bins (dft_length // 2 + 1) and
    num_mel_bins bound (either below 1, or a sample rate of 0 or less, fails the binding), and
    every [bin j, filter m] entry computed in the graph (float64) from the three bin edges of
    filter m, as the constant form: rising from the left edge to the center, falling to the right
    edge, 1 at a center that equals its left edge."""
    from ..onnx import onnx_dtype

    def scalar(i, what, dtype):
        v = cx.input(i)
        if v.type.num_elements != 1:
            raise cx.fail(f"{what} must be a scalar, got {v.type}")
        return T(cx, data_dims.scalar_of(cx, v)).cast(dtype)

    n_mel, n_dft = scalar(0, "num_mel_bins", "int64"), scalar(1, "dft_length", "int64")
    rate = scalar(2, "sample_rate", "float64")
    lo_hz, hi_hz = scalar(3, "lower_edge_hertz", "float64"), scalar(4, "upper_edge_hertz", "float64")
    bad = (n_mel < 1) | (n_dft < 1) | (rate <= 0.0)
    sizes = cx.op("concat", [(n_dft / 2 + 1).reshape((1,)).v, n_mel.reshape((1,)).v], axis=0)
    bound, (bins, mels) = data_dims.bind(cx, data_dims.invalid_if(cx, sizes, bad.v), ["bins", "mel_bins"])
    ln10 = float(np.log(10.0))

    def to_mel(hz):
        return ((hz / 700.0 + 1.0).unary("log") / ln10) * 2595.0

    lo, hi = to_mel(lo_hz), to_mel(hi_hz)
    step = (hi - lo) / (T(cx, data_dims.element(cx, bound, 1)).cast("float64") + 2.0)
    m = T(cx, data_dims.iota(cx, bound, mels)).reshape((1, mels))

    def edge(k):
        mel = lo + (m + k).cast("float64") * step
        hz = ((mel / 2595.0 * ln10).unary("exp") - 1.0) * 700.0
        return ((n_dft + 1).cast("float64") * hz / rate).unary("floor").cast("int64")

    left, center, right = edge(0), edge(1), edge(2)
    j = T(cx, data_dims.iota(cx, bound, bins)).reshape((bins, 1))
    jf, lf, cf, rf = (v.cast("float64") for v in (j, left, center, right))
    rising = (j >= left) & (j <= center) & (center > left)
    falling = (j >= center) & (j < right)
    val = falling.where((rf - jf) / (right - center).max(1).cast("float64"),
                        rising.where((jf - lf) / (center - left).max(1).cast("float64"),
                                     (center.eq(left) & j.eq(center)).cast("float64")))
    dtype = onnx_dtype(cx.attr("output_datatype", 1), "output_datatype", cx.name, cx.op_type)
    return val.cast(dtype).v

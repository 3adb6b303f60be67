"""onnxruntime's quantized ops (domain ``com.microsoft``): the QOperator forms its quantizer
writes, the dynamically quantized products its optimizer fuses, MatMulNBits; with the
arithmetic of its x86 CPU kernels, bit for bit where they are deterministic.

* Element-wise ops on 8-bit data (QLinearAdd, QLinearMul, QLinearSigmoid, QLinearLeakyRelu and
  QLinearConcat's requantization) are lookup tables computed at compile time, as onnxruntime's
  kernels compute them or with their exact float32 arithmetic (fused multiply-adds included),
  then gathered: the same bytes in the reference interpreter and in compiled code, whatever
  the target's FMA contraction.  Their scales and zero points must be constants.
* QLinearGlobalAveragePool and QGemm / MatMulIntegerToFloat / DynamicQuantizeMatMul / QAttention
  are integer accumulations brought back with ``requantize`` (or a float scale and bias).
* QLinearAveragePool dequantizes, sums each window tap by tap in onnxruntime's order and divides
  by its count; QLinearSoftmax uses onnxruntime's exponential table and its float32 row sum in
  order.

QEmbedLayerNormalization dequantizes its tables and runs EmbedLayerNormalization's float path;
DynamicQuantizeLSTM is LSTM whose two products quantize their float operand dynamically;
MatMulNBits dequantizes its constant weight at compile time.
"""

from __future__ import annotations

import numpy as np

from ...graph.types import np_dtype
from ...symbolic import Sym
from ...ops.nn import conv_out_dim
from .arith import T
from .contrib import attention_core, embed_core, ms, refuse_attrs
from .nn import _pool_window
from .quant import _integer_matmul, _requantize, dequantize_linear, quantize_linear
from .rnn import _Cell, lstm_cell
from .tensor import _dim_tensor, norm_axis, prod, reshape

_EIGHT = ("int8", "uint8")
f32 = np.float32


# ---- constants and tables -----------------------------------------------------------------------

def scalar_param(cx, k: int, what: str, dtype=None):
    """A one-element constant input as a numpy scalar (float32 scales; zero points of ``dtype``,
    0 when the input is left out)."""
    if not cx.has_input(k):
        if dtype is None:
            raise cx.fail(f"{what} (input {k}) is required")
        return np_dtype(dtype).type(0)
    arr = cx.const_input(k, what, required=True)
    if arr.size != 1:
        raise cx.unsupported(f"{what} with {arr.size} values (one per tensor only)")
    v = arr.reshape(-1)[0]
    if dtype is not None and arr.dtype != np_dtype(dtype):
        raise cx.fail(f"{what} must be {dtype}, got {arr.dtype}")
    return v


def eight_bit(cx, v, what="input"):
    if v.dtype not in _EIGHT:
        raise cx.fail(f"{what} must be int8 or uint8, got {v.dtype}")
    return v.dtype


def values(dtype: str) -> np.ndarray:
    """Every value of an 8-bit type, in order."""
    info = np.iinfo(np_dtype(dtype))
    return np.arange(info.min, info.max + 1, dtype=np.int32)


def quantize_np(v: np.ndarray, scale, zp, dtype: str) -> np.ndarray:
    """MLAS's QuantizeLinear: saturate(round_half_even(v / scale) + zp) in float32."""
    info = np.iinfo(np_dtype(dtype))
    q = np.rint((v.astype(f32) / f32(scale)).astype(f32)) + int(zp)
    return np.clip(q, info.min, info.max).astype(np_dtype(dtype))


def saturate_np(r: np.ndarray, dtype: str) -> np.ndarray:
    """round_half_even(r) saturated to ``dtype`` (cvtps2dq, then saturating packs)."""
    info = np.iinfo(np_dtype(dtype))
    return np.clip(np.rint(r), info.min, info.max).astype(np_dtype(dtype))


def fma_np(x, y, z) -> np.ndarray:
    """float32 fused multiply-add, exactly rounded: the product is exact in float64, the sum
    is rounded to odd there, so rounding it to float32 rounds once."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    p = x * y
    s = p + z
    bp = s - z
    err = (p - bp) + (z - (s - bp))
    even = (s.view(np.int64) & 1) == 0
    s = np.where((err != 0) & even, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(f32)


def lookup(cx, x, table: np.ndarray):
    """table[x - min(x's type)]: a gather from a constant table of every value of x's type."""
    lo = int(np.iinfo(np_dtype(x.dtype)).min)
    idx = T(cx, x).cast("int32")
    if lo:
        idx = idx - lo
    return cx.op("gather", [cx.const(table), idx.v], axis=0)


def lookup2(cx, a, b, table: np.ndarray):
    """table[a, b] (a and b broadcast) from a constant 256 x 256 table of every pair."""
    lo = int(np.iinfo(np_dtype(a.dtype)).min)
    ia, ib = T(cx, a).cast("int32"), T(cx, b).cast("int32")
    idx = (ia - lo) * 256 + (ib - lo)
    return cx.op("gather", [cx.const(table.reshape(-1)), idx.v], axis=0)


# ---- element-wise -------------------------------------------------------------------------------

def _binary_params(cx):
    a, b = cx.input(0), cx.input(3)
    dt = eight_bit(cx, a, "A")
    if b.dtype != dt:
        raise cx.fail(f"A and B must have one type, got {a.dtype} and {b.dtype}")
    sa, za = scalar_param(cx, 1, "A_scale"), scalar_param(cx, 2, "A_zero_point", dt)
    sb, zb = scalar_param(cx, 4, "B_scale"), scalar_param(cx, 5, "B_zero_point", dt)
    sc, zc = scalar_param(cx, 6, "C_scale"), scalar_param(cx, 7, "C_zero_point", dt)
    return a, b, dt, (f32(sa), int(za), f32(sb), int(zb), f32(sc), int(zc))


@ms("QLinearAdd")
def qlinear_add(cx):
    """MLAS's AVX2 kernel: fma(a, sa/sc, fma(b, sb/sc, zc - (sa/sc * za + sb/sc * zb))), rounded
    half to even and saturated (a and b the stored integers)."""
    a, b, dt, (sa, za, sb, zb, sc, zc) = _binary_params(cx)
    rac, rbc = f32(sa / sc), f32(sb / sc)
    fixed = f32(f32(zc) - f32(f32(rac * f32(za)) + f32(rbc * f32(zb))))
    v = values(dt).astype(f32)
    table = saturate_np(fma_np(v[:, None], rac, fma_np(v[None, :], rbc, fixed)), dt)
    return lookup2(cx, a, b, table)


@ms("QLinearMul")
def qlinear_mul(cx):
    """MLAS's SSE2 kernel: float((a - za) * (b - zb)) * (sa * sb / sc) + zc in float32, rounded half
    to even and saturated."""
    a, b, dt, (sa, za, sb, zb, sc, zc) = _binary_params(cx)
    ratio = f32(f32(sa * sb) / sc)
    v = values(dt)
    prod_ = ((v[:, None] - za) * (v[None, :] - zb)).astype(f32)
    table = saturate_np(f32(f32(prod_ * ratio) + f32(zc)), dt)
    return lookup2(cx, a, b, table)


def _unary_table(cx, fn):
    """The 256-entry table of onnxruntime's QLinearLookupBase: x dequantized (x_scale * (x - zp)),
    ``fn`` in float32, quantized to y's parameters."""
    x = cx.input(0)
    dt = eight_bit(cx, x, "X")
    sx, zx = f32(scalar_param(cx, 1, "X_scale")), int(scalar_param(cx, 2, "X_zero_point", dt))
    sy, zy = f32(scalar_param(cx, 3, "Y_scale")), int(scalar_param(cx, 4, "Y_zero_point", dt))
    deq = f32(sx * (values(dt) - zx).astype(f32))
    return lookup(cx, x, quantize_np(fn(deq).astype(f32), sy, zy, dt))


@ms("QLinearSigmoid")
def qlinear_sigmoid(cx):
    """onnxruntime's table with the logistic function in float32 (its MLAS kernel approximates
    it to about an ulp: a table entry can differ where the value lies on a rounding boundary)."""
    def sigmoid(v):
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-v.astype(np.float64)))).astype(f32)
    return _unary_table(cx, sigmoid)


@ms("QLinearLeakyRelu")
def qlinear_leaky_relu(cx):
    alpha = f32(cx.attr("alpha", 0.01))
    return _unary_table(cx, lambda v: np.where(v >= 0, v, f32(alpha * v)).astype(f32))


@ms("QLinearConcat")
def qlinear_concat(cx):
    """Inputs: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per tensor; an input with
    Y's parameters is copied, the others requantized through onnxruntime's table (dequantize,
    then MLAS's QuantizeLinear)."""
    if (cx.num_inputs - 2) % 3 or cx.num_inputs < 5:
        raise cx.fail(f"expects Y_scale, Y_zero_point and triples (X, scale, zero point), got {cx.num_inputs} inputs")
    sy = f32(scalar_param(cx, 0, "Y_scale"))
    parts = []
    dt = None
    for k in range(2, cx.num_inputs, 3):
        x = cx.input(k)
        dt = dt or eight_bit(cx, x, f"input {k}")
        if x.dtype != dt:
            raise cx.fail(f"the inputs must have one type, got {dt} and {x.dtype}")
        zy = int(scalar_param(cx, 1, "Y_zero_point", dt))
        sx, zx = f32(scalar_param(cx, k + 1, f"scale of input {k}")), int(scalar_param(cx, k + 2, f"zero point of input {k}", dt))
        if sx == sy and zx == zy:
            parts.append(x)
        else:
            deq = f32(sx * (values(dt) - zx).astype(f32))
            parts.append(lookup(cx, x, quantize_np(deq, sy, zy, dt)))
    axis = norm_axis(cx, cx.attr("axis"), parts[0].type.rank)
    return parts[0] if len(parts) == 1 else cx.op("concat", parts, axis=axis)


# ---- pooling ------------------------------------------------------------------------------------

def _channels_first(cx, x):
    if not cx.attr("channels_last", 0):
        return x, None
    r = x.type.rank
    perm = (0, r - 1) + tuple(range(1, r - 1))
    back = (0,) + tuple(range(2, r)) + (1,)
    return cx.op("transpose", [x], perm=perm), back


@ms("QLinearGlobalAveragePool")
def qlinear_global_average_pool(cx):
    """sum(x) - zx * size in int32, requantized by x_scale / (y_scale * size) (MLAS)."""
    x, back = _channels_first(cx, cx.input(0))
    dt = eight_bit(cx, x, "X")
    dims = tuple(x.shape)
    if len(dims) < 3:
        raise cx.fail(f"expects an input of rank >= 3, got {x.type}")
    size = prod(dims[2:])
    sx, zx = f32(scalar_param(cx, 1, "x_scale")), int(scalar_param(cx, 2, "x_zero_point", dt))
    sy, zy = f32(scalar_param(cx, 3, "y_scale")), scalar_param(cx, 4, "y_zero_point", dt)
    acc = cx.op("reduce_sum", [T(cx, x).cast("int32").v], axes=tuple(range(2, len(dims))), keepdims=True)
    if isinstance(size, Sym):
        # the window's size at run time: the same float32 steps as the constant below
        n = T(cx, _dim_tensor(cx, size))
        if zx:
            acc = cx.op("sub", [acc, (n.cast("int32") * zx).v])
        mult = (T(cx, cx.scalar(sx, "float32")) / (n.cast("float32") * float(sy))).v
    else:
        if zx:
            acc = cx.op("sub", [acc, cx.scalar(zx * size, "int32")])
        mult = cx.scalar(f32(sx / f32(sy * f32(size))), "float32")
    y = cx.op("requantize", [acc, mult, cx.scalar(zy, dt)])
    return y if back is None else cx.op("transpose", [y], perm=back)


@ms("QLinearAveragePool")
def qlinear_average_pool(cx):
    """onnxruntime's kernel: x_scale * (x - zx) in float32, summed over each window's taps inside
    the input in row-major order from 0, divided by the window's size (count_include_pad: the
    whole kernel, even where a ceil_mode window runs past the padding; else the taps inside),
    then saturate(round_half_even(avg / y_scale + zy)) -- the zero point added before
    rounding.  The taps are added one after the other, so the sums are onnxruntime's to the
    bit.  1-D and 2-D; dilations refused."""
    x, back = _channels_first(cx, cx.input(0))
    dt = eight_bit(cx, x, "X")
    sx, zx = f32(scalar_param(cx, 1, "x_scale")), int(scalar_param(cx, 2, "x_zero_point", dt))
    sy, zy = f32(scalar_param(cx, 3, "y_scale")), int(scalar_param(cx, 4, "y_zero_point", dt))
    dims = tuple(x.shape)
    if any(isinstance(d, Sym) for d in dims[2:]):
        raise cx.fail(f"the spatial dimensions of {x.type} are symbolic: the taps and the counts of each "
                      f"window are laid out at compile time; fix them with shapes=")
    kernel, strides, pads, dil, ceil_mode = _pool_window(cx, x)
    nsp = len(kernel)
    if nsp > 2:
        raise cx.unsupported(f"{nsp}-D pooling (1-D and 2-D only)")
    if any(d != 1 for d in dil):
        raise cx.unsupported(f"dilations {list(dil)}")
    deq = lookup(cx, x, f32(sx * (values(dt) - zx).astype(f32)))
    if nsp == 1:
        deq = reshape(cx, deq, (dims[0], dims[1], 1, dims[2]))
        kernel, strides, pads = [1, kernel[0]], [1, strides[0]], [0, pads[0], 0, pads[1]]
    n, c, h, w = deq.shape
    out = [conv_out_dim(size, k, st, pads[a], pads[a + 2], 1, ceil_mode)
           for a, (size, k, st) in enumerate(zip((h, w), kernel, strides))]
    ends = [max(pads[a + 2], (out[a] - 1) * strides[a] + kernel[a] - (size + pads[a]))
            for a, size in enumerate((h, w))]
    padded = cx.op("pad", [deq], pads=(0, 0, pads[0], pads[1], 0, 0, ends[0], ends[1]), value=0.0)
    acc = None
    for kh in range(kernel[0]):
        for kw in range(kernel[1]):
            tap = cx.op("slice", [padded], starts=(0, 0, kh, kw),
                        ends=(n, c, kh + (out[0] - 1) * strides[0] + 1, kw + (out[1] - 1) * strides[1] + 1),
                        steps=(1, 1, strides[0], strides[1]))
            acc = tap if acc is None else cx.op("add", [acc, tap])
    if cx.attr("count_include_pad", 0):
        count = np.full(out, kernel[0] * kernel[1], dtype=f32)
    else:
        spans = []
        for a, size in enumerate((h, w)):
            start = np.arange(out[a]) * strides[a] - pads[a]
            spans.append(np.minimum(start + kernel[a], size) - np.maximum(start, 0))
        count = np.multiply.outer(spans[0], spans[1]).astype(f32)
    avg = T(cx, acc) / cx.const(count.reshape(1, 1, *out))
    info = np.iinfo(np_dtype(dt))
    v = (avg / float(sy) + float(zy)).unary("round")
    y = cx.op("cast", [cx.op("clip", [v.v], lo=float(info.min), hi=float(info.max))], to=dt)
    if nsp == 1:
        y = reshape(cx, y, (n, c, out[1]))
    return y if back is None else cx.op("transpose", [y], perm=back)


# ---- softmax ------------------------------------------------------------------------------------

#: rows up to this long are summed one element after the other, in onnxruntime's order
SEQUENTIAL_SUM = 256


@ms("QLinearSoftmax")
def qlinear_softmax(cx):
    """onnxruntime's kernel: exp((x - max(row) + shift) * x_scale) from its float32 table (shift
    keeps the row sum in range), the row summed in float32 left to right, then
    round_half_even(e * floor(1 / y_scale) / sum) + y_zero_point, saturated (onnxruntime 1.2x:
    a row's maximum with y_zero_point -128 gives 127).  opset < 13 takes the input flattened to
    2-D at ``axis``."""
    x = cx.input(0)
    dt = eight_bit(cx, x, "X")
    dims = tuple(x.shape)
    r = len(dims)
    opset = cx.attr("opset")
    axis = norm_axis(cx, cx.attr("axis", 1 if opset < 13 else -1), r)
    if isinstance(prod(dims[axis:]) if opset < 13 else dims[axis], Sym):
        raise cx.fail(f"the softmax axis of {x.type} is symbolic: its length decides the table and the order "
                      f"of the sum, at compile time; fix it with shapes=")
    sx = f32(scalar_param(cx, 1, "X_scale"))
    sy = f32(scalar_param(cx, 3, "y_scale"))
    zy = int(scalar_param(cx, 4, "y_zero_point", dt))
    perm = None
    if opset < 13:
        d = prod(dims[axis:])
        x2 = reshape(cx, x, (prod(dims[:axis]), d))
    else:
        d = dims[axis]
        if axis != r - 1:
            perm = list(range(r))
            perm[axis], perm[-1] = perm[-1], perm[axis]
            x = cx.op("transpose", [x], perm=tuple(perm))
        x2 = reshape(cx, x, (prod(x.shape[:-1]), d))
    # the table: entry 255 - k holds exp((shift - k) * x_scale), k = max(row) - x
    shift = max(0.0, np.log(np.float64(np.finfo(f32).max) / d) - 5) / np.float64(sx)
    i = np.arange(256, dtype=np.float64)
    table = np.exp((i - 255 + shift) * np.float64(sx)).astype(f32)
    xi = T(cx, x2).cast("int32")
    mx = T(cx, cx.op("reduce_max", [xi.v], axes=(1,), keepdims=True))
    e = T(cx, cx.op("gather", [cx.const(table), ((xi - mx) + 255).v], axis=0))      # [N, D]
    if d <= SEQUENTIAL_SUM:
        total = None
        for j in range(d):
            col = cx.op("slice", [e.v], starts=(0, j), ends=(e.shape[0], j + 1), steps=(1, 1))
            total = col if total is None else cx.op("add", [total, col])
    else:
        total = cx.op("reduce_sum", [e.v], axes=(1,), keepdims=True)
    ys = f32(np.floor(f32(1.0) / sy))
    q = ((e * float(ys)) / T(cx, total)).unary("round").cast("int32") + zy
    info = np.iinfo(np_dtype(dt))
    y = q.clip(int(info.min), int(info.max)).cast(dt)
    y = reshape(cx, y.v, x.shape if perm is not None or opset >= 13 else dims)
    if perm is not None:
        y = cx.op("transpose", [y], perm=tuple(perm))
    return y


# ---- integer products -----------------------------------------------------------------------------

def _per_column(cx, v, n: int, what: str):
    """A scale or zero point: one value, or one per output column (N)."""
    if v.type.size == 1:
        return reshape(cx, v, ())
    if v.type.rank == 1 and v.shape[0] == n:
        return v
    raise cx.fail(f"{what} {v.type} must have one value or {n}")


@ms("QGemm")
def qgemm(cx):
    """A, a_scale, a_zero_point, B, b_scale, b_zero_point, C (int32, added to the accumulator),
    y_scale, y_zero_point; alpha, transA, transB.  acc * (alpha * a_scale * b_scale[n] / y_scale)
    requantized, or as float without y_scale."""
    a, a_scale, a_zp = cx.input(0), cx.input(1), cx.input(2)
    b, b_scale, b_zp = cx.input(3), cx.input(4), cx.input(5)
    c, y_scale, y_zp = cx.input(6, required=False), cx.input(7, required=False), cx.input(8, required=False)
    if cx.attr("transA", 0):
        a = cx.op("transpose", [a], perm=(1, 0))
    if cx.attr("transB", 0):
        b = cx.op("transpose", [b], perm=(1, 0))
    n = b.shape[1]
    acc = _integer_matmul(cx, a, b, reshape(cx, a_zp, ()), _per_column(cx, b_zp, n, "b_zero_point"))
    if c is not None:
        acc = cx.op("add", [acc, c])
    scale = T(cx, cx.scalar(float(cx.attr("alpha", 1.0)), "float32")) * reshape(cx, a_scale, ())
    scale = scale * _per_column(cx, b_scale, n, "b_scale")
    if y_scale is None:
        return cx.op("mul", [cx.op("cast", [acc], to="float32"), scale.v])
    scale = scale / reshape(cx, y_scale, ())
    if y_zp is None:
        raise cx.fail("y_scale is given without y_zero_point")
    return _requantize(cx, acc, scale.v, reshape(cx, y_zp, ()))


def _float_output(cx, acc, a_scale, b_scale, bias, n):
    """float(acc) * (a_scale * b_scale) (+ bias)."""
    scale = cx.op("mul", [reshape(cx, a_scale, ()), _per_column(cx, b_scale, n, "b_scale")])
    y = cx.op("mul", [cx.op("cast", [acc], to="float32"), scale])
    return y if bias is None else cx.op("add", [y, bias])


def _int_matmul_nd(cx, a, b, a_zp, b_zp):
    """The integer product of a [..., M, K] and a 2-D b [K, N] (zero points as for
    MatMulInteger: a scalar for a, a scalar or one per column for b)."""
    dims = tuple(a.shape)
    if b.type.rank != 2:
        raise cx.unsupported(f"B of rank {b.type.rank} (2-D weights only)")
    a2 = reshape(cx, a, (prod(dims[:-1]), dims[-1])) if len(dims) != 2 else a
    acc = _integer_matmul(cx, a2, b, a_zp, b_zp)
    return reshape(cx, acc, tuple(dims[:-1]) + (b.shape[1],)) if len(dims) != 2 else acc


@ms("MatMulIntegerToFloat")
def matmul_integer_to_float(cx):
    """A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias: the integer product as float,
    times a_scale * b_scale, plus bias."""
    a, b, a_scale, b_scale = cx.input(0), cx.input(1), cx.input(2), cx.input(3)
    a_zp, b_zp, bias = cx.input(4, required=False), cx.input(5, required=False), cx.input(6, required=False)
    n = b.shape[-1]
    acc = _int_matmul_nd(cx, a, b, None if a_zp is None else reshape(cx, a_zp, ()),
                         None if b_zp is None else _per_column(cx, b_zp, n, "b_zero_point"))
    return _float_output(cx, acc, a_scale, b_scale, bias, n)


def dynamic_quantize(cx, x, per_row: bool = False):
    """onnxruntime's dynamic quantization of a float tensor (of each row of a 2-D one with
    ``per_row``) to uint8: the range [min(x, 0), max(x, 0)] over 255 steps (scale 1 when it is
    empty), zero point round(0 - min / scale) clamped to [0, 255]; returns (q, scale, zero
    point), the parameters scalars or [rows, 1]."""
    axes = (1,) if per_row else tuple(range(x.type.rank))
    lo = T(cx, cx.op("reduce_min", [x], axes=axes, keepdims=per_row)).min(0.0)
    hi = T(cx, cx.op("reduce_max", [x], axes=axes, keepdims=per_row)).max(0.0)
    scale = (hi.eq(lo)).where(T(cx, cx.scalar(1.0, "float32")), (hi - lo) / 255.0)
    zp = (T(cx, cx.scalar(0.0, "float32")) - lo / scale).clip(0.0, 255.0).unary("round").cast("uint8")
    return cx.op("quantize", [x, scale.v, zp.v]), scale.v, zp.v


@ms("DynamicQuantizeMatMul")
def dynamic_quantize_matmul(cx):
    """A (float) quantized dynamically to uint8, times B (int8/uint8) with b_scale and
    b_zero_point, as float, plus bias."""
    a, b, b_scale = cx.input(0), cx.input(1), cx.input(2)
    b_zp, bias = cx.input(3, required=False), cx.input(4, required=False)
    q, scale, zp = dynamic_quantize(cx, a)
    n = b.shape[-1]
    acc = _int_matmul_nd(cx, q, b, zp, None if b_zp is None else _per_column(cx, b_zp, n, "b_zero_point"))
    return _float_output(cx, acc, scale, b_scale, bias, n)


@ms("QAttention")
def qattention(cx):
    """Attention over quantized input and weights: input (uint8) [B, S, D], weight [D, 3H],
    bias (float), input_scale, weight_scale (one value), mask_index, input_zero_point,
    weight_zero_point, past; num_heads, unidirectional, mask_filter_value, scale.  The QKV
    product is the integer product scaled to float plus bias, then Attention's float path."""
    refuse_attrs(cx, do_rotary=0, past_present_share_buffer=0)
    x, w, bias = cx.input(0), cx.input(1), cx.input(2)
    x_scale, w_scale = cx.input(3), cx.input(4)
    mask = cx.input(5, required=False)
    x_zp, w_zp, past = cx.input(6, required=False), cx.input(7, required=False), cx.input(8, required=False)
    if w_scale.type.size != 1 or (w_zp is not None and w_zp.type.size != 1):
        raise cx.unsupported("per-column weight scales or zero points")
    n3 = w.shape[1]
    acc = _int_matmul_nd(cx, x, w, None if x_zp is None else reshape(cx, x_zp, ()),
                         None if w_zp is None else reshape(cx, w_zp, ()))
    qkv = _float_output(cx, acc, x_scale, w_scale, bias, n3)
    return attention_core(cx, qkv, [n3 // 3] * 3, mask, past, None)


@ms("QEmbedLayerNormalization")
def qembed_layer_norm(cx):
    """EmbedLayerNormalization over 8-bit tables (word, position, segment embeddings, gamma,
    beta; inputs 2-6) with their scales (inputs 8-12) and zero points (inputs 13-17), each
    dequantized as (q - zero point) * scale in float32; outputs: the normalized sum and the
    mask index."""
    tables = []
    for k in range(5):
        q = cx.input(2 + k, required=k != 2)
        if q is None:
            tables.append(None)
            continue
        eight_bit(cx, q, f"input {2 + k}")
        scale = reshape(cx, cx.input(8 + k), ())
        zp = cx.input(13 + k, required=False)
        zp = cx.scalar(0, q.dtype) if zp is None else reshape(cx, zp, ())
        tables.append(cx.op("dequantize", [q, scale, zp]))
    word, pos, seg, gamma, beta = tables
    y, mask_index, _ = embed_core(cx, cx.input(0), cx.input(1, required=False), word, pos, seg, gamma, beta,
                                  cx.input(7, required=False), None)
    return [y, mask_index]


class _QuantizedCell(_Cell):
    """An LSTM cell whose weights are 8-bit, [directions, K, 4 * hidden] (K the input or hidden
    size), with per-direction or per-column scales and zero points: each product quantizes its
    float operand dynamically, as onnxruntime does -- all of X at once, the hidden state at every
    step row by row -- and scales the integer product back to float."""

    def check_weights(self, nd: int) -> None:
        cx, gh = self.cx, self.gates * self.h
        for v, k, what in ((self.w, self.input_size, "W"), (self.r, self.h, "R")):
            eight_bit(cx, v, what)
            if tuple(v.shape) != (nd, k, gh):
                raise cx.fail(f"{what} {v.type} must be [{nd}, {k}, {gh}]")
        self.params = {}
        for what, si, zi in (("W", 8, 9), ("R", 10, 11)):
            scale, zp = cx.input(si), cx.input(zi)
            if tuple(scale.shape) not in ((nd,), (nd, gh)) or tuple(zp.shape) != tuple(scale.shape):
                raise cx.fail(f"{what}_scale {scale.type} and {what}_zero_point {zp.type} must be [{nd}] or [{nd}, {gh}]")
            self.params[what] = (scale, zp)

    def _product(self, v, d: int, which: str, per_row: bool):
        cx = self.cx
        weight = self.take(self.w if which == "W" else self.r, d)
        scale, zp = (self.take(p, d) for p in self.params[which])
        q, a_scale, a_zp = dynamic_quantize(cx, v, per_row)
        acc = _integer_matmul(cx, q, weight, reshape(cx, a_zp, (v.shape[0],)) if per_row else a_zp, zp)
        return cx.op("mul", [cx.op("cast", [acc], to="float32"), cx.op("mul", [a_scale, scale])])

    def input_product(self, x2, d: int):
        return self._product(x2, d, "W", False)

    def recurrent_product(self, h, d: int, rt):
        # onnxruntime splits the batch over its threads and quantizes each part on its own: one
        # row each while the batch is no larger than its thread count
        return self._product(h, d, "R", True)


@ms("DynamicQuantizeLSTM")
def dynamic_quantize_lstm(cx):
    """LSTM (inputs X, W, R, B, sequence_lens, initial_h, initial_c, P as LSTM's, but W and R are
    8-bit [directions, K, 4 * hidden]) with W_scale, W_zero_point, R_scale, R_zero_point (inputs
    8-11).  sequence_lens is refused (onnxruntime's ranges then take in the finished rows).
    onnxruntime quantizes the hidden state of each part of the batch its threads share: this is
    its result where every part is one row (batch 1, or no larger than its thread count); with
    fewer threads than rows, it differs by quantization steps."""
    if cx.has_input(4):
        raise cx.unsupported("input 4 'sequence_lens'")
    return lstm_cell(cx, _QuantizedCell(cx, 4, ["Sigmoid", "Tanh", "Tanh"]))


# onnxruntime's own QuantizeLinear / DequantizeLinear (its quantizer writes them for 16-bit and
# 4-bit types, or when asked to): ONNX's, with the same inputs and ``axis``
ms("QuantizeLinear")(quantize_linear)
ms("DequantizeLinear")(dequantize_linear)


@ms("MatMulNBits")
def matmul_nbits(cx):
    """A [..., K] times B^T, B [N, K] block-quantized along K: inputs A, B (uint8 [N, blocks,
    block_size * bits / 8], codes packed low bits first), scales ([N * blocks] or [N, blocks]),
    zero_points (packed like B, one row per column, or of A's type; default 2^(bits-1)), g_idx
    (refused), bias; attributes K, N, bits (2, 4 or 8), block_size.  The constant B is
    dequantized at compile time, (code - zero point) * scale, and the product is a float matmul:
    onnxruntime's result for accuracy_level 0 (the default); at accuracy_level 4 onnxruntime
    quantizes A to int8 and is less exact than this."""
    if cx.has_input(4):
        raise cx.unsupported("input 4 'g_idx'")
    a = cx.input(0)
    k, n, bits, block = cx.attr("K"), cx.attr("N"), cx.attr("bits", 4), cx.attr("block_size")
    if bits not in (2, 4, 8) or block < 16 or block & (block - 1):
        raise cx.unsupported(f"bits={bits}, block_size={block}")
    blocks = -(-k // block)
    packed = cx.const_input(1, "B", required=True)
    if packed.dtype != np.uint8 or packed.shape != (n, blocks, block * bits // 8):
        raise cx.fail(f"B {packed.dtype}{list(packed.shape)} must be uint8 [{n}, {blocks}, {block * bits // 8}]")
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    codes = ((packed[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, blocks, block).astype(np.int32)
    scales = cx.const_input(2, "scales", required=True).reshape(n, blocks, 1)
    zp = cx.const_input(3, "zero_points")
    if zp is None:
        zp = np.full((n, blocks, 1), 1 << (bits - 1), dtype=np.int32)
    elif zp.dtype == np.uint8:                 # packed like B, each column's row padded to whole bytes
        row = -(-blocks * bits // 8)
        zp = zp.reshape(n, row)
        zp = ((zp[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, row * per_byte)[:, :blocks]
        zp = zp.reshape(n, blocks, 1).astype(np.int32)
    else:
        zp = zp.reshape(n, blocks, 1)
    sdt = scales.dtype
    w = ((codes.astype(sdt) - zp.astype(sdt)) * scales).astype(sdt).reshape(n, blocks * block)[:, :k]
    y = cx.op("matmul", [a, cx.const(np.ascontiguousarray(w.T).astype(np_dtype(a.dtype)))])
    bias = cx.input(5, required=False)
    return y if bias is None else cx.op("add", [y, bias])

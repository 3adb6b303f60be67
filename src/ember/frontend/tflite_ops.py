"""The TFLite builtin operators, each translated into Ember's core ops with TFLite's semantics
(the reference kernels of ``tensorflow/lite/kernels/internal/reference``).

Options are read by their field index in TFLite's schema (``schema.fbs``).
"""

from __future__ import annotations

import numpy as np

from ..symbolic import exact_div, is_symbolic, product
from .core import TO_NCHW, TranslationTable, elementwise_layout, layout_operand
from . import tflite_fixed_point as fp
from .tflite_fixed_point import quantize_multiplier

#: the BuiltinOperator enum of TFLite's schema, in code order (code = position)
_BUILTIN_NAMES = """
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS
    SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER
    BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE
    UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT
    LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG
    PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE
    EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD
    REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV
    REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU
    SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE
    RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE
    NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM
    BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D
    IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL
    CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS
    RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE
    RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX UNSORTED_SEGMENT_SUM ATAN2
    UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT STABLEHLO_LOGISTIC STABLEHLO_ADD
    STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM STABLEHLO_RESHAPE STABLEHLO_CLAMP
    STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CONVOLUTION STABLEHLO_SLICE
    STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS STABLEHLO_AND STABLEHLO_COSINE
    STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG STABLEHLO_MINIMUM STABLEHLO_NEGATE
    STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER STABLEHLO_RSQRT STABLEHLO_SELECT
    STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER STABLEHLO_COMPARE STABLEHLO_CONVERT
    STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_PAD STABLEHLO_IOTA
    STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT STABLEHLO_WHILE
    STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR REDUCE_WINDOW
    STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
""".split()
BUILTIN_CODES = {name: code for code, name in enumerate(_BUILTIN_NAMES)}

FUSED_NONE, FUSED_RELU, FUSED_RELU_N1_TO_1, FUSED_RELU6, FUSED_TANH = 0, 1, 2, 3, 4

TRANSLATIONS = TranslationTable("TFLite")
translates = TRANSLATIONS.translates

#: ops that run on the integers of a quantized model as they are (they only move data)
QUANT_NATIVE = {"RESHAPE", "SQUEEZE", "TRANSPOSE", "GATHER", "STRIDED_SLICE", "QUANTIZE", "DEQUANTIZE", "TILE",
                "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                "MEAN", "SUM"}


def activation(cx, v, code: int):
    """A fused activation function applied to ``v``."""
    if code == FUSED_NONE:
        return v
    if code == FUSED_RELU:
        return cx.add("relu", [v])
    if code == FUSED_RELU6:
        return cx.add("clip", [v], lo=0.0, hi=6.0)
    if code == FUSED_RELU_N1_TO_1:
        return cx.add("clip", [v], lo=-1.0, hi=1.0)
    if code == FUSED_TANH:
        return cx.add("tanh", [v])
    raise cx.unsupported(f"fused activation {code}")


def same_pads(size: int, k: int, s: int, d: int, padding: int) -> tuple[int, int, int]:
    """(pad before, pad after, output size) of TFLite's SAME (0) / VALID (1) padding."""
    eff = (k - 1) * d + 1
    if padding == 0:
        out = -(-size // s)
        total = max(0, (out - 1) * s + eff - size)
        return total // 2, total - total // 2, out
    out = -(-(size - eff + 1) // s)
    return 0, 0, out


def _spatial_pads(cx, h, w, kh, kw, sh, sw, dh, dw, padding):
    if padding not in (0, 1):
        raise cx.unsupported(f"padding {padding}")
    ph = same_pads(h, kh, sh, dh, padding)
    pw = same_pads(w, kw, sw, dw, padding)
    if ph[2] <= 0 or pw[2] <= 0:
        raise cx.fail(f"a {kh}x{kw} window does not fit the {h}x{w} input")
    return (ph[0], pw[0], ph[1], pw[1])


def _integer(cx) -> bool:
    """Whether this conv / fully connected op runs on 8-bit integers (TFLite's integer kernel)."""
    x, t, o = cx.tensor(0), cx.tensor(1), cx.out_tensor()
    if x.dtype != "int8" or t.dtype != "int8":
        return False
    if x.quant is None or t.quant is None or o.quant is None or o.dtype != "int8":
        raise cx.unsupported("int8 operands without quantization parameters or a non-int8 output")
    return True


def _weights(cx) -> np.ndarray:
    """The filter: float32 (float16 and dequantized weights as float32), or int8 as it is."""
    if _integer(cx):
        return cx.const_input(1, "filter")
    cx.float_mode = any(cx.fe.sg.tensors[i].quant is not None and cx.fe.sg.tensors[i].dtype in ("int8", "uint8")
                        for i in cx.operator.inputs + cx.operator.outputs if i >= 0)
    return np.asarray(cx.const_input(1, "filter"), np.float32)


def _bias(cx, k: int, n: int):
    if not cx.has_input(k):
        return None
    b = np.asarray(cx.const_input(k, "bias"), np.float32).reshape(-1)
    if b.size != n:
        raise cx.fail(f"bias of {b.size} values for {n} output channels")
    return b


# ---- convolutions --------------------------------------------------------------------------

def _conv(cx, w_oihw: np.ndarray, bias, strides, dil, padding, groups, act):
    if _integer(cx):
        return _conv_integer(cx, w_oihw, strides, dil, padding, groups, act)
    x = cx.nchw(0)
    n, c, h, wd = x.type.shape
    o, _, kh, kw = w_oihw.shape
    pads = _spatial_pads(cx, h, wd, kh, kw, strides[0], strides[1], dil[0], dil[1], padding)
    y = cx.add("conv2d", [x, cx.const(np.ascontiguousarray(w_oihw, np.float32))], strides=strides,
               pads=pads, dilations=dil, groups=groups)
    if bias is not None:
        y = cx.add("add", [y, cx.const(bias.reshape(1, -1, 1, 1))])
    cx.set(activation(cx, y, act), "NCHW")


@translates("CONV_2D")
def conv_2d(cx):
    # options: padding 0, stride_w 1, stride_h 2, activation 3, dilation_w 4, dilation_h 5
    w = _weights(cx)                                           # O, KH, KW, I
    if cx.rank(0) != 4 or w.ndim != 4:
        raise cx.fail(f"needs a rank-4 input and filter, got {cx.shape(0)} and {w.shape}")
    c = cx.shape(0)[3]
    if c % w.shape[3]:
        raise cx.fail(f"input channels {c} are not a multiple of the filter's {w.shape[3]}")
    _conv(cx, w.transpose(0, 3, 1, 2), None if _integer(cx) else _bias(cx, 2, w.shape[0]),
          (cx.opt(2, "i32", 1), cx.opt(1, "i32", 1)), (cx.opt(5, "i32", 1), cx.opt(4, "i32", 1)),
          cx.opt(0, "i8", 0), c // w.shape[3], cx.opt(3, "i8", 0))


@translates("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(cx):
    # options: padding 0, stride_w 1, stride_h 2, depth_multiplier 3, activation 4, dilation_w 5,
    # dilation_h 6.  Filter 1 x KH x KW x (C * M): output channel c * M + m reads input channel c.
    w = _weights(cx)
    if cx.rank(0) != 4 or w.ndim != 4 or w.shape[0] != 1:
        raise cx.fail(f"needs a rank-4 input and a 1xKHxKWxO filter, got {cx.shape(0)} and {w.shape}")
    c, o = cx.shape(0)[3], w.shape[3]
    if o % c:
        raise cx.fail(f"filter channels {o} are not a multiple of the input's {c}")
    _conv(cx, w[0].transpose(2, 0, 1)[:, None], None if _integer(cx) else _bias(cx, 2, o),
          (cx.opt(2, "i32", 1), cx.opt(1, "i32", 1)), (cx.opt(6, "i32", 1), cx.opt(5, "i32", 1)),
          cx.opt(0, "i8", 0), c, cx.opt(4, "i8", 0))


@translates("TRANSPOSE_CONV")
def transpose_conv(cx):
    # inputs: output shape, filter (O, KH, KW, I), input, [bias]; options: padding 0, stride_w 1,
    # stride_h 2, activation 3.  Computed as a stride-1 convolution with the flipped filter over
    # the input with stride-1 zeros between its elements.
    out_shape = [int(v) for v in cx.const_input(0, "output shape")]
    # int8: TFLite's integer kernel, the exact sums of (x - zero point) * w (here in float64,
    # exact below 2**53) requantized per channel with the fixed-point multiply
    integer = _int8_per_tensor(cx, (cx.tensor(2), cx.out_tensor())) and cx.tensor(1).dtype == "int8" \
        and cx.tensor(1).quant is not None
    if integer:
        cx.float_mode = False
    dtype = np.float64 if integer else np.float32
    w = np.asarray(cx.const_input(1, "filter"), dtype)
    x = cx.get(2, "NCHW")
    if integer:
        x = cx.add("sub", [cx.add("cast", [x], to="float64"),
                           cx.const(np.float64(cx.tensor(2).quant.zero_point[0]))])
    n, c, h, wd = x.type.shape
    o, kh, kw, i = w.shape
    if i != c or len(out_shape) != 4 or out_shape[3] != o:
        raise cx.fail(f"filter {w.shape} does not match input {cx.shape(2)} and output shape {out_shape}")
    sh, sw = cx.opt(2, "i32", 1), cx.opt(1, "i32", 1)
    padding = cx.opt(0, "i8", 0)
    oh, ow = out_shape[1], out_shape[2]
    pads = []
    for size, k, s, out in ((h, kh, sh, oh), (wd, kw, sw, ow)):
        total = max(0, (size - 1) * s + k - out) if padding == 0 else 0
        before = total // 2
        dil_size = (size - 1) * s + 1
        lo = k - 1 - before
        hi = out + k - 1 - dil_size - lo
        pads.append((lo, hi))
    if sh > 1 or sw > 1:
        # insert zeros: (N,C,H,W) -> (N,C,H,1,W,1) -> pad to (N,C,H,sh,W,sw) -> reshape -> cut
        x = cx.add("reshape", [x], shape=(n, c, h, 1, wd, 1))
        x = cx.add("pad", [x], pads=(0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1))
        x = cx.add("reshape", [x], shape=(n, c, h * sh, wd * sw))
        x = cx.add("slice", [x], starts=(0, 0, 0, 0), ends=(n, c, (h - 1) * sh + 1, (wd - 1) * sw + 1),
                   steps=(1, 1, 1, 1))
    crop = [max(0, -p) for pr in pads for p in pr]
    if any(crop):
        raise cx.unsupported("an output shape smaller than the filter covers")
    wt = np.ascontiguousarray(w[:, ::-1, ::-1, :].transpose(0, 3, 1, 2))
    y = cx.add("conv2d", [x, cx.const(wt)], pads=(pads[0][0], pads[1][0], pads[0][1], pads[1][1]))
    if integer:
        y = cx.add("cast", [y], to="int64")
        b = _int_bias(cx, 3, o) if cx.n_inputs() > 3 else None
        if b is not None:
            y = cx.add("add", [y, cx.const(b.astype(np.int64).reshape(1, -1, 1, 1))])
        cx.set(_requantize_fixed_point(cx, y, 1, cx.opt(3, "i8", 0), x_index=2), "NCHW")
        return
    b = _bias(cx, 3, o) if cx.n_inputs() > 3 else None
    if b is not None:
        y = cx.add("add", [y, cx.const(b.reshape(1, -1, 1, 1))])
    cx.set(activation(cx, y, cx.opt(3, "i8", 0)), "NCHW")


@translates("FULLY_CONNECTED")
def fully_connected(cx):
    # options: activation 0, weights_format 1, keep_num_dims 2
    if cx.opt(1, "i8", 0) != 0:
        raise cx.unsupported("shuffled weights")
    if _integer(cx):
        return _fully_connected_integer(cx)
    w = _weights(cx)                                           # N, K
    shape = cx.shape(0)
    k = w.shape[1]
    x = cx.nhwc(0)
    keep = cx.opt(2, "bool", False)
    if len(shape) != 2 or shape[1] != k:
        x = cx.add("reshape", [x], shape=resolved_shape(cx, shape, (-1, k)))
    y = cx.add("matmul", [x, cx.const(np.ascontiguousarray(w.T))])
    b = _bias(cx, 2, w.shape[0])
    if b is not None:
        y = cx.add("add", [y, cx.const(b)])
    y = activation(cx, y, cx.opt(0, "i8", 0))
    if keep and len(shape) != 2:
        y = cx.add("reshape", [y], shape=tuple(shape[:-1]) + (w.shape[0],))
    cx.set(y)


@translates("BATCH_MATMUL")
def batch_matmul(cx):
    integer = _int8_per_tensor(cx, (cx.tensor(0), cx.tensor(1), cx.out_tensor()))
    if integer:
        cx.float_mode = False
    a, b = cx.nhwc(0), cx.nhwc(1)
    if integer:
        # TFLite's int8 batch matmul: the exact int32 product of the offset operands, rescaled by
        # s_a * s_b / s_out with the fixed-point multiply
        za, zb = (int(cx.tensor(k).quant.zero_point[0]) for k in (0, 1))
        a = cx.add("sub", [cx.add("cast", [a], to="int32"), cx.const(np.int32(za))])
        b = cx.add("sub", [cx.add("cast", [b], to="int32"), cx.const(np.int32(zb))])
    if cx.opt(0, "bool", False):
        a = cx.add("transpose", [a], perm=_swap_last(len(a.type.shape)))
    if cx.opt(1, "bool", False):
        b = cx.add("transpose", [b], perm=_swap_last(len(b.type.shape)))
    y = cx.add("matmul", [a, b])
    if integer:
        m, sh = quantize_multiplier(_float_multiplier(cx.tensor(0), cx.tensor(1), cx.out_tensor()))
        y = multiply_by_quantized_multiplier(cx, y, [m], [sh], 0, int(cx.out_tensor().quant.zero_point[0]),
                                             -128, 127)
    cx.set(y)


def _swap_last(r):
    return tuple(range(r - 2)) + (r - 1, r - 2)


# ---- pools ---------------------------------------------------------------------------------

@translates("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pool_2d(cx):
    # options: padding 0, stride_w 1, stride_h 2, filter_width 3, filter_height 4, activation 5
    x = cx.nchw(0)
    _, _, h, w = x.type.shape
    kh, kw = cx.opt(4, "i32", 1), cx.opt(3, "i32", 1)
    sh, sw = cx.opt(2, "i32", 1), cx.opt(1, "i32", 1)
    pads = _spatial_pads(cx, h, w, kh, kw, sh, sw, 1, 1, cx.opt(0, "i8", 0))
    op = "avg_pool2d" if cx.operator.op == "AVERAGE_POOL_2D" else "max_pool2d"
    xt, ot = cx.tensor(0), cx.out_tensor()
    if _int8_per_tensor(cx, (xt, ot)) and xt.quant.scale[0] == ot.quant.scale[0] \
            and xt.quant.zero_point[0] == ot.quant.zero_point[0]:
        return _pool_integer(cx, op, (kh, kw), (sh, sw), pads)
    # TFLite averages over the window's elements inside the input (padding not counted)
    y = cx.add(op, [x], kernel=(kh, kw), strides=(sh, sw), pads=pads, count_include_pad=False)
    cx.set(activation(cx, y, cx.opt(5, "i8", 0)), "NCHW")


def _pool_integer(cx, op, kernel, strides, pads):
    """TFLite's int8 pools (input and output share their quantization): the max of the raw
    values, or their sum divided by the count of window elements inside the input, rounding
    half away from zero; then the fused activation's clamp.  Computed on the integers held
    exactly in float32."""
    cx.float_mode = False
    ot = cx.out_tensor()
    x = cx.add("cast", [cx.nchw(0)], to="float32")
    lo, hi = _activation_range(cx, cx.opt(5, "i8", 0), float(ot.quant.scale[0]), int(ot.quant.zero_point[0]))
    f = lambda v: cx.const(np.float32(v))
    if op == "max_pool2d":
        y = cx.add("max_pool2d", [x], kernel=kernel, strides=strides, pads=pads)
    else:
        # the window sum: the mean with the (raw zero) padding counted, times the window size
        s = cx.add("avg_pool2d", [x], kernel=kernel, strides=strides, pads=pads, count_include_pad=True)
        s = cx.add("round", [cx.add("mul", [s, f(kernel[0] * kernel[1])])])
        h, w = x.type.shape[2:]
        counts = [[len(range(max(o * st - p, 0), min(o * st - p + k, n))) for o in range(out)]
                  for n, k, st, p, out in zip((h, w), kernel, strides, pads[:2], s.type.shape[2:])]
        c = np.outer(counts[0], counts[1]).astype(np.float32)[None, None]
        num = cx.add("add", [cx.add("abs", [s]), cx.const(np.floor(c / 2))])
        q = cx.add("floor", [cx.add("div", [num, cx.const(c)])])
        y = cx.add("mul", [cx.add("sign", [s]), q])
    y = cx.add("minimum", [cx.add("maximum", [y, f(lo)]), f(hi)])
    cx.set(cx.add("cast", [y], to="int8"), "NCHW")


# ---- elementwise ---------------------------------------------------------------------------

_layout_for = elementwise_layout
_operand = layout_operand


_BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul", "DIV": "div", "MAXIMUM": "maximum", "MINIMUM": "minimum",
           "POW": "pow", "LESS": "less", "LESS_EQUAL": "less_equal", "GREATER": "greater",
           "GREATER_EQUAL": "greater_equal", "EQUAL": "equal", "NOT_EQUAL": "not_equal",
           "LOGICAL_AND": "logical_and", "LOGICAL_OR": "logical_or"}


@translates(*_BINARY, "SQUARED_DIFFERENCE")
def binary(cx):
    layout = _layout_for(cx, (0, 1))
    integer = _int8_per_tensor(cx, (cx.tensor(0), cx.tensor(1), cx.out_tensor()))
    if cx.operator.op in ("ADD", "SUB", "MUL", "SQUARED_DIFFERENCE") and integer:
        cx.float_mode = False
        cx.set(_binary_integer(cx, _operand(cx, 0, layout), _operand(cx, 1, layout)), layout)
        return
    a, b = _operand(cx, 0, layout), _operand(cx, 1, layout)
    if cx.operator.op == "SQUARED_DIFFERENCE":
        d = cx.add("sub", [a, b])
        y = cx.add("mul", [d, d])
    else:
        y = cx.add(_BINARY[cx.operator.op], [a, b])
    if cx.operator.op in ("ADD", "SUB", "MUL", "DIV"):
        y = activation(cx, y, cx.opt(0, "i8", 0))     # fused_activation_function is field 0
    cx.set(y, layout)


def _float_multiplier(ta, tb, to) -> float:
    """s_a * s_b / s_out computed in float32, as TFLite's MUL and BATCH_MATMUL compute their
    multiplier."""
    return float(np.float32(ta.quant.scale[0]) * np.float32(tb.quant.scale[0]) / np.float32(to.quant.scale[0]))


def _int8_per_tensor(cx, tensors) -> bool:
    return all(t.dtype == "int8" and t.quant is not None and t.quant.scale.size == 1 for t in tensors)


def _binary_integer(cx, a, b):
    """TFLite's int8 ADD / SUB / MUL / SQUARED_DIFFERENCE: MUL rescales the exact product of the
    offset operands by s_a * s_b / s_out; the others shift both operands left (20 bits; 7 for
    the squared difference), rescale each by its scale over twice the larger one, add or
    subtract (and square), and rescale the result to s_out, each rescaling TFLite's fixed-point
    multiply."""
    ta, tb, to = cx.tensor(0), cx.tensor(1), cx.out_tensor()
    sa, sb, so = (float(np.float64(t.quant.scale[0])) for t in (ta, tb, to))
    za, zb, zo = (int(t.quant.zero_point[0]) for t in (ta, tb, to))
    lo, hi = _activation_range(cx, cx.opt(0, "i8", 0), so, zo)
    # int32 arithmetic, as TFLite's: every intermediate fits (|a - za| <= 255, shifted by 20 bits)
    a = cx.add("sub", [cx.add("cast", [a], to="int32"), cx.const(np.int32(za))])
    b = cx.add("sub", [cx.add("cast", [b], to="int32"), cx.const(np.int32(zb))])
    if cx.operator.op == "MUL":
        m, s = quantize_multiplier(_float_multiplier(ta, tb, to))
        return multiply_by_quantized_multiplier(cx, cx.add("mul", [a, b]), [m], [s], 0, zo, lo, hi)
    twice = 2 * max(sa, sb)
    shift = 7 if cx.operator.op == "SQUARED_DIFFERENCE" else 20
    left = cx.const(np.int32(1 << shift))
    scaled = []
    for v, sv in ((a, sa), (b, sb)):
        m, s = quantize_multiplier(sv / twice)
        scaled.append(fixed_point_multiply(cx, cx.add("mul", [v, left]), [m], [s], 0))
    raw = cx.add("add" if cx.operator.op == "ADD" else "sub", scaled)
    if cx.operator.op == "SQUARED_DIFFERENCE":      # the difference squared, on the squared scale
        raw = cx.add("mul", [raw, raw])
        m, s = quantize_multiplier(twice * twice / ((1 << 2 * shift) * so))
    else:
        m, s = quantize_multiplier(twice / ((1 << shift) * so))
    return multiply_by_quantized_multiplier(cx, raw, [m], [s], 0, zo, lo, hi)


_UNARY = {"NEG": "neg", "ABS": "abs", "LOG": "log", "EXP": "exp", "SQRT": "sqrt", "LOGISTIC": "sigmoid",
          "TANH": "tanh", "RELU": "relu", "SIN": "sin", "COS": "cos", "LOGICAL_NOT": "logical_not"}


@translates(*_UNARY, "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "RSQRT", "SQUARE", "GELU", "LEAKY_RELU")
def unary(cx):
    if _int8_per_tensor(cx, (cx.tensor(0), cx.out_tensor())):
        qi, qo = cx.tensor(0).quant, cx.out_tensor().quant
        if cx.operator.op == "GELU":       # options: approximate 0
            return _int8_table(cx, _float_table(_gelu(bool(cx.opt(0, "bool", False))))(qi, qo))
        if cx.operator.op in _INT8_TABLES:
            return _int8_table(cx, _INT8_TABLES[cx.operator.op](qi, qo))
    layout = cx.layout(0)
    x = cx.get(0, layout)
    kind = cx.operator.op
    f = lambda v: cx.const(np.float32(v))
    if kind in _UNARY:
        y = cx.add(_UNARY[kind], [x])
    elif kind == "GELU":
        # options: approximate 0.  0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation
        if cx.opt(0, "bool", False):
            cube = cx.add("mul", [x, cx.add("mul", [x, x])])
            inner = cx.add("mul", [cx.add("add", [x, cx.add("mul", [f(0.044715), cube])]), f(np.sqrt(2.0 / np.pi))])
            t = cx.add("tanh", [inner])
        else:
            t = cx.add("erf", [cx.add("mul", [x, f(1.0 / np.sqrt(2.0))])])
        y = cx.add("mul", [cx.add("mul", [x, f(0.5)]), cx.add("add", [t, f(1.0)])])
    elif kind == "LEAKY_RELU":
        # options: alpha 0
        y = cx.add("where", [cx.add("greater", [x, f(0.0)]), x, cx.add("mul", [x, f(cx.opt(0, "f32", 0.2))])])
    elif kind == "RELU6":
        y = cx.add("clip", [x], lo=0.0, hi=6.0)
    elif kind == "RELU_N1_TO_1":
        y = cx.add("clip", [x], lo=-1.0, hi=1.0)
    elif kind == "RSQRT":
        y = cx.add("div", [cx.const(np.float32(1.0)), cx.add("sqrt", [x])])
    elif kind == "SQUARE":
        y = cx.add("mul", [x, x])
    else:  # HARD_SWISH: x * relu6(x + 3) / 6
        three = cx.const(np.float32(3.0))
        r = cx.add("clip", [cx.add("add", [x, three])], lo=0.0, hi=6.0)
        y = cx.add("mul", [x, cx.add("mul", [r, cx.const(np.float32(1.0 / 6.0))])])
    cx.set(y, layout)


# ---- int8 elementwise functions as tables of their 256 results ------------------------------

def _int8_table(cx, table: np.ndarray):
    """An int8 -> int8 function applied as a lookup of ``table[x + 128]``."""
    cx.float_mode = False
    layout = cx.layout(0)
    idx = cx.add("add", [cx.add("cast", [cx.get(0, layout)], to="int64"), cx.const(np.int64(128))])
    cx.set(cx.add("gather", [cx.const(np.asarray(table, np.int8)), idx], axis=0), layout)


def _float_table(fn):
    """TFLite's int8 lookup table of a float function (PopulateLookupTable): each input
    dequantized, transformed and requantized in float32, rounding half away from zero."""
    def table(qi, qo):
        x = np.arange(-128, 128, dtype=np.float32)
        with np.errstate(over="ignore"):
            v = fn(np.float32(qi.scale[0]) * (x - np.float32(qi.zero_point[0]))).astype(np.float32)
        r = v * (np.float32(1.0) / np.float32(qo.scale[0]))
        r = np.sign(r) * np.floor(np.abs(r) + np.float32(0.5))
        return np.clip(r + int(qo.zero_point[0]), -128, 127)
    return table


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    return int((ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14))) / (1 << 15))   # C truncation


def _rounding_divide_by_pot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (1 if x < 0 else 0))


def _sat16(v: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v))


def _multiplier16(m: float) -> tuple[int, int]:
    """QuantizeMultiplier, then DownScaleInt32ToInt16Multiplier."""
    q, e = quantize_multiplier(m)
    return (1 << 15) - 1 if q >= (1 << 31) - 1 - (1 << 15) else (q + (1 << 15)) >> 16, e


def _hard_swish_table(qi, qo):
    """TFLite's int8 HARD_SWISH (reference_ops::HardSwish), in int16 fixed point."""
    hires = np.float32(1.0 / 128.0) * np.float32(qi.scale[0])
    out_m, out_e = _multiplier16(float(hires / np.float32(qo.scale[0])))
    rel_m, rel_e = _multiplier16(float(hires / np.float32(3.0 / 32768.0)))
    zi, zo = int(qi.zero_point[0]), int(qo.zero_point[0])
    table = []
    for q in range(-128, 128):
        x = (q - zi) * 128
        pre = _srdhm16(x, out_m)
        r = x
        if rel_e > 0:
            r = _sat16(r * (1 << (rel_e - 1)))
        r = _srdhm16(r, rel_m)
        if rel_e > 0:
            r = _sat16(r * 2)
        if rel_e < 0:
            r = _rounding_divide_by_pot(r, -rel_e)
        r = (r + (1 << 15)) >> 1
        p = (1 << 15) - 1 if r == pre == -(1 << 15) else int(r * pre / (1 << 15))
        table.append(max(-128, min(127, _rounding_divide_by_pot(p, -out_e) + zo)))
    return np.array(table)


def _rsqrt_table(qi, qo):
    """TFLite's int8 RSQRT (elementwise.cc): 1/sqrt(x - zp_in) as a fixed-point multiplier and
    exponent, applied to 1 with 20 extra bits, rescaled by 1 / (sqrt(s_in) s_out).  A zero input
    gives the int8 maximum; TFLite refuses a negative one at run time (here: the maximum too)."""
    o = fp.NumpyOps()
    v = np.arange(-128, 128, dtype=np.int64) - int(qi.zero_point[0])
    mult, shift = fp.inv_sqrt_multiplier_exp(o, np.maximum(v, 1))
    m, s = quantize_multiplier(1.0 / (np.sqrt(float(qi.scale[0])) * float(qo.scale[0])))
    data = fp.multiply_by_quantized_multiplier(o, np.ones_like(v), mult, shift + 20)
    out = fp.multiply_by_quantized_multiplier(o, data, m, s - 20) + int(qo.zero_point[0])
    return np.where(v > 0, np.clip(out, -128, 127), 127)


def _gelu(approximate: bool):
    """TFLite's GELU in float32 (gelu.h), the function of its int8 lookup table."""
    def f(x):
        x = x.astype(np.float32)
        if approximate:
            inner = np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * x * x * x)
            return np.float32(0.5) * x * (np.float32(1.0) + np.tanh(inner))
        from math import erf
        e = np.array([erf(float(v)) for v in (x * np.float32(np.sqrt(0.5)))], np.float32)
        return np.float32(0.5) * x * (np.float32(1.0) + e)
    return f


_INT8_TABLES = {
    "RSQRT": _rsqrt_table,
    "HARD_SWISH": _hard_swish_table,
    "LOGISTIC": _float_table(lambda x: np.float32(1.0) / (np.float32(1.0) + np.exp(-x))),
    "TANH": _float_table(np.tanh),
}


@translates("SELECT", "SELECT_V2")
def select(cx):
    ks = (0, 1, 2)
    layout = _layout_for(cx, ks) if all(cx.rank(k) == 4 for k in ks) else "NHWC"
    cx.set(cx.add("where", [_operand(cx, k, layout) for k in ks]), layout)


# ---- normalizations and reductions ---------------------------------------------------------

@translates("SOFTMAX")
def softmax(cx):
    beta = cx.opt(0, "f32", 1.0)
    xt, ot = cx.tensor(0), cx.out_tensor()
    if _int8_per_tensor(cx, (xt, ot)) and float(ot.quant.scale[0]) == 1.0 / 256 \
            and int(ot.quant.zero_point[0]) == -128:
        cx.float_mode = False
        cx.set(_softmax_integer(cx, cx.nhwc(0), beta))
        return
    x = cx.nhwc(0)
    if beta != 1.0:
        x = cx.add("mul", [x, cx.const(np.float32(beta))])
    cx.set(cx.add("softmax", [x], axis=-1))


def _softmax_integer(cx, x, beta: float):
    """TFLite's reference int8 softmax (reference_ops::Softmax, output on 1/256 - 128), gemmlowp's
    fixed point: each difference d to the row's maximum scaled to Q5.26, its exponential in Q0.31
    (both functions of d alone: a table of 256 entries, zero below ``diff_min``), the row's exact
    sum of the exponentials rounded to Q12.19, its reciprocal by Newton-Raphson, and each
    exponential times the reciprocal, divided by 2**(23 + the sum's bits over unit) rounding half
    away from zero."""
    axis = len(x.type.shape) - 1
    mult, shift, diff_min = fp.softmax_input_scaling(float(beta), float(cx.tensor(0).quant.scale[0]))
    o = fp.NumpyOps()
    d = -np.arange(256, dtype=np.int64)                 # x - max, for distances 0 .. 255
    valid = d >= diff_min
    scaled = fp.srdhm(o, np.where(valid, d, 0) << shift, mult)
    e0 = np.where(valid, fp.exp_on_negative_values(scaled), 0)
    e12 = fp.rounding_divide_by_pot(o, e0, fp.SOFTMAX_SUM_BITS)      # Q0.31 -> Q12.19
    xi = cx.add("cast", [x], to="int64")
    dist = cx.add("sub", [cx.add("reduce_max", [xi], axes=(axis,), keepdims=True), xi])
    exps = cx.add("gather", [cx.const(e0), dist], axis=0)
    total = cx.add("reduce_sum", [cx.add("gather", [cx.const(e12), dist], axis=0)], axes=(axis,), keepdims=True)
    g = fp.GraphOps(cx)
    scale, over = fp.reciprocal(g, total, fp.SOFTMAX_SUM_BITS)
    r = fp.rounding_divide_by_pot(g, fp.srdhm(g, scale, exps), g.add(over, 31 - 8))
    r = g.minimum(g.maximum(g.sub(r, 128), -128), 127)
    return cx.add("cast", [r], to="int8")


@translates("L2_NORMALIZATION")
def l2_normalization(cx):
    xt, ot = cx.tensor(0), cx.out_tensor()
    if _int8_per_tensor(cx, (xt, ot)):
        # reference_integer_ops::L2Normalization: the output is always on the 1/128 scale
        cx.float_mode = False
        if cx.opt(0, "i8", 0) != FUSED_NONE:
            raise cx.unsupported("a fused activation on int8")
        if float(ot.quant.scale[0]) != 1.0 / 128 or int(ot.quant.zero_point[0]) != 0:
            raise cx.unsupported("an int8 output not on the scale 1/128 with zero point 0")
        cx.set(_l2_normalization_integer(cx, cx.nhwc(0), int(xt.quant.zero_point[0])))
        return
    # x / max(sqrt(sum(x^2) over the last axis), 1e-6)
    x = cx.nhwc(0)
    s = cx.add("reduce_sum", [cx.add("mul", [x, x])], axes=(len(x.type.shape) - 1,), keepdims=True)
    n = cx.add("maximum", [cx.add("sqrt", [s]), cx.const(np.float32(1e-6))])
    y = cx.add("div", [x, n])
    cx.set(activation(cx, y, cx.opt(0, "i8", 0)))


def _l2_normalization_integer(cx, x, zp: int):
    """The exact sum of squares of (x - zp) per row, its inverse square root as a fixed-point
    multiplier and exponent, each element rescaled by it to Q0.7."""
    o = fp.GraphOps(cx)
    v = o.sub(cx.add("cast", [x], to="int64"), zp)
    total = cx.add("reduce_sum", [o.mul(v, v)], axes=(len(x.type.shape) - 1,), keepdims=True)
    mult, shift = fp.inv_sqrt_multiplier_exp(o, total)
    y = fp.multiply_by_quantized_multiplier(o, v, mult, o.add(shift, 7))
    return cx.add("cast", [o.minimum(o.maximum(y, -128), 127)], to="int8")


@translates("MEAN", "SUM")
def mean(cx):
    axes = sorted({int(a) % cx.rank(0) for a in np.asarray(cx.const_input(1, "axes")).reshape(-1)})
    keep = bool(cx.opt(0, "bool", False))
    if cx.operator.op == "MEAN" and _int8_per_tensor(cx, (cx.tensor(0), cx.out_tensor())):
        return _mean_integer(cx, axes, keep)
    if cx.tensor(0).dtype == "int8":
        cx.float_mode = True
    layout = cx.layout(0) if cx.rank(0) == 4 else "NHWC"
    if layout == "NCHW":
        axes = sorted(TO_NCHW.index(a) for a in axes)
    op = "reduce_mean" if cx.operator.op == "MEAN" else "reduce_sum"
    y = cx.add(op, [cx.get(0, layout)], axes=tuple(axes), keepdims=keep)
    cx.set(y, layout if keep else "NHWC")


@translates("REDUCE_PROD")
def reduce_prod(cx):
    # options: keep_dims 0.  Shape arithmetic (a product of SHAPE's entries, symbolic sizes
    # included) folds at translation; int8 is TFLite's integer kernel
    axes = sorted({int(a) % cx.rank(0) for a in np.asarray(cx.const_input(1, "axes")).reshape(-1)})
    keep = bool(cx.opt(0, "bool", False))
    if cx.is_const(0) and not cx.float_mode:
        a = np.asarray(cx.const_input(0))
        folded = np.empty(reduced_shape_of(a.shape, axes, keep), dtype=a.dtype)
        for idx in np.ndindex(folded.shape):
            full = list(idx) if keep else _expanded(idx, axes, a.ndim)
            sel = tuple(slice(None) if k in axes else full[k] for k in range(a.ndim))
            folded[idx] = product(a[sel].reshape(-1).tolist())
        cx.fe.consts[cx.operator.outputs[0]] = folded
        return
    if _int8_per_tensor(cx, (cx.tensor(0), cx.out_tensor())):
        cx.float_mode = False
        cx.set(_reduce_prod_integer(cx, cx.nhwc(0), axes, keep))
        return
    y = cx.add("reduce_prod", [cx.nhwc(0)], axes=tuple(axes), keepdims=keep)
    cx.set(y)


def reduced_shape_of(shape, axes, keep) -> tuple:
    return tuple(1 if k in axes else d for k, d in enumerate(shape) if keep or k not in axes)


def _expanded(idx, axes, rank) -> list:
    """An index of a reduced tensor (its axes dropped) as an index of the full rank (0 on them)."""
    it = iter(idx)
    return [0 if k in axes else next(it) for k in range(rank)]


def _reduce_prod_integer(cx, x, axes, keep):
    """TFLite's int8 REDUCE_PROD (reference_ops::QuantizedReduceProd): over the reduced elements in
    the input's row-major order, the running product of (x - zero point) rescaled after every
    multiplication (and once more at the end) by s_in / s_out ** (1 / n), with TFLite's 64-bit
    MultiplyByQuantizedMultiplier (a 16-bit multiplier, one rounding half up), + the output zero
    point, clamped."""
    shape = _static(cx, x.type.shape)
    rest = [k for k in range(len(shape)) if k not in axes]
    n = int(np.prod([shape[k] for k in axes], dtype=np.int64))
    xt, ot = cx.tensor(0), cx.out_tensor()
    scaling = float(np.float64(xt.quant.scale[0]) / np.power(np.float64(ot.quant.scale[0]), 1.0 / n))
    mult, shift = quantize_multiplier(scaling)
    g = fp.GraphOps(cx)
    v = cx.add("transpose", [cx.add("cast", [x], to="int64")], perm=tuple(rest) + tuple(axes))
    v = cx.add("reshape", [v], shape=tuple(shape[k] for k in rest) + (n,))
    v = g.sub(v, int(xt.quant.zero_point[0]))
    r = len(rest)
    part = lambda j: cx.add("slice", [v], starts=(0,) * r + (j,), ends=tuple(shape[k] for k in rest) + (j + 1,),
                            steps=(1,) * (r + 1))
    acc = part(0)
    for j in range(1, n):
        acc = fp.multiply_by_quantized_multiplier_64(g, g.mul(acc, part(j)), mult, shift)
    acc = fp.multiply_by_quantized_multiplier_64(g, acc, mult, shift)
    y = g.minimum(g.maximum(g.add(acc, int(ot.quant.zero_point[0])), -128), 127)
    return cx.add("reshape", [cx.add("cast", [y], to="int8")], shape=reduced_shape_of(shape, axes, keep))


# ---- data movement -------------------------------------------------------------------------

def _static(cx, shape):
    if not all(isinstance(d, int) for d in shape):
        raise cx.unsupported(f"symbolic shape {shape}")
    return shape


def _dim(v):
    """A dimension from a shape tensor: an int, or a symbolic size SHAPE passed on."""
    return v if is_symbolic(v) else int(v)


def resolved_shape(cx, shape, new) -> tuple:
    """``new`` (one entry may be -1) for a tensor of ``shape``, with symbolic sizes: the -1 is
    the element count over the product of the other entries, which must divide exactly."""
    new = list(new)
    total = product(shape)
    if new.count(-1) > 1:
        raise cx.fail(f"more than one -1 in the shape {new}")
    if -1 in new:
        rest = product(d for d in new if not (isinstance(d, int) and d == -1))
        d = exact_div(total, rest) if rest != 0 else 0
        if d is None:
            raise cx.unsupported(f"reshaping {shape} to {new}: the -1 is not an exact quotient")
        new[new.index(-1)] = d
    if product(new) != total:
        raise cx.fail(f"cannot reshape {tuple(shape)} to {new}")
    return tuple(new)


@translates("RESHAPE")
def reshape(cx):
    if cx.has_input(1) and cx.n_inputs() > 1:
        new = [_dim(v) for v in np.asarray(cx.const_input(1, "shape")).reshape(-1)]
    else:
        new = cx.opt(0, "i32[]", None)
        if new is None:
            new = list(cx.out_tensor().shape)
    x = cx.nhwc(0)
    cx.set(cx.add("reshape", [x], shape=resolved_shape(cx, x.type.shape, new)))


@translates("SQUEEZE")
def squeeze(cx):
    x = cx.nhwc(0)
    shape = x.type.shape
    dims = [d % len(shape) for d in cx.opt(0, "i32[]", [])] or [k for k, d in enumerate(shape) if d == 1]
    cx.set(cx.add("reshape", [x], shape=tuple(d for k, d in enumerate(shape) if k not in dims)))


@translates("TRANSPOSE")
def transpose(cx):
    perm = tuple(int(v) for v in np.asarray(cx.const_input(1, "permutation")).reshape(-1))
    cx.set(cx.add("transpose", [cx.nhwc(0)], perm=perm))


@translates("SHAPE")
def shape_op(cx):
    # options: out_type 0 (INT32 = 2, INT64 = 4).  Folded at translation; a symbolic size stays
    # one (an object array) for the shape arithmetic that reads it (slice, pack, reshape).
    dims = cx.shape(0)
    dtype = np.int64 if cx.opt(0, "i8", 2) == 4 else np.int32
    if any(is_symbolic(d) for d in dims):
        a = np.empty(len(dims), dtype=object)
        a[:] = list(dims)
    else:
        a = np.asarray(dims, dtype)
    cx.fe.consts[cx.operator.outputs[0]] = a


@translates("PACK")
def pack(cx):
    # options: values_count 0, axis 1
    ks = range(cx.n_inputs())
    axis = cx.opt(1, "i32", 0)
    if all(cx.is_const(k) for k in ks):
        cx.fe.consts[cx.operator.outputs[0]] = np.stack([np.asarray(cx.const_input(k)) for k in ks], axis=axis)
        return
    r = cx.rank(0)
    axis %= r + 1
    parts = []
    for k in ks:
        shape = cx.shape(k)
        parts.append(cx.add("reshape", [cx.nhwc(k)], shape=tuple(shape[:axis]) + (1,) + tuple(shape[axis:])))
    cx.set(cx.add("concat", parts, axis=axis))


@translates("TILE")
def tile(cx):
    # (d0, d1, ...) -> (1, d0, 1, d1, ...) -> broadcast to (m0, d0, m1, d1, ...) -> (m0 * d0, ...)
    x = cx.nhwc(0)
    shape = _static(cx, x.type.shape)
    mult = [int(v) for v in np.asarray(cx.const_input(1, "multiples")).reshape(-1)]
    if len(mult) != len(shape) or any(m < 0 for m in mult):
        raise cx.fail(f"multiples {mult} for a rank-{len(shape)} input")
    inter = tuple(v for d in shape for v in (1, d))
    big = tuple(v for m, d in zip(mult, shape) for v in (m, d))
    y = cx.add("reshape", [x], shape=inter)
    y = cx.add("broadcast_to", [y], shape=big)
    cx.set(cx.add("reshape", [y], shape=tuple(m * d for m, d in zip(mult, shape))))


@translates("CONCATENATION")
def concatenation(cx):
    ks = tuple(range(cx.n_inputs()))
    r = cx.rank(0)
    axis = cx.opt(0, "i32", 0) % r
    if all(cx.is_const(k) for k in ks) and not cx.float_mode and not cx.opt(1, "i8", 0):   # shape arithmetic
        parts = [np.asarray(cx.const_input(k)) for k in ks]
        cx.fe.consts[cx.operator.outputs[0]] = np.concatenate(parts, axis=axis)
        return
    layout = _layout_for(cx, ks) if r == 4 else "NHWC"
    if layout == "NCHW":
        axis = TO_NCHW.index(axis)
    y = cx.add("concat", [_operand(cx, k, layout) for k in ks], axis=axis)
    cx.set(activation(cx, y, cx.opt(1, "i8", 0)), layout)


@translates("PAD", "PADV2")
def pad(cx):
    p = np.asarray(cx.const_input(1, "paddings")).reshape(-1, 2).astype(int)
    value = 0.0
    if cx.operator.op == "PADV2" and cx.has_input(2):
        value = float(np.asarray(cx.const_input(2, "pad value")).reshape(-1)[0])
    layout = cx.layout(0) if cx.rank(0) == 4 else "NHWC"
    if layout == "NCHW":
        p = p[list(TO_NCHW)]
    pads = tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1])
    cx.set(cx.add("pad", [cx.get(0, layout)], pads=pads, value=value), layout)


@translates("STRIDED_SLICE")
def strided_slice(cx):
    # options: begin_mask 0, end_mask 1, ellipsis_mask 2, new_axis_mask 3, shrink_axis_mask 4, offset 5
    if cx.opt(2, "i32", 0) or cx.opt(3, "i32", 0):
        raise cx.unsupported("ellipsis or new-axis masks")
    if cx.opt(5, "bool", False):
        raise cx.unsupported("offset")
    shape = _static(cx, cx.shape(0))
    x = None if cx.is_const(0) else cx.nhwc(0)
    begin = [int(v) for v in np.asarray(cx.const_input(1, "begin")).reshape(-1)]
    end = [int(v) for v in np.asarray(cx.const_input(2, "end")).reshape(-1)]
    strides = [int(v) for v in np.asarray(cx.const_input(3, "strides")).reshape(-1)]
    bm, em, sm = cx.opt(0, "i32", 0), cx.opt(1, "i32", 0), cx.opt(4, "i32", 0)
    starts, ends, steps, out = [], [], [], []
    for k, d in enumerate(shape):
        if k >= len(begin):
            starts.append(0), ends.append(d), steps.append(1), out.append(d)
            continue
        s = strides[k]
        if s == 0:
            raise cx.fail("a stride of 0")
        b, e = begin[k], end[k]
        if sm >> k & 1:
            b = b + d if b < 0 else b
            if not 0 <= b < d:
                raise cx.fail(f"index {begin[k]} out of range for axis {k} of size {d}")
            starts.append(b), ends.append(b + 1), steps.append(1)
            continue
        if bm >> k & 1:
            b = 0 if s > 0 else d - 1
        if em >> k & 1:
            e = d if s > 0 else -d - 1
        b, e, s = slice(b, e, s).indices(d)
        starts.append(b), ends.append(e), steps.append(s)
        out.append(len(range(b, e, s)))
    if cx.is_const(0):          # shape arithmetic, folded here
        a = np.asarray(cx.const_input(0))[tuple(slice(b, e if e >= 0 else None, p)
                                          for b, e, p in zip(starts, ends, steps))]
        cx.fe.consts[cx.operator.outputs[0]] = a.reshape(tuple(out))
        return
    y = cx.add("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))
    if sm:
        y = cx.add("reshape", [y], shape=tuple(out))
    cx.set(y)


@translates("GATHER")
def gather(cx):
    # options: axis 0, batch_dims 1
    if cx.opt(1, "i32", 0):
        raise cx.unsupported("batch_dims")
    if cx.is_const(0) and cx.is_const(1) and not cx.float_mode:     # shape arithmetic
        a = np.asarray(cx.const_input(0))
        cx.fe.consts[cx.operator.outputs[0]] = np.take(a, np.asarray(cx.const_input(1)),
                                                       axis=cx.opt(0, "i32", 0) % a.ndim)
        return
    x = cx.nhwc(0)
    axis = cx.opt(0, "i32", 0) % len(x.type.shape)
    cx.set(cx.add("gather", [x, cx.nhwc(1)], axis=axis))


# ---- resizing ------------------------------------------------------------------------------

def _scale(n_out: int, n_in: int, align: bool) -> np.float32:
    """TFLite's resize scale, a float32."""
    if align and n_out > 1:
        return np.float32(n_in - 1) / np.float32(n_out - 1)
    return np.float32(n_in) / np.float32(n_out)


def _gather_axis(cx, x, axis, idx):
    return cx.add("gather", [x, cx.const(np.asarray(idx, np.int64))], axis=axis)


@translates("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def resize(cx):
    # options: bilinear: align_corners 2, half_pixel_centers 3; nearest: align_corners 0, half 1
    bil = cx.operator.op == "RESIZE_BILINEAR"
    align = bool(cx.opt(2 if bil else 0, "bool", False))
    half = bool(cx.opt(3 if bil else 1, "bool", False))
    size = [int(v) for v in np.asarray(cx.const_input(1, "size")).reshape(-1)]
    x = cx.nchw(0)
    if bil and x.type.dtype in ("int8", "uint8"):
        cx.set(_resize_bilinear_integer(cx, x, size, align, half), "NCHW")
        return
    for axis, (n_in, n_out) in zip((2, 3), zip(x.type.shape[2:], size)):
        if bil:
            # TFLite's reference: in = (o + 0.5) * scale - 0.5 with half pixel centers (then
            # lower index clamped at 0), else o * scale; lerp of floor and floor + 1 (clamped)
            o = np.arange(n_out, dtype=np.float32)
            sc = _scale(n_out, n_in, align)
            src = ((o + np.float32(0.5)) * sc - np.float32(0.5)) if half else o * sc
            lo = np.floor(src)
            lo_i = np.clip(lo, 0, n_in - 1).astype(np.int64)
            hi_i = np.clip(np.minimum(np.ceil(src), n_in - 1), 0, n_in - 1).astype(np.int64)
            frac = (src - lo).astype(np.float32)
            shape = [1, 1, 1, 1]
            shape[axis] = n_out
            a, b = _gather_axis(cx, x, axis, lo_i), _gather_axis(cx, x, axis, hi_i)
            w = cx.const(frac.reshape(shape))
            x = cx.add("add", [a, cx.add("mul", [cx.add("sub", [b, a]), w])])
        else:
            o = np.arange(n_out, dtype=np.float32)
            src = (o + np.float32(0.5 if half else 0.0)) * _scale(n_out, n_in, align)
            idx = np.floor(src + np.float32(0.5)) if align else np.floor(src)   # round half away
            x = _gather_axis(cx, x, axis, np.clip(idx, 0, n_in - 1).astype(np.int64))
    cx.set(x, "NCHW")


def _resize_bilinear_integer(cx, x, size, align, half):
    """TFLite's 8-bit bilinear resize: source coordinates in 1/1024 steps, the four products
    summed exactly (here in float64, exact below 2**53) and divided by 2**20 rounding half away
    from zero."""
    dtype = x.type.dtype
    x = cx.add("cast", [x], to="float64")
    for axis, (n_in, n_out) in zip((2, 3), zip(x.type.shape[2:], size)):
        if align and n_out > 1:
            scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
        else:
            scale = ((1 << 10) * n_in + n_out // 2) // n_out
        o = np.arange(n_out, dtype=np.int64)
        sv = o * scale + (scale // 2 - (1 << 9) if half else 0)
        trunc = lambda v: np.sign(v) * (np.abs(v) // (1 << 10))     # C's division
        lo = np.maximum(trunc(sv), 0)
        hi = np.minimum(trunc(sv + (1 << 10) - 1), n_in - 1)
        d = (sv - (1 << 10) * lo).astype(np.float64)
        shape = [1, 1, 1, 1]
        shape[axis] = n_out
        a, b = _gather_axis(cx, x, axis, lo), _gather_axis(cx, x, axis, hi)
        x = cx.add("add", [cx.add("mul", [a, cx.const(((1 << 10) - d).reshape(shape))]),
                           cx.add("mul", [b, cx.const(d.reshape(shape))])])
    # (v + sign(v) * 2**19) / 2**20, truncated toward zero
    half_step = cx.add("mul", [cx.add("sign", [x]), cx.const(np.float64(1 << 19))])
    q = cx.add("div", [cx.add("add", [x, half_step]), cx.const(np.float64(1 << 20))])
    q = cx.add("mul", [cx.add("sign", [q]), cx.add("floor", [cx.add("abs", [q])])])
    return cx.add("cast", [q], to=dtype)


# ---- integer kernels ------------------------------------------------------------------------

def _round_away(v: float) -> int:
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def _activation_range(cx, act: int, scale: float, zp: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8."""
    lo, hi = -128, 127
    q = lambda f: zp + _round_away(float(np.float32(f) / np.float32(scale)))
    if act == FUSED_RELU:
        lo = max(lo, q(0.0))
    elif act == FUSED_RELU6:
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    elif act == FUSED_RELU_N1_TO_1:
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif act != FUSED_NONE:
        raise cx.unsupported(f"fused activation {act} on integers")
    return lo, hi


def _requantize_fixed_point(cx, acc, channel_axis: int, act: int, x_index: int = 0):
    """acc (int32, exact) -> int8 as TFLite's MultiplyByQuantizedMultiplier does: the product with
    a 31-bit multiplier rounded to its high half (half away from zero, the 'nudge'), then a
    rounding right shift (half away from zero), + the output zero point, clamped to the fused
    activation's range.  All in exact int64 arithmetic."""
    xt, wt, ot = cx.tensor(x_index), cx.tensor(1), cx.out_tensor()
    n = acc.type.shape[channel_axis]
    ws = np.broadcast_to(wt.quant.scale.astype(np.float64), (n,))
    sx, so = np.float64(xt.quant.scale[0]), np.float64(ot.quant.scale[0])
    mults, shifts = zip(*(quantize_multiplier(float(sx * s / so)) for s in ws))
    zp = int(ot.quant.zero_point[0])
    lo, hi = _activation_range(cx, act, float(ot.quant.scale[0]), zp)
    return multiply_by_quantized_multiplier(cx, acc, mults, shifts, channel_axis, zp, lo, hi)


def _requantize_float(cx, acc, channel_axis: int, act: int):
    """acc (int32, exact) -> int8 as TFLite's reference FULLY_CONNECTED rescales (per tensor and
    per channel alike): the accumulator times s_x * s_w / s_out, both in float64, rounded half
    away from zero (C's ``round``), + the output zero point, clamped to the fused activation's
    range."""
    xt, wt, ot = cx.tensor(0), cx.tensor(1), cx.out_tensor()
    n = acc.type.shape[channel_axis]
    ws = np.broadcast_to(wt.quant.scale.astype(np.float32).astype(np.float64), (n,))
    sx, so = np.float64(np.float32(xt.quant.scale[0])), np.float64(np.float32(ot.quant.scale[0]))
    shape = [1] * len(acc.type.shape)
    shape[channel_axis] = n
    p = cx.add("mul", [cx.add("cast", [acc], to="float64"), cx.const((sx * ws / so).reshape(shape))])
    r = cx.add("mul", [cx.add("sign", [p]), cx.add("floor", [cx.add("add", [cx.add("abs", [p]),
                                                                           cx.const(np.float64(0.5))])])])
    zp = int(ot.quant.zero_point[0])
    lo, hi = _activation_range(cx, act, float(ot.quant.scale[0]), zp)
    r = cx.add("add", [cx.add("cast", [r], to="int64"), cx.const(np.int64(zp))])
    r = cx.add("minimum", [cx.add("maximum", [r, cx.const(np.int64(lo))]), cx.const(np.int64(hi))])
    return cx.add("cast", [r], to="int8")


def multiply_by_quantized_multiplier(cx, acc, mults, shifts, axis, zp, lo, hi):
    """TFLite's MultiplyByQuantizedMultiplier on an int32 tensor (one multiplier and shift per
    index of ``axis``), + ``zp``, clamped to [lo, hi], as int8.  An int32 ``acc`` stays in int32
    (clamped to [lo - zp, hi - zp] before the zero point is added, which cannot overflow)."""
    r = fixed_point_multiply(cx, acc, mults, shifts, axis)
    dt = np.int32 if r.type.dtype == "int32" else np.int64
    s = lambda v: cx.const(dt(v))
    if dt is np.int32:
        r = cx.add("add", [cx.add("minimum", [cx.add("maximum", [r, s(lo - zp)]), s(hi - zp)]), s(zp)])
    else:
        r = cx.add("minimum", [cx.add("maximum", [cx.add("add", [r, s(zp)]), s(lo)]), s(hi)])
    return cx.add("cast", [r], to="int8")


def fixed_point_multiply(cx, acc, mults, shifts, axis):
    """TFLite's MultiplyByQuantizedMultiplier on an integer tensor (one 31-bit multiplier and shift
    per index of ``axis``): the product rounded to its high half (half away from zero, the
    'nudge'), then a rounding right shift (half away from zero).  An int32 tensor gets the
    ``fixed_point_multiply`` op (int32 out, which vector code runs); an int64 one these steps
    in int64 core ops (int64 out), exact."""
    n = len(mults)
    if acc.type.dtype == "int32":
        shape = [1] * len(acc.type.shape)
        shape[axis] = n
        c32 = lambda v: cx.const(np.asarray(v, np.int32).reshape(shape))
        return cx.add("fixed_point_multiply", [acc, c32(mults), c32(shifts)])
    left = np.array([max(s, 0) for s in shifts], np.int64)
    right = np.array([max(-s, 0) for s in shifts], np.int64)
    shape = [1] * len(acc.type.shape)
    shape[axis] = n
    c = lambda a: cx.const(np.asarray(a, np.int64).reshape(shape))
    s = lambda v: cx.const(np.int64(v))
    a = cx.add("cast", [acc], to="int64")
    ab = cx.add("mul", [a, c(np.array(mults, np.int64) << left)])
    nudge = cx.add("where", [cx.add("greater_equal", [ab, s(0)]), s(1 << 30), s(1 - (1 << 30))])
    hm = cx.add("div", [cx.add("add", [ab, nudge]), s(1 << 31)])                  # C truncation
    half, div = c((np.int64(1) << right) >> 1), c(np.int64(1) << right)
    pos = cx.add("div", [cx.add("add", [hm, half]), div])
    neg = cx.add("neg", [cx.add("div", [cx.add("add", [cx.add("neg", [hm]), half]), div])])
    return cx.add("where", [cx.add("less", [hm, s(0)]), neg, pos])


def _mean_integer(cx, axes, keep):
    """TFLite's int8 mean over the two spatial axes of an NHWC tensor (reference_integer_ops::Mean):
    the sum of (x - zp_in), times a multiplier folding 1/count into scale_in / scale_out."""
    xt, ot = cx.tensor(0), cx.out_tensor()
    cx.float_mode = False
    layout = cx.layout(0) if cx.rank(0) == 4 else "NHWC"
    x = cx.get(0, layout)
    ax = tuple(sorted(TO_NCHW.index(a) for a in axes)) if layout == "NCHW" else tuple(axes)
    count = int(np.prod([x.type.shape[a] for a in ax]))
    m, shift = quantize_multiplier(float(np.float64(xt.quant.scale[0]) / np.float64(ot.quant.scale[0])))
    sh = min(count.bit_length() - 1, 32, 31 + shift)
    mult = int((m << sh) // count) if m >= 0 else -int(((-m) << sh) // count)
    acc = cx.add("reduce_sum", [cx.add("cast", [x], to="int32")], axes=ax, keepdims=keep)
    acc = cx.add("sub", [acc, cx.const(np.int32(count * int(xt.quant.zero_point[0])))])
    y = multiply_by_quantized_multiplier(cx, acc, [mult], [shift - sh], 0, int(ot.quant.zero_point[0]), -128, 127)
    cx.set(y, layout if keep else "NHWC")


def _int_bias(cx, k: int, n: int):
    if not cx.has_input(k):
        return None
    b = np.asarray(cx.fe.const_array(cx.operator.inputs[k], False))
    if b.dtype != np.int32 or b.size != n:
        raise cx.unsupported(f"a bias of {b.dtype} x {b.size} for {n} channels on integers")
    return b.reshape(-1)


def _conv_integer(cx, w_oihw, strides, dil, padding, groups, act):
    x = cx.nchw(0)
    n, c, h, wd = x.type.shape
    o, _, kh, kw = w_oihw.shape
    zx = int(cx.tensor(0).quant.zero_point[0])
    pads = _spatial_pads(cx, h, wd, kh, kw, strides[0], strides[1], dil[0], dil[1], padding)
    w8 = np.ascontiguousarray(w_oihw, np.int8)
    acc = cx.add("conv2d_int", [x, cx.const(w8)], strides=strides, pads=pads, dilations=dil,
                 groups=groups, pad_value=zx)
    # sum (x - zx) * w = sum x * w - zx * sum w (padding reads zx, a real zero)
    corr = -zx * w8.astype(np.int64).sum(axis=(1, 2, 3))
    b = _int_bias(cx, 2, o)
    if b is not None:
        corr = corr + b
    acc = cx.add("add", [acc, cx.const(corr.astype(np.int32).reshape(1, -1, 1, 1))])
    cx.set(_requantize_fixed_point(cx, acc, 1, act), "NCHW")


def _fully_connected_integer(cx):
    w8 = np.asarray(cx.const_input(1, "weights"), np.int8)       # N, K
    shape = cx.shape(0)
    k = w8.shape[1]
    x = cx.nhwc(0)
    if len(shape) != 2 or shape[1] != k:
        x = cx.add("reshape", [x], shape=resolved_shape(cx, shape, (-1, k)))
    zx = int(cx.tensor(0).quant.zero_point[0])
    acc = cx.add("matmul_int", [x, cx.const(np.ascontiguousarray(w8.T))])
    corr = -zx * w8.astype(np.int64).sum(axis=1)
    b = _int_bias(cx, 2, w8.shape[0])
    if b is not None:
        corr = corr + b
    acc = cx.add("add", [acc, cx.const(corr.astype(np.int32))])
    y = _requantize_float(cx, acc, 1, cx.opt(0, "i8", 0))
    if cx.opt(2, "bool", False) and len(shape) != 2:
        y = cx.add("reshape", [y], shape=tuple(shape[:-1]) + (w8.shape[0],))
    cx.set(y)


# ---- quantization --------------------------------------------------------------------------

@translates("DEQUANTIZE")
def dequantize(cx):
    t = cx.tensor(0)
    if cx.is_const(0):
        from .tflite import dequantize_array

        a = cx.const_input(0)
        a = dequantize_array(a, t.quant) if t.quant is not None and t.dtype != "float16" else a.astype(np.float32)
        cx.fe.consts[cx.operator.outputs[0]] = np.asarray(a, np.float32)
        return
    if t.quant is None or t.quant.scale.size != 1:
        raise cx.unsupported(f"dequantize of a {t.dtype} activation without one scale")
    layout = cx.layout(0)
    x = cx.get(0, layout)
    if t.dtype == "float16":
        cx.set(cx.add("cast", [x], to="float32"), layout)
        return
    y = cx.add("dequantize", [x, cx.const(np.float32(t.quant.scale[0])),
                              cx.const(np.asarray(t.quant.zero_point[0], t.dtype))])
    cx.set(y, layout)


@translates("QUANTIZE")
def quantize(cx):
    t, o = cx.tensor(0), cx.out_tensor()
    if o.quant is None or o.quant.scale.size != 1:
        raise cx.unsupported("quantize without one output scale")
    layout = cx.layout(0)
    x = cx.get(0, layout)
    if t.dtype != "float32":
        # a requantization between two scales
        if t.quant is None or t.quant.scale.size != 1:
            raise cx.unsupported("requantize without one input scale")
        x = cx.add("dequantize", [x, cx.const(np.float32(t.quant.scale[0])),
                                  cx.const(np.asarray(t.quant.zero_point[0], t.dtype))])
    y = cx.add("quantize", [x, cx.const(np.float32(o.quant.scale[0])),
                            cx.const(np.asarray(o.quant.zero_point[0], o.dtype))])
    cx.set(y, layout)

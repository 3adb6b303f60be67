"""ONNX quantization ops (QDQ and QOperator forms) as core ops: DequantizeLinear, QuantizeLinear,
DynamicQuantizeLinear onto ``dequantize`` / ``quantize``, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv onto the 8-bit products ``matmul_int`` / ``conv2d_int`` with their zero
points' corrections and ``requantize`` (see ``ember.ops.quant``).

QuantizeLinear and DequantizeLinear follow ONNX's reference: the quantized side may be any of
the 8/16-bit integers, int4/uint4/int2/uint2 (saturated to their range) or float8/float4 (a
``cast``, saturating or not); the float side computes in float32 unless a wider type or the
``precision`` attribute asks for more.  Per-tensor, per-axis and blocked parameters; the common
float32 / 8-bit per-tensor and per-axis cases map onto the core ops directly, the rest is
decomposed into casts and float arithmetic."""

from __future__ import annotations

import numpy as np

from ...graph.types import NARROW_FLOAT_DTYPES, is_float, np_dtype
from ...ops.quant import QUANT_RANGES
from ..onnx import onnx_dtype
from . import translates
from .nn import convolution, matmul_values
from .tensor import norm_axis, reshape

_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
           "int32": (-2**31, 2**31 - 1), "int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}


def _along(cx, v, axis: int, rank: int, block: int = 0, n: int = 0):
    """A per-axis parameter (1-D, one value per index of ``axis``) reshaped to broadcast there;
    with ``block``, a parameter of the input's rank with one value per block of ``axis`` (of
    length ``n``) repeated over its block."""
    if block:
        if v.type.rank != rank or -(-n // block) != v.shape[axis]:
            raise cx.fail(f"blocked parameter {v.type} does not match block_size={block} on axis {axis}")
        return cx.op("gather", [v, cx.const(np.arange(n, dtype=np.int64) // block)], axis=axis)
    if v.type.rank == 0:
        return v
    if v.type.rank == 1 and v.shape[0] == 1:
        return reshape(cx, v, ())
    if v.type.rank != 1:
        raise cx.unsupported(f"blocked or {v.type.rank}-D quantization parameters")
    return reshape(cx, v, (v.shape[0],) + (1,) * (rank - axis - 1))


def _axis(cx, rank: int, scale) -> int:
    """The quantization axis; only checked when the parameters are per axis."""
    if (scale.type.rank == 0 or scale.type.size == 1) and not cx.attr("block_size", 0):
        return 0
    return norm_axis(cx, cx.attr("axis", 1), rank)


def _to(cx, v, dtype):
    return v if v.dtype == dtype else cx.op("cast", [v], to=dtype)


def _dtype_attr(cx, name: str) -> str | None:
    code = cx.attr(name, 0)
    return onnx_dtype(code, name, cx.name, cx.op_type) if code else None


@translates("DequantizeLinear")
def dequantize_linear(cx):
    x, scale, zp = cx.input(0), cx.input(1), cx.input(2, required=False)
    rank = x.type.rank
    axis = _axis(cx, rank, scale)
    blk = (cx.attr("block_size", 0), x.shape[axis] if rank else 0)
    out = _dtype_attr(cx, "output_dtype") or scale.dtype
    if (not blk[0] and scale.dtype == "float32" and out == "float32" and x.dtype in DEQUANTIZABLE
            and (zp is None or zp.dtype == x.dtype)):
        return core_dequantize(cx, x, _along(cx, scale, axis, rank),
                               _along(cx, zp, axis, rank) if zp is not None else cx.scalar(0, x.dtype))
    # (x - zero point) * scale in float32 (float64 for a float64 scale), then the output type;
    # the zero point of float8 and float4 data is zero by definition and is not read
    ft = "float64" if scale.dtype == "float64" else "float32"
    xf = _to(cx, x, ft)
    if zp is not None and x.dtype not in NARROW_FLOAT_DTYPES:
        xf = cx.op("sub", [xf, _along(cx, _to(cx, zp, ft), axis, rank, *blk)])
    return _to(cx, cx.op("mul", [xf, _along(cx, _to(cx, scale, ft), axis, rank, *blk)]), out)


def quantize(cx, xf, qdtype: str, zp=None):
    """saturate(round_half_even(xf) + zp) as ``qdtype``; ``xf`` is already divided by the scale."""
    if qdtype in NARROW_FLOAT_DTYPES and qdtype != "float8_e8m0fnu":
        # float8: a cast, saturating unless asked not to (the zero point is not added);
        # float4 always saturates, and adds its zero point
        if qdtype == "float4_e2m1fn" and zp is not None:
            xf = cx.op("add", [xf, _to(cx, zp, xf.dtype)])
        sat = bool(cx.attr("saturate", 1)) and qdtype != "float4_e2m1fn"
        return cx.op("cast", [xf], to=qdtype, saturate=sat)
    if qdtype not in _RANGES:
        raise cx.unsupported(f"quantization to {qdtype}")
    q = cx.op("round", [xf])
    if zp is not None:
        q = cx.op("add", [q, zp if zp.dtype == xf.dtype else cx.op("cast", [zp], to=xf.dtype)])
    lo, hi = _RANGES[qdtype]
    return cx.op("cast", [cx.op("clip", [q], lo=float(lo), hi=float(hi))], to=qdtype)


@translates("QuantizeLinear")
def quantize_linear(cx):
    x, scale, zp = cx.input(0), cx.input(1), cx.input(2, required=False)
    rank = x.type.rank
    axis = _axis(cx, rank, scale)
    blk = (cx.attr("block_size", 0), x.shape[axis] if rank else 0)
    out = _dtype_attr(cx, "output_dtype")
    if zp is not None:
        if out is not None and out != zp.dtype:
            raise cx.fail(f"output_dtype {out} differs from the zero point's type {zp.dtype}")
        qdtype = zp.dtype
    else:
        qdtype = out or "uint8"
    ft = _division_dtype(cx, x, scale)
    if not blk[0] and ft == "float32" and x.dtype == "float32" and scale.dtype == "float32" and qdtype in QUANT_RANGES:
        return cx.op("quantize", [x, _along(cx, scale, axis, rank),
                                  _along(cx, zp, axis, rank) if zp is not None else cx.scalar(0, qdtype)])
    xf = cx.op("div", [_to(cx, x, ft), _along(cx, _to(cx, scale, ft), axis, rank, *blk)])
    return quantize(cx, xf, qdtype, None if zp is None else _along(cx, zp, axis, rank, *blk))


def _division_dtype(cx, x, scale) -> str:
    """The type x / scale is computed in: the ``precision`` attribute, else numpy's promotion of
    the two types (as ONNX's reference), float32 when that is not a float type."""
    p = _dtype_attr(cx, "precision")
    if p is not None:
        return p
    try:
        dt = str(np.result_type(np_dtype(x.dtype), np_dtype(scale.dtype)))
    except TypeError:
        return "float32"
    return dt if is_float(dt) else "float32"


@translates("DynamicQuantizeLinear")
def dynamic_quantize_linear(cx):
    x = cx.input(0)
    axes = tuple(range(x.type.rank))
    zero = cx.scalar(0, x.dtype)
    lo = cx.op("minimum", [cx.op("reduce_min", [x], axes=axes, keepdims=False), zero])
    hi = cx.op("maximum", [cx.op("reduce_max", [x], axes=axes, keepdims=False), zero])
    scale = cx.op("div", [cx.op("sub", [hi, lo]), cx.scalar(255, x.dtype)])
    zp = quantize(cx, cx.op("neg", [cx.op("div", [lo, scale])]), "uint8")
    if x.dtype == "float32":
        return [cx.op("quantize", [x, scale, zp]), scale, zp]
    y = quantize(cx, cx.op("div", [x, scale]), "uint8", zp)
    return [y, scale, zp]


#: integer dtypes DequantizeLinear maps onto the core ``dequantize``
DEQUANTIZABLE = ("int8", "uint8", "int16", "uint16", "int32")


def core_dequantize(cx, x, scale, zp):
    """The core ``dequantize``.  Of a constant (a weight, a bias) it stays a node rather than
    folding at once: the qdq_to_integer pass reads the integers from it, and fold_constants folds
    what that pass leaves."""
    if x.is_const and scale.is_const and zp.is_const:
        return cx.b.op("dequantize", [x, scale, zp], name=cx.name)
    return cx.op("dequantize", [x, scale, zp])


def saturates_pairs(x, w, depthwise: bool = False) -> bool:
    """Whether onnxruntime's kernel for these operands saturates pairs of products (see
    ``ember.ops.quant``) on x86 without VNNI: uint8 activations with int8 weights, except
    depthwise convolutions; ``passes.pair_saturation`` clears the flag for other targets."""
    return x.dtype == "uint8" and w.dtype == "int8" and not depthwise


def _centered(cx, v, zp, axis_for_vector: int | None = None):
    """int32 ``v - zp`` (zp absent: just the cast); a 1-D zp broadcasts along ``axis_for_vector``."""
    v32 = cx.op("cast", [v], to="int32")
    if zp is None:
        return v32
    z32 = cx.op("cast", [zp], to="int32")
    if z32.type.rank == 1 and axis_for_vector is not None and z32.shape[0] != 1:
        z32 = reshape(cx, z32, (z32.shape[0],) + (1,) * (v.type.rank - axis_for_vector - 1))
    return cx.op("sub", [v32, z32])


def _i32(cx, v):
    return v if v.dtype == "int32" else cx.op("cast", [v], to="int32")


def _integer_matmul(cx, a, b, a_zp, b_zp):
    """sum_k (a - a_zp)(b - b_zp) in int32 with the 8-bit product ``matmul_int`` on the raw
    operands (saturating as onnxruntime does) and the zero points' corrections: - a_zp * colsum(b)
    - b_zp * rowsum(a) + K * a_zp * b_zp.  a_zp is a scalar or one per row of a 2-D a, b_zp a
    scalar or one per column."""
    ra, rb = a.type.rank, b.type.rank
    a2 = reshape(cx, a, (1, a.shape[0])) if ra == 1 else a
    b2 = reshape(cx, b, (b.shape[0], 1)) if rb == 1 else b
    acc = cx.op("matmul_int", [a2, b2], saturate_pairs=saturates_pairs(a, b))
    k = a2.shape[-1]
    if a_zp is not None:
        za = _i32(cx, a_zp)
        if za.type.rank == 1 and za.shape[0] != 1:
            za = reshape(cx, za, (za.shape[0], 1))
        colsum = cx.op("reduce_sum", [_i32(cx, b2)], axes=(-2,), keepdims=True)
        acc = cx.op("sub", [acc, cx.op("mul", [za, colsum])])
    if b_zp is not None:
        zb = _i32(cx, b_zp)
        rowsum = cx.op("reduce_sum", [_i32(cx, a2)], axes=(-1,), keepdims=True)
        acc = cx.op("sub", [acc, cx.op("mul", [zb, rowsum])])
        if a_zp is not None:
            acc = cx.op("add", [acc, cx.op("mul", [cx.op("mul", [za, zb]), cx.scalar(k, "int32")])])
    if ra == 1 or rb == 1:
        shp = list(acc.shape)
        if rb == 1:
            shp.pop(-1)
        if ra == 1:
            shp.pop(-2 if rb != 1 else -1)
        acc = reshape(cx, acc, shp)
    return acc


def _eight_bit(*vs) -> bool:
    return all(v.dtype in ("int8", "uint8") for v in vs)


@translates("MatMulInteger")
def matmul_integer(cx):
    a, b = cx.input(0), cx.input(1)
    a_zp, b_zp = cx.input(2, required=False), cx.input(3, required=False)
    if _eight_bit(a, b):
        return _integer_matmul(cx, a, b, a_zp, b_zp)
    return matmul_values(cx, _centered(cx, a, a_zp, max(a.type.rank - 2, 0)),
                         _centered(cx, b, b_zp, b.type.rank - 1))


def _scalar_const(v) -> int | None:
    """The value of a constant with one element, else None."""
    if v is None or not v.is_const or v.const.size != 1:
        return None
    return int(v.const.reshape(-1)[0])


def _integer_conv(cx, x, w, x_zp, w_zp):
    """The convolution in int32 of (x - x_zp) and (w - w_zp): ``conv2d_int`` on the raw 8-bit
    operands (padding with x_zp, saturating as onnxruntime does) less x_zp * sum(w) per output
    channel, when x_zp is a constant and w_zp is zero; else the exact product of the centered
    operands in int32 (None if they are not 8-bit)."""
    zx = 0 if x_zp is None else _scalar_const(x_zp)
    w_centered = w_zp is not None and not (w_zp.is_const and not np.any(w_zp.const))
    if not _eight_bit(x, w) or zx is None or w_centered:
        return convolution(cx, _centered(cx, x, x_zp), _centered(cx, w, w_zp, 0))
    group = cx.attr("group", 1)
    depthwise = group > 1 and w.shape[1] == 1
    acc = convolution(cx, x, w, "conv2d_int", pad_value=zx, saturate_pairs=saturates_pairs(x, w, depthwise))
    if zx:
        wsum = cx.op("reduce_sum", [_i32(cx, w)], axes=tuple(range(1, w.type.rank)), keepdims=False)
        corr = cx.op("mul", [wsum, cx.scalar(zx, "int32")])
        acc = cx.op("sub", [acc, reshape(cx, corr, (w.shape[0],) + (1,) * (acc.type.rank - 2))])
    return acc


@translates("ConvInteger")
def conv_integer(cx):
    x, w = cx.input(0), cx.input(1)
    x_zp, w_zp = cx.input(2, required=False), cx.input(3, required=False)
    return _integer_conv(cx, x, w, x_zp, w_zp)


def _requantize(cx, acc, multiplier, y_zp, axis=None):
    if axis is not None and multiplier.type.rank == 1 and multiplier.shape[0] != 1:
        multiplier = reshape(cx, multiplier, (multiplier.shape[0],) + (1,) * (acc.type.rank - axis - 1))
    if y_zp.dtype in QUANT_RANGES:
        return cx.op("requantize", [acc, multiplier, reshape(cx, y_zp, ()) if y_zp.type.size == 1 else y_zp])
    accf = cx.op("cast", [acc], to="float32")
    return quantize(cx, cx.op("mul", [accf, multiplier]), y_zp.dtype, y_zp)


def _multiplier(cx, a_scale, b_scale, y_scale):
    """a_scale * b_scale / y_scale in float32, in onnxruntime's order."""
    f = [cx.op("cast", [s], to="float32") if s.dtype != "float32" else s for s in (a_scale, b_scale, y_scale)]
    return cx.op("div", [cx.op("mul", [f[0], f[1]]), f[2]])


@translates("QLinearMatMul")
def qlinear_matmul(cx):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = (cx.input(k) for k in range(8))
    if _eight_bit(a, b):
        acc = _integer_matmul(cx, a, b, a_zp, b_zp)
    else:
        acc = matmul_values(cx, _centered(cx, a, a_zp, max(a.type.rank - 2, 0)),
                            _centered(cx, b, b_zp, b.type.rank - 1))
    return _requantize(cx, acc, _multiplier(cx, a_scale, b_scale, y_scale), y_zp, acc.type.rank - 1)


@translates("QLinearConv")
def qlinear_conv(cx):
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp = (cx.input(k) for k in range(8))
    bias = cx.input(8, required=False)
    acc = _integer_conv(cx, x, w, x_zp, w_zp)
    if bias is not None:
        acc = cx.op("add", [acc, reshape(cx, _i32(cx, bias), (bias.shape[0],) + (1,) * (acc.type.rank - 2))])
    return _requantize(cx, acc, _multiplier(cx, x_scale, w_scale, y_scale), y_zp, 1)

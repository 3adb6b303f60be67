"""ONNX quantization ops (QDQ and QOperator forms) decomposed into integer and float core ops:
DequantizeLinear, QuantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv.

QuantizeLinear and DequantizeLinear follow ONNX's reference: the quantized side may be any of
the 8/16-bit integers, int4/uint4/int2/uint2 (saturated to their range) or float8/float4 (a
``cast``, saturating or not); the float side computes in float32 unless a wider type or the
``precision`` attribute asks for more.  Per-tensor, per-axis and blocked parameters."""

from __future__ import annotations

import numpy as np

from ...graph.types import NARROW_FLOAT_DTYPES, is_float, np_dtype
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
    y = quantize(cx, cx.op("div", [x, scale]), "uint8", zp)
    return [y, scale, zp]


def _centered(cx, v, zp, axis_for_vector: int | None = None):
    """int32 ``v - zp`` (zp absent: just the cast); a 1-D zp broadcasts along ``axis_for_vector``."""
    v32 = cx.op("cast", [v], to="int32")
    if zp is None:
        return v32
    z32 = cx.op("cast", [zp], to="int32")
    if z32.type.rank == 1 and axis_for_vector is not None and z32.shape[0] != 1:
        z32 = reshape(cx, z32, (z32.shape[0],) + (1,) * (v.type.rank - axis_for_vector - 1))
    return cx.op("sub", [v32, z32])


@translates("MatMulInteger")
def matmul_integer(cx):
    a, b = cx.input(0), cx.input(1)
    a_zp, b_zp = cx.input(2, required=False), cx.input(3, required=False)
    return matmul_values(cx, _centered(cx, a, a_zp, max(a.type.rank - 2, 0)),
                         _centered(cx, b, b_zp, b.type.rank - 1))


@translates("ConvInteger")
def conv_integer(cx):
    x, w = cx.input(0), cx.input(1)
    x_zp, w_zp = cx.input(2, required=False), cx.input(3, required=False)
    return convolution(cx, _centered(cx, x, x_zp), _centered(cx, w, w_zp, 0))


def _requantize(cx, acc, multiplier, y_zp, axis=None):
    accf = cx.op("cast", [acc], to="float32")
    if axis is not None and multiplier.type.rank == 1 and multiplier.shape[0] != 1:
        multiplier = reshape(cx, multiplier, (multiplier.shape[0],) + (1,) * (acc.type.rank - axis - 1))
    return quantize(cx, cx.op("mul", [accf, multiplier]), y_zp.dtype, y_zp)


def _multiplier(cx, a_scale, b_scale, y_scale):
    f = [cx.op("cast", [s], to="float32") if s.dtype != "float32" else s for s in (a_scale, b_scale, y_scale)]
    return cx.op("div", [cx.op("mul", [f[0], f[1]]), f[2]])


@translates("QLinearMatMul")
def qlinear_matmul(cx):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = (cx.input(k) for k in range(8))
    acc = matmul_values(cx, _centered(cx, a, a_zp, max(a.type.rank - 2, 0)), _centered(cx, b, b_zp, b.type.rank - 1))
    return _requantize(cx, acc, _multiplier(cx, a_scale, b_scale, y_scale), y_zp, acc.type.rank - 1)


@translates("QLinearConv")
def qlinear_conv(cx):
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp = (cx.input(k) for k in range(8))
    bias = cx.input(8, required=False)
    acc = convolution(cx, _centered(cx, x, x_zp), _centered(cx, w, w_zp, 0))
    if bias is not None:
        b32 = cx.op("cast", [bias], to="int32") if bias.dtype != "int32" else bias
        acc = cx.op("add", [acc, reshape(cx, b32, (bias.shape[0],) + (1,) * (acc.type.rank - 2))])
    return _requantize(cx, acc, _multiplier(cx, x_scale, w_scale, y_scale), y_zp, 1)


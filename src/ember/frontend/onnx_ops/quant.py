"""ONNX quantization ops (QDQ and QOperator forms) decomposed into integer and float core ops:
DequantizeLinear, QuantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger,
QLinearMatMul, QLinearConv."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_float
from ..onnx import onnx_dtype
from . import translates
from .nn import convolution, matmul_values
from .tensor import norm_axis, reshape

_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
           "int32": (-2**31, 2**31 - 1)}


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


@translates("DequantizeLinear")
def dequantize_linear(cx):
    x, scale, zp = cx.input(0), cx.input(1), cx.input(2, required=False)
    rank = x.type.rank
    axis = _axis(cx, rank, scale)
    blk = (cx.attr("block_size", 0), x.shape[axis] if rank else 0)
    xf = cx.op("cast", [x], to=scale.dtype)
    if zp is not None:
        xf = cx.op("sub", [xf, _along(cx, cx.op("cast", [zp], to=scale.dtype), axis, rank, *blk)])
    return cx.op("mul", [xf, _along(cx, scale, axis, rank, *blk)])


def quantize(cx, xf, qdtype: str, zp=None):
    """saturate(round_half_even(xf) + zp) as ``qdtype``; ``xf`` is already divided by the scale."""
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
    if zp is not None:
        qdtype = zp.dtype
    elif cx.has_attr("output_dtype") and cx.attr("output_dtype"):
        qdtype = onnx_dtype(cx.attr("output_dtype"), "output_dtype", cx.name, cx.op_type)
    else:
        qdtype = "uint8"
    if not is_float(x.dtype):
        x = cx.op("cast", [x], to=scale.dtype)
    if scale.dtype != x.dtype:
        scale = cx.op("cast", [scale], to=x.dtype)
    xf = cx.op("div", [x, _along(cx, scale, axis, rank, *blk)])
    return quantize(cx, xf, qdtype, None if zp is None else _along(cx, zp, axis, rank, *blk))


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


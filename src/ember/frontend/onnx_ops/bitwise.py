"""ONNX bit operations on integers, in integer arithmetic: BitShift, BitwiseNot, BitwiseAnd/Or/Xor.

The core op set has no bit operators, and these ops are rare in inference graphs, so they are
decomposed: a shift is a multiplication or division by a power of two computed in the unsigned
type of the same width (where C and numpy both wrap modulo 2^bits), and and/or/xor work on the
operands' bits, taken apart along a new last axis (``(x / 2^k) % 2``) and summed back.
"""

from __future__ import annotations

import numpy as np

from ...graph.types import broadcast_shapes, is_int
from . import translates
from .tensor import reshape


def _check_int(cx, *vs):
    for v in vs:
        if not is_int(v.dtype):
            raise cx.fail(f"expects integer operands, got {v.type}")
    if len({v.dtype for v in vs}) != 1:
        raise cx.fail(f"operands must share one dtype, got {', '.join(str(v.type) for v in vs)}")


def _unsigned(dtype: str) -> str:
    return dtype if dtype.startswith("uint") else "u" + dtype


def _bits(dtype: str) -> int:
    return np.iinfo(np.dtype(dtype)).bits


def _to(cx, v, dtype):
    return v if v.dtype == dtype else cx.op("cast", [v], to=dtype)


@translates("BitShift")
def bit_shift(cx):
    x, y = cx.input(0), cx.input(1)
    _check_int(cx, x, y)
    dt = x.dtype
    ut = _unsigned(dt)
    n = _bits(dt)
    signed = dt != ut
    zero = cx.scalar(0, dt)
    out_of_range = cx.op("greater_equal", [y, cx.scalar(n, dt)])
    if signed:
        out_of_range = cx.op("logical_or", [out_of_range, cx.op("less", [y, zero])])
    amount = _to(cx, cx.op("where", [out_of_range, zero, y]), ut)
    power = cx.op("pow", [cx.scalar(2, ut), amount])            # 2^y, at most 2^(bits - 1)
    direction = cx.attr("direction")
    if direction == "LEFT":
        shifted = _to(cx, cx.op("mul", [_to(cx, x, ut), power]), dt)
        return cx.op("where", [out_of_range, zero, shifted])
    if direction != "RIGHT":
        raise cx.fail(f"direction must be 'LEFT' or 'RIGHT', got {direction!r}")
    if not signed:
        return cx.op("where", [out_of_range, zero, cx.op("div", [x, power])])
    # arithmetic shift: floor(x / 2^y); for x < 0 that is -1 - ((-1 - x) / 2^y), where -1 - x
    # is non-negative and never overflows
    minus_one = cx.scalar(-1, dt)
    negative = cx.op("less", [x, zero])
    magnitude = cx.op("where", [negative, cx.op("sub", [minus_one, x]), x])
    q = _to(cx, cx.op("div", [_to(cx, magnitude, ut), power]), dt)
    shifted = cx.op("where", [negative, cx.op("sub", [minus_one, q]), q])
    fill = cx.op("where", [negative, minus_one, zero])
    return cx.op("where", [out_of_range, fill, shifted])


@translates("BitwiseNot")
def bitwise_not(cx):
    x = cx.input(0)
    _check_int(cx, x)
    if x.dtype.startswith("uint"):
        return cx.op("sub", [cx.scalar(np.iinfo(np.dtype(x.dtype)).max, x.dtype), x])
    return cx.op("sub", [cx.scalar(-1, x.dtype), x])


@translates("BitwiseAnd", "BitwiseOr", "BitwiseXor")
def bitwise_binary(cx):
    x, y = cx.input(0), cx.input(1)
    _check_int(cx, x, y)
    dt = x.dtype
    ut = _unsigned(dt)
    n = _bits(dt)
    shape = broadcast_shapes(tuple(x.shape), tuple(y.shape))
    powers = cx.const(np.array([1 << k for k in range(n)], dtype=np.dtype(ut)))
    two = cx.scalar(2, ut)

    def bits(v):
        # [..., 1] / [n] -> [..., n] of 0s and 1s
        u = reshape(cx, _to(cx, v, ut), tuple(v.shape) + (1,))
        return cx.op("fmod", [cx.op("div", [u, powers]), two])

    a, b = bits(x), bits(y)
    if cx.op_type == "BitwiseAnd":
        r = cx.op("mul", [a, b])
    elif cx.op_type == "BitwiseOr":
        r = cx.op("sub", [cx.op("add", [a, b]), cx.op("mul", [a, b])])
    else:
        r = cx.op("fmod", [cx.op("add", [a, b]), two])
    out = cx.op("reduce_sum", [cx.op("mul", [r, powers])], axes=(len(shape),), keepdims=False)
    return _to(cx, out, dt)


# ---- BitCast ----------------------------------------------------------------------------------

# IEEE binary formats: (exponent bits, fraction bits)
_LAYOUT = {"float16": (5, 10), "float32": (8, 23), "float64": (11, 52)}


@translates("BitCast")
def bit_cast(cx):
    from ..onnx import onnx_dtype

    x = cx.input(0)
    to = onnx_dtype(cx.attr("to"), "BitCast target", cx.name, cx.op_type)
    src = x.dtype
    if np.dtype(src).itemsize != np.dtype(to).itemsize or "bfloat16" in (src, to):
        raise cx.fail(f"cannot reinterpret {src} as {to}: the widths differ or are not supported")
    if src == to:
        return x
    if src in _LAYOUT and to in _LAYOUT:
        raise cx.fail(f"cannot reinterpret {src} as {to}")
    if src in _LAYOUT:
        return _to(cx, _float_to_bits(cx, x), to)
    if to in _LAYOUT:
        return _bits_to_float(cx, x, to)
    # between integer types (and bool) of one width, a conversion wraps exactly like a
    # reinterpretation
    return cx.op("cast", [x], to=to)


def _float_to_bits(cx, x):
    """The bits of float ``x`` as the unsigned integer type of its width."""
    ebits, fbits = _LAYOUT[x.dtype]
    n = 1 + ebits + fbits
    ut = f"uint{n}"
    bias = (1 << (ebits - 1)) - 1
    ft = "float64" if x.dtype == "float64" else "float32"
    xf = _to(cx, x, ft)
    zero = cx.scalar(0, ft)
    # the sign bit, -0.0 included (1 / -0.0 = -inf)
    sign = cx.op("logical_or", [cx.op("less", [xf, zero]),
                                cx.op("less", [cx.op("div", [cx.scalar(1, ft), xf]), zero])])
    mag = cx.op("abs", [xf])
    # biased exponent: how many of 2^(1-bias) .. 2^bias, inf the magnitude reaches
    thresholds = np.array([2.0 ** k for k in range(1 - bias, bias + 1)] + [np.inf], dtype=ft)
    reached = cx.op("greater_equal", [reshape(cx, mag, tuple(mag.shape) + (1,)), cx.const(thresholds)])
    e = cx.op("reduce_sum", [cx.op("cast", [reached], to="int64")], axes=(mag.type.rank,), keepdims=False)
    # the fraction: |x| / 2^(e - bias) - 1 for normal numbers, |x| / 2^(1 - bias) for subnormals,
    # both scaled by 2^fbits; 0 for infinities
    scale = np.array([2.0 ** (max(k, 1) - bias - fbits) for k in range(0, 2 * bias + 2)], dtype=ft)
    scaled = cx.op("div", [mag, cx.op("gather", [cx.const(scale), e], axis=0)])
    implicit = cx.op("where", [cx.op("greater", [e, cx.scalar(0, "int64")]), cx.scalar(2.0 ** fbits, ft), zero])
    frac = cx.op("sub", [scaled, implicit])
    frac = cx.op("where", [cx.op("equal", [e, cx.scalar(2 * bias + 1, "int64")]), zero, frac])
    bits = cx.op("add", [cx.op("mul", [_to(cx, e, ut), cx.scalar(1 << fbits, ut)]), _to(cx, frac, ut)])
    bits = cx.op("add", [bits, cx.op("where", [sign, cx.scalar(1 << (n - 1), ut), cx.scalar(0, ut)])])
    # NaN: the quiet NaN with the sign clear
    nan_bits = cx.scalar(((2 * bias + 1) << fbits) | (1 << (fbits - 1)), ut)
    return cx.op("where", [cx.op("isnan", [xf]), nan_bits, bits])


def _bits_to_float(cx, x, to):
    """The float of type ``to`` whose bits are the integer ``x`` (of the same width)."""
    ebits, fbits = _LAYOUT[to]
    n = 1 + ebits + fbits
    ut = f"uint{n}"
    bias = (1 << (ebits - 1)) - 1
    ft = "float64" if to == "float64" else "float32"
    u = _to(cx, x, ut)
    sign = cx.op("greater_equal", [u, cx.scalar(1 << (n - 1), ut)])
    e = cx.op("fmod", [cx.op("div", [u, cx.scalar(1 << fbits, ut)]), cx.scalar(1 << ebits, ut)])
    frac = _to(cx, cx.op("fmod", [u, cx.scalar(1 << fbits, ut)]), ft)
    e64 = _to(cx, e, "int64")
    scale = np.array([2.0 ** (max(k, 1) - bias - fbits) for k in range(0, 2 * bias + 2)], dtype=ft)
    implicit = cx.op("where", [cx.op("greater", [e64, cx.scalar(0, "int64")]), cx.scalar(2.0 ** fbits, ft),
                               cx.scalar(0, ft)])
    mag = cx.op("mul", [cx.op("add", [frac, implicit]), cx.op("gather", [cx.const(scale), e64], axis=0)])
    special = cx.op("where", [cx.op("equal", [frac, cx.scalar(0, ft)]), cx.scalar(np.inf, ft),
                              cx.scalar(np.nan, ft)])
    mag = cx.op("where", [cx.op("equal", [e64, cx.scalar(2 * bias + 1, "int64")]), special, mag])
    out = cx.op("where", [sign, cx.op("mul", [mag, cx.scalar(-1, ft)]), mag])  # -0.0 too
    return _to(cx, out, to)

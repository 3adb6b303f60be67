"""Elementwise ONNX ops: unary math, binary arithmetic and comparison (numpy broadcasting),
variadic Sum/Mean/Max/Min, Clip, Where, Cast, and activations composed from core ops."""

from __future__ import annotations

import math

import numpy as np

from ...graph.types import is_float, is_int, is_string
from ...ops.cast import SATURABLE
from ...symbolic import SymbolicError
from ..onnx import onnx_dtype
from ..core.shape_values import floor_mod
from . import translates
from .tensor import agreeing

# ONNX op -> core unary op
_UNARY = {
    "Neg": "neg", "Abs": "abs", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Reciprocal": "reciprocal",
    "Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu", "Erf": "erf", "Floor": "floor", "Ceil": "ceil",
    "Round": "round", "Sign": "sign", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin",
    "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh",
    "Atanh": "atanh", "Not": "logical_not", "IsNaN": "isnan",
}

# ONNX op -> core binary op
_BINARY = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div",
    "Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
    "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or", "Xor": "logical_xor",
}


@translates(*_UNARY)
def unary(cx):
    return cx.op(_UNARY[cx.op_type], [cx.input(0)])


def _legacy_broadcast(cx, a, b):
    """Before opset 7, binary ops broadcast only B, aligned at ``axis`` when given."""
    if cx.opset >= 7 or not cx.attr("broadcast", 0) or not cx.has_attr("axis"):
        return b
    axis = cx.attr("axis")
    if axis < 0:
        axis += a.type.rank
    trailing = a.type.rank - axis - b.type.rank
    if trailing < 0:
        raise cx.fail(f"cannot align B {b.type} with A {a.type} at axis {cx.attr('axis')}")
    return cx.op("reshape", [b], shape=tuple(b.shape) + (1,) * trailing)


@translates(*_BINARY)
def binary(cx):
    a, b = cx.input(0), cx.input(1)
    b = _legacy_broadcast(cx, a, b)
    if cx.op_type == "Equal" and is_string(a.dtype):
        return cx.op("string_equal", [a, b])
    return cx.op(_BINARY[cx.op_type], agreeing(cx, a, b))


@translates("Pow")
def pow_(cx):
    x, y = cx.input(0), cx.input(1)
    x, y = agreeing(cx, x, _legacy_broadcast(cx, x, y))
    if x.dtype == y.dtype:
        return cx.op("pow", [x, y])
    if is_int(x.dtype) and is_float(y.dtype):
        # computed in floating point, then converted back to the base's integer type
        return cx.op("cast", [cx.op("pow", [cx.op("cast", [x], to=y.dtype), y])], to=x.dtype)
    return cx.op("pow", [x, cx.op("cast", [y], to=x.dtype)])


@translates("Mod")
def mod(cx):
    a, b = agreeing(cx, cx.input(0), cx.input(1))
    if not cx.attr("fmod", 0) and any(cx.is_symbolic(v) for v in (a, b)) and \
            all(v.is_const or cx.is_symbolic(v) for v in (a, b)):
        try:            # shape arithmetic (padding to whole windows): kept symbolic
            arrays = [cx._tr.symvals[v.uid] if cx.is_symbolic(v) else v.const for v in (a, b)]
            return cx.sym_value(floor_mod(*arrays), a.dtype)
        except SymbolicError:
            pass
    r = cx.op("fmod", [a, b])
    if cx.attr("fmod", 0) or a.dtype == "bool" or a.dtype.startswith("uint"):
        return r
    # integer Mod takes the sign of the divisor (as Python's %): adjust fmod's remainder
    zero = cx.scalar(0, a.dtype)
    fix = cx.op("logical_and", [cx.op("not_equal", [r, zero]),
                                cx.op("not_equal", [cx.op("less", [r, zero]), cx.op("less", [b, zero])])])
    return cx.op("where", [fix, cx.op("add", [r, b]), r])


@translates("Sum", "Mean", "Max", "Min")
def variadic(cx):
    xs = cx.inputs()
    if not xs:
        raise cx.fail("needs at least one input")
    xs = agreeing(cx, *xs)
    core = {"Sum": "add", "Mean": "add", "Max": "maximum", "Min": "minimum"}[cx.op_type]
    out = xs[0]
    for x in xs[1:]:
        out = cx.op(core, [out, x])
    if len(xs) == 1 and cx.op_type != "Mean":
        return out
    if cx.op_type == "Mean":
        out = cx.op("div", [out, cx.scalar(len(xs), out.dtype)])
    return out


@translates("Clip")
def clip(cx):
    x = cx.input(0)
    if cx.opset < 11:
        lo = cx.attr("min", None)
        hi = cx.attr("max", None)
        return cx.op("clip", [x], lo=lo, hi=hi)
    lo_v, hi_v = cx.input(1, required=False), cx.input(2, required=False)
    out = x
    if (lo_v is None or lo_v.is_const) and (hi_v is None or hi_v.is_const):
        lo = None if lo_v is None else _scalar_of(cx, lo_v, "min")
        hi = None if hi_v is None else _scalar_of(cx, hi_v, "max")
        return cx.op("clip", [x], lo=lo, hi=hi)
    # bounds computed at run time: max then min, as Clip defines them
    if lo_v is not None:
        out = cx.op("maximum", [out, lo_v])
    if hi_v is not None:
        out = cx.op("minimum", [out, hi_v])
    return out


def _scalar_of(cx, v, what):
    arr = cx.const_of(v, what)
    if arr.size != 1:
        raise cx.fail(f"{what} must be a scalar, got shape {list(arr.shape)}")
    return arr.reshape(()).item()


@translates("Where")
def where(cx):
    return cx.op("where", agreeing(cx, cx.input(0), cx.input(1), cx.input(2)))


@translates("Cast", "CastLike")
def cast(cx):
    if cx.op_type == "Cast":
        to = onnx_dtype(cx.attr("to"), "Cast target", cx.name, cx.op_type)
    else:
        to = cx.input(1).dtype
    attrs = {}
    if to in SATURABLE:
        attrs["saturate"] = bool(cx.attr("saturate", 1))
    if to == "float8_e8m0fnu":
        attrs["round_mode"] = cx.attr("round_mode", "up")
    return cx.op("cast", [cx.input(0)], to=to, **attrs)


@translates("IsInf")
def isinf(cx):
    x = cx.input(0)
    pos, neg = cx.attr("detect_positive", 1), cx.attr("detect_negative", 1)
    if not is_float(x.dtype):
        raise cx.fail(f"expects a floating-point input, got {x.type}")
    checks = []
    if pos:
        checks.append(cx.op("equal", [x, cx.scalar(np.inf, x.dtype)]))
    if neg:
        checks.append(cx.op("equal", [x, cx.scalar(-np.inf, x.dtype)]))
    if not checks:
        return cx.const(np.zeros(x.shape, dtype=bool))
    return checks[0] if len(checks) == 1 else cx.op("logical_or", checks)


# ---- activations composed from core ops ---------------------------------------------------

def _where_negative(cx, x, neg, pos, inclusive=False):
    """neg where x < 0 (x <= 0 when inclusive), else pos."""
    cond = cx.op("less_equal" if inclusive else "less", [x, cx.scalar(0, x.dtype)])
    return cx.op("where", [cond, neg, pos])


@translates("LeakyRelu")
def leaky_relu(cx):
    x = cx.input(0)
    alpha = cx.scalar(cx.attr("alpha", 0.01), x.dtype)
    return _where_negative(cx, x, cx.op("mul", [x, alpha]), x)


@translates("PRelu")
def prelu(cx):
    x, slope = cx.input(0), cx.input(1)
    if cx.opset < 7 and slope.type.rank == 1 and x.type.rank > 2 and slope.shape[0] == x.shape[1]:
        slope = cx.op("reshape", [slope], shape=(slope.shape[0],) + (1,) * (x.type.rank - 2))
    out = _where_negative(cx, x, cx.op("mul", [x, slope]), x)
    if out.shape != x.shape:
        raise cx.fail(f"slope {slope.type} does not broadcast to X {x.type}")
    return out


@translates("Elu")
def elu(cx):
    x = cx.input(0)
    one = cx.scalar(1, x.dtype)
    em1 = cx.op("sub", [cx.op("exp", [x]), one])
    return _where_negative(cx, x, cx.op("mul", [em1, cx.scalar(cx.attr("alpha", 1.0), x.dtype)]), x)


@translates("Selu")
def selu(cx):
    x = cx.input(0)
    alpha = cx.attr("alpha", 1.67326319217681884765625)
    gamma = cx.attr("gamma", 1.05070102214813232421875)
    neg = cx.op("sub", [cx.op("mul", [cx.op("exp", [x]), cx.scalar(alpha, x.dtype)]), cx.scalar(alpha, x.dtype)])
    y = _where_negative(cx, x, neg, x, inclusive=True)
    return cx.op("mul", [y, cx.scalar(gamma, x.dtype)])


@translates("Celu")
def celu(cx):
    x = cx.input(0)
    alpha = cx.attr("alpha", 1.0)
    a = cx.scalar(alpha, x.dtype)
    e = cx.op("sub", [cx.op("exp", [cx.op("div", [x, a])]), cx.scalar(1, x.dtype)])
    neg = cx.op("minimum", [cx.scalar(0, x.dtype), cx.op("mul", [a, e])])
    return cx.op("add", [cx.op("relu", [x]), neg])


@translates("HardSigmoid")
def hard_sigmoid(cx):
    x = cx.input(0)
    y = cx.op("add", [cx.op("mul", [x, cx.scalar(cx.attr("alpha", 0.2), x.dtype)]),
                      cx.scalar(cx.attr("beta", 0.5), x.dtype)])
    return cx.op("clip", [y], lo=0.0, hi=1.0)


@translates("HardSwish")
def hard_swish(cx):
    x = cx.input(0)
    y = cx.op("add", [cx.op("mul", [x, cx.scalar(1.0 / 6.0, x.dtype)]), cx.scalar(0.5, x.dtype)])
    return cx.op("mul", [x, cx.op("clip", [y], lo=0.0, hi=1.0)])


def _softplus(cx, x):
    # log(1 + exp(x)) = relu(x) + log(1 + exp(-|x|)), which cannot overflow
    t = cx.op("exp", [cx.op("neg", [cx.op("abs", [x])])])
    return cx.op("add", [cx.op("relu", [x]), cx.op("log", [cx.op("add", [t, cx.scalar(1, x.dtype)])])])


@translates("Softplus")
def softplus(cx):
    return _softplus(cx, cx.input(0))


@translates("Softsign")
def softsign(cx):
    x = cx.input(0)
    return cx.op("div", [x, cx.op("add", [cx.op("abs", [x]), cx.scalar(1, x.dtype)])])


@translates("Mish")
def mish(cx):
    x = cx.input(0)
    return cx.op("mul", [x, cx.op("tanh", [_softplus(cx, x)])])


@translates("Swish")
def swish(cx):
    x = cx.input(0)
    alpha = cx.attr("alpha", 1.0)
    z = x if alpha == 1.0 else cx.op("mul", [x, cx.scalar(alpha, x.dtype)])
    return cx.op("mul", [x, cx.op("sigmoid", [z])])


@translates("ThresholdedRelu")
def thresholded_relu(cx):
    x = cx.input(0)
    cond = cx.op("greater", [x, cx.scalar(cx.attr("alpha", 1.0), x.dtype)])
    return cx.op("where", [cond, x, cx.scalar(0, x.dtype)])


@translates("Shrink")
def shrink(cx):
    x = cx.input(0)
    lambd, bias = cx.attr("lambd", 0.5), cx.attr("bias", 0.0)
    zero = cx.scalar(0, x.dtype)
    low = cx.op("where", [cx.op("less", [x, cx.scalar(-lambd, x.dtype)]),
                          cx.op("add", [x, cx.scalar(bias, x.dtype)]), zero])
    return cx.op("where", [cx.op("greater", [x, cx.scalar(lambd, x.dtype)]),
                           cx.op("sub", [x, cx.scalar(bias, x.dtype)]), low])


@translates("Gelu")
def gelu(cx):
    x = cx.input(0)
    half, one = cx.scalar(0.5, x.dtype), cx.scalar(1, x.dtype)
    approx = cx.attr("approximate", "none")
    if approx == "tanh":
        cube = cx.op("mul", [cx.op("mul", [x, x]), x])
        inner = cx.op("add", [x, cx.op("mul", [cube, cx.scalar(0.044715, x.dtype)])])
        t = cx.op("tanh", [cx.op("mul", [inner, cx.scalar(math.sqrt(2.0 / math.pi), x.dtype)])])
    elif approx == "none":
        t = cx.op("erf", [cx.op("mul", [x, cx.scalar(1.0 / math.sqrt(2.0), x.dtype)])])
    else:
        raise cx.fail(f"unknown approximate={approx!r}; expected 'none' or 'tanh'")
    return cx.op("mul", [cx.op("mul", [x, half]), cx.op("add", [one, t])])

"""Elementwise ATen ops: unary math, activations, arithmetic with torch's type promotion,
comparisons, logic and selection."""

from __future__ import annotations

import math

from ...graph.ir import Value
from ...graph.types import is_float
from . import translates

_UNARY = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "exp": "exp", "log": "log", "sqrt": "sqrt",
    "neg": "neg", "abs": "abs", "erf": "erf", "floor": "floor", "ceil": "ceil", "round": "round",
    "sin": "sin", "cos": "cos", "tan": "tan", "reciprocal": "reciprocal", "logical_not": "logical_not",
    "sign": "sign", "isnan": "isnan", "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh",
    "cosh": "cosh", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh",
}


def _unary(core):
    def f(cx, x):
        out = cx.out_dtype()
        x = cx.cast(x, out) if core not in ("logical_not", "isnan") else x
        if core == "logical_not" and x.dtype != "bool":
            x = cx.op("not_equal", [x, cx.scalar(0, x.dtype)])
            return cx.op("logical_not", [x])
        return cx.op(core, [x])
    return f


for _name, _core in _UNARY.items():
    translates(f"aten.{_name}.default")(_unary(_core))


def _float_in(cx, x):
    return cx.cast(x, cx.out_dtype())


@translates("aten.rsqrt.default")
def rsqrt(cx, x):
    return cx.op("reciprocal", [cx.op("sqrt", [_float_in(cx, x)])])


@translates("aten.log1p.default")
def log1p(cx, x):
    x = _float_in(cx, x)
    return cx.op("log", [cx.op("add", [x, cx.scalar(1, x.dtype)])])


@translates("aten.expm1.default")
def expm1(cx, x):
    x = _float_in(cx, x)
    return cx.op("sub", [cx.op("exp", [x]), cx.scalar(1, x.dtype)])


@translates("aten.gelu.default")
def gelu(cx, x, approximate="none"):
    dt = x.dtype
    half = cx.op("mul", [x, cx.scalar(0.5, dt)])
    if approximate == "tanh":
        cube = cx.op("mul", [cx.op("mul", [x, x]), x])
        inner = cx.op("add", [x, cx.op("mul", [cube, cx.scalar(0.044715, dt)])])
        t = cx.op("tanh", [cx.op("mul", [inner, cx.scalar(math.sqrt(2 / math.pi), dt)])])
    else:
        t = cx.op("erf", [cx.op("mul", [x, cx.scalar(1 / math.sqrt(2), dt)])])
    return cx.op("mul", [half, cx.op("add", [t, cx.scalar(1, dt)])])


@translates("aten.silu.default")
def silu(cx, x):
    return cx.op("mul", [x, cx.op("sigmoid", [x])])


@translates("aten.mish.default")
def mish(cx, x):
    sp = softplus(cx, x)
    return cx.op("mul", [x, cx.op("tanh", [sp])])


@translates("aten.softplus.default")
def softplus(cx, x, beta=1, threshold=20):
    dt = x.dtype
    bx = cx.op("mul", [x, cx.scalar(beta, dt)])
    # log(1 + exp(bx)) / beta, and x itself where bx > threshold (torch's rule)
    soft = cx.op("div", [cx.op("log", [cx.op("add", [cx.op("exp", [bx]), cx.scalar(1, dt)])]), cx.scalar(beta, dt)])
    return cx.op("where", [cx.op("greater", [bx, cx.scalar(threshold, dt)]), x, soft])


@translates("aten.hardtanh.default")
def hardtanh(cx, x, min_val=-1.0, max_val=1.0):
    return cx.op("clip", [x], lo=float(min_val), hi=float(max_val))


@translates("aten.hardsigmoid.default")
def hardsigmoid(cx, x):
    dt = x.dtype
    return cx.op("clip", [cx.op("add", [cx.op("div", [x, cx.scalar(6, dt)]), cx.scalar(0.5, dt)])], lo=0.0, hi=1.0)


@translates("aten.hardswish.default")
def hardswish(cx, x):
    dt = x.dtype
    r6 = cx.op("clip", [cx.op("add", [x, cx.scalar(3, dt)])], lo=0.0, hi=6.0)
    return cx.op("div", [cx.op("mul", [x, r6]), cx.scalar(6, dt)])


@translates("aten.leaky_relu.default")
def leaky_relu(cx, x, negative_slope=0.01):
    dt = x.dtype
    return cx.op("where", [cx.op("greater", [x, cx.scalar(0, dt)]), x,
                           cx.op("mul", [x, cx.scalar(negative_slope, dt)])])


@translates("aten.elu.default")
def elu(cx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    dt = x.dtype
    neg = cx.op("mul", [cx.op("sub", [cx.op("exp", [cx.op("mul", [x, cx.scalar(input_scale, dt)])]),
                                      cx.scalar(1, dt)]), cx.scalar(alpha, dt)])
    y = cx.op("where", [cx.op("greater", [x, cx.scalar(0, dt)]), x, neg])
    return y if scale == 1 else cx.op("mul", [y, cx.scalar(scale, dt)])


@translates("aten.clamp.default", "aten.clamp.Tensor", "aten.clip.default")
def clamp(cx, x, min=None, max=None):
    out = cx.out_dtype()
    x = cx.cast(x, out)
    if not isinstance(min, Value) and not isinstance(max, Value) and is_float(out):
        return cx.op("clip", [x], lo=None if min is None else float(min), hi=None if max is None else float(max))
    if min is not None:
        x = cx.op("maximum", [x, cx.tensor(min, out)])
    if max is not None:
        x = cx.op("minimum", [x, cx.tensor(max, out)])
    return x


@translates("aten.clamp_min.default")
def clamp_min(cx, x, m):
    return clamp(cx, x, min=m)


@translates("aten.clamp_max.default")
def clamp_max(cx, x, m):
    return clamp(cx, x, max=m)


# ---- binary arithmetic --------------------------------------------------------------------------

def _operands(cx, a, b, dtype):
    return cx.tensor(a, dtype), cx.tensor(b, dtype)


def _arith(core):
    def f(cx, a, b, alpha=1, rounding_mode=None):
        out = cx.out_dtype()
        a, b = _operands(cx, a, b, out)
        if alpha != 1:
            b = cx.op("mul", [b, cx.scalar(alpha, out)])
        return cx.op(core, [a, b])
    return f


for _name, _core in (("add", "add"), ("sub", "sub"), ("mul", "mul")):
    for _ov in ("Tensor", "Scalar"):
        translates(f"aten.{_name}.{_ov}")(_arith(_core))
for _name, _core in (("maximum", "maximum"), ("minimum", "minimum"), ("fmax", "maximum"), ("fmin", "minimum")):
    translates(f"aten.{_name}.default")(_arith(_core))


@translates("aten.rsub.Scalar", "aten.rsub.Tensor")
def rsub(cx, a, b, alpha=1):
    out = cx.out_dtype()
    a, b = _operands(cx, a, b, out)
    if alpha != 1:
        a = cx.op("mul", [a, cx.scalar(alpha, out)])
    return cx.op("sub", [b, a])


@translates("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode",
            "aten.true_divide.Tensor", "aten.floor_divide.default")
def div(cx, a, b, rounding_mode=None):
    if cx.op_type == "aten.floor_divide.default":
        rounding_mode = "floor"
    out = cx.out_dtype()
    if rounding_mode is None or is_float(out):
        a, b = _operands(cx, a, b, out)
        q = cx.op("div", [a, b])
        if rounding_mode == "trunc":
            q = cx.op("where", [cx.op("less", [q, cx.scalar(0, out)]), cx.op("ceil", [q]), cx.op("floor", [q])])
        elif rounding_mode == "floor":
            q = cx.op("floor", [q])
        return q
    a, b = _operands(cx, a, b, out)
    q = cx.op("div", [a, b])               # integers: truncation toward zero
    if rounding_mode == "floor":
        # one less where the signs differ and the division was not exact
        r = cx.op("sub", [a, cx.op("mul", [q, b])])
        zero = cx.scalar(0, out)
        adjust = cx.op("logical_and", [cx.op("not_equal", [r, zero]),
                                       cx.op("not_equal", [cx.op("less", [a, zero]), cx.op("less", [b, zero])])])
        q = cx.op("sub", [q, cx.op("cast", [adjust], to=out)])
    return q


@translates("aten.remainder.Tensor", "aten.remainder.Scalar")
def remainder(cx, a, b):
    out = cx.out_dtype()
    a, b = _operands(cx, a, b, out)
    r = cx.op("fmod", [a, b])
    zero = cx.scalar(0, out)
    fix = cx.op("logical_and", [cx.op("not_equal", [r, zero]),
                                cx.op("not_equal", [cx.op("less", [r, zero]), cx.op("less", [b, zero])])])
    return cx.op("where", [fix, cx.op("add", [r, b]), r])


@translates("aten.fmod.Tensor", "aten.fmod.Scalar")
def fmod(cx, a, b):
    out = cx.out_dtype()
    a, b = _operands(cx, a, b, out)
    return cx.op("fmod", [a, b])


@translates("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def pow_(cx, a, b):
    out = cx.out_dtype()
    if not isinstance(b, Value) and isinstance(a, Value):
        if b == 1:
            return cx.cast(a, out)
        if b == 2:
            a = cx.cast(a, out)
            return cx.op("mul", [a, a])
        if b == 0.5 and is_float(out):
            return cx.op("sqrt", [cx.cast(a, out)])
    a, b = _operands(cx, a, b, out)
    return cx.op("pow", [a, b])


# ---- comparisons and logic ----------------------------------------------------------------------

def _common_dtype(cx, a, b) -> str:
    """The dtype torch compares ``a`` and ``b`` in (its type promotion)."""
    import torch

    from ..torch import torch_dtype

    ma, mb = cx.arg_meta(0), cx.arg_meta(1)
    try:
        return torch_dtype(torch.result_type(ma, mb), cx.name, cx.op_type)
    except Exception:
        t = a if isinstance(a, Value) else b
        return t.dtype


def _compare(core):
    def f(cx, a, b):
        dt = _common_dtype(cx, a, b)
        a, b = _operands(cx, a, b, dt)
        return cx.op(core, [a, b])
    return f


for _name, _core in (("eq", "equal"), ("ne", "not_equal"), ("lt", "less"), ("le", "less_equal"),
                     ("gt", "greater"), ("ge", "greater_equal")):
    for _ov in ("Tensor", "Scalar"):
        translates(f"aten.{_name}.{_ov}")(_compare(_core))


def _logical(core):
    def f(cx, a, b):
        a, b = (cx.op("not_equal", [v, cx.scalar(0, v.dtype)]) if isinstance(v, Value) and v.dtype != "bool"
                else cx.tensor(v, "bool") for v in (a, b))
        return cx.op(core, [a, b])
    return f


for _name, _core in (("logical_and", "logical_and"), ("logical_or", "logical_or"), ("logical_xor", "logical_xor")):
    translates(f"aten.{_name}.default")(_logical(_core))


def _bitwise(core):
    def f(cx, a, b):
        if cx.out_dtype() != "bool":
            raise cx.unsupported("bitwise ops on integers")
        return cx.op(core, [cx.tensor(a, "bool"), cx.tensor(b, "bool")])
    return f


for _name, _core in (("bitwise_and", "logical_and"), ("bitwise_or", "logical_or"), ("bitwise_xor", "logical_xor")):
    for _ov in ("Tensor", "Scalar"):
        translates(f"aten.{_name}.{_ov}")(_bitwise(_core))


@translates("aten.bitwise_not.default")
def bitwise_not(cx, x):
    if x.dtype != "bool":
        raise cx.unsupported("bitwise ops on integers")
    return cx.op("logical_not", [x])


@translates("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def where(cx, c, a, b):
    out = cx.out_dtype()
    if c.dtype != "bool":
        c = cx.op("not_equal", [c, cx.scalar(0, c.dtype)])
    a, b = _operands(cx, a, b, out)
    return cx.op("where", [c, a, b])


@translates("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(cx, x, mask, value):
    return cx.op("where", [mask, cx.tensor(value, x.dtype), x])


# ---- data movement without arithmetic -----------------------------------------------------------

@translates("aten.clone.default", "aten.alias.default", "aten.detach.default", "aten.lift_fresh_copy.default",
            "aten.contiguous.default", "aten.dropout.default", "aten.native_dropout.default")
def identity(cx, x, *args, **kwargs):
    if cx.op_type == "aten.native_dropout.default":
        raise cx.unsupported("dropout in training mode")
    return x


@translates("aten._to_copy.default", "aten.to.dtype")
def to_copy(cx, x, *args, **kwargs):
    return cx.cast(x, cx.out_dtype())

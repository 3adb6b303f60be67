"""Elementwise and broadcasting ops: unary math, binary arithmetic and comparison, select, clip.

Each op is one row of a table: its name, its numpy reference and its tensor expression.  The
classes below turn rows into registered ops, so adding an elementwise op is adding a row.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import te
from ..tir import intrinsics
from ..graph.types import TensorType, broadcast_shapes, is_float
from .base import Op, Pattern, register, same_dtype


def _round_half_even(x):
    return np.round(x)


def _sign(x):
    s = te.cast(x.dtype, te.gt(x, te.const(0, x.dtype))) - te.cast(x.dtype, te.lt(x, te.const(0, x.dtype)))
    # NaN has no sign: it stays NaN, as in numpy
    return te.select(te.call("isnan", x), x, s) if is_float(x.dtype) else s


# name -> (reference, te expression builder, float-only)
UNARY: dict[str, tuple[Callable, Callable, bool]] = {
    "neg": (np.negative, lambda x: -x, False),
    "abs": (np.abs, lambda x: te.call("abs", x), False),
    "exp": (np.exp, lambda x: te.call("exp", x), True),
    "log": (np.log, lambda x: te.call("log", x), True),
    "sqrt": (np.sqrt, lambda x: te.call("sqrt", x), True),
    "reciprocal": (np.reciprocal, lambda x: te.const(1, x.dtype) / x, True),
    "tanh": (np.tanh, lambda x: te.call("tanh", x), True),
    "sigmoid": (lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype),
                lambda x: te.const(1, x.dtype) / (te.const(1, x.dtype) + te.call("exp", -x)), True),
    "relu": (lambda x: np.maximum(x, 0).astype(x.dtype), lambda x: te.maximum(x, te.const(0, x.dtype)), False),
    "erf": (intrinsics.get("erf").numpy, lambda x: te.call("erf", x), True),
    "floor": (np.floor, lambda x: te.call("floor", x), True),
    "ceil": (np.ceil, lambda x: te.call("ceil", x), True),
    "round": (_round_half_even, lambda x: te.call("nearbyint", x), True),
    "sign": (np.sign, lambda x: _sign(x), False),
    "sin": (np.sin, lambda x: te.call("sin", x), True),
    "cos": (np.cos, lambda x: te.call("cos", x), True),
    "tan": (np.tan, lambda x: te.call("tan", x), True),
    "asin": (np.arcsin, lambda x: te.call("asin", x), True),
    "acos": (np.arccos, lambda x: te.call("acos", x), True),
    "atan": (np.arctan, lambda x: te.call("atan", x), True),
    "sinh": (np.sinh, lambda x: te.call("sinh", x), True),
    "cosh": (np.cosh, lambda x: te.call("cosh", x), True),
    "asinh": (np.arcsinh, lambda x: te.call("asinh", x), True),
    "acosh": (np.arccosh, lambda x: te.call("acosh", x), True),
    "atanh": (np.arctanh, lambda x: te.call("atanh", x), True),
    "logical_not": (np.logical_not, lambda x: te.logical_not(x), False),
    "isnan": (np.isnan, lambda x: te.call("isnan", x), True),
}

_BOOL_RESULT = {"logical_not", "isnan"}


def _int_div(a, b):
    # C semantics, truncation toward zero, in exact integer arithmetic; x / 0 gives x (the
    # generated code does the same rather than trap)
    safe = np.where(b == 0, 1, b).astype(a.dtype)
    with np.errstate(over="ignore"):
        q = np.abs(a) // np.abs(safe) if np.issubdtype(a.dtype, np.signedinteger) else a // safe
        if np.issubdtype(a.dtype, np.signedinteger):
            q = np.where((a < 0) != (safe < 0), -q, q)
    return np.asarray(q).astype(a.dtype)


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return _int_div(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a, b).astype(a.dtype)


def _pow(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.power(a, b).astype(a.dtype)


def _fmod(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmod(a, b).astype(a.dtype)


def _div_expr(a, b):
    if is_float(a.dtype):
        return a / b
    # integer division by zero: the reference's answer (the dividend), never a trap
    return te.select(te.eq(b, te.const(0, b.dtype)), a, a / b)


# name -> (reference, te builder, result is bool)
BINARY: dict[str, tuple[Callable, Callable, bool]] = {
    "add": (np.add, lambda a, b: a + b, False),
    "sub": (np.subtract, lambda a, b: a - b, False),
    "mul": (np.multiply, lambda a, b: a * b, False),
    "div": (_div, lambda a, b: _div_expr(a, b), False),
    "pow": (_pow, lambda a, b: te.call("pow", a, b), False),
    "fmod": (_fmod, lambda a, b: a % b, False),
    "maximum": (np.maximum, te.maximum, False),
    "minimum": (np.minimum, te.minimum, False),
    "equal": (np.equal, te.eq, True),
    "not_equal": (np.not_equal, te.ne, True),
    "less": (np.less, te.lt, True),
    "less_equal": (np.less_equal, te.le, True),
    "greater": (np.greater, te.gt, True),
    "greater_equal": (np.greater_equal, te.ge, True),
    "logical_and": (np.logical_and, te.logical_and, True),
    "logical_or": (np.logical_or, te.logical_or, True),
    "logical_xor": (np.logical_xor, te.ne, True),
}


def broadcast_index(shape: tuple, out_shape: tuple, idx: tuple) -> tuple:
    """Index into an operand of ``shape`` broadcast to ``out_shape`` at output index ``idx``."""
    off = len(out_shape) - len(shape)
    return tuple(0 if (d == 1 and out_shape[off + k] != 1) else idx[off + k] for k, d in enumerate(shape))


class UnaryOp(Op):
    pattern = Pattern.ELEMWISE
    fn: Callable
    expr: Callable
    float_only: bool

    def infer(self, a, x):
        if self.float_only and not is_float(x.dtype):
            raise self.fail(f"expects a floating-point operand, got {x}")
        if self.name == "logical_not" and x.dtype != "bool":
            raise self.fail(f"expects a bool operand, got {x}")
        return TensorType(x.shape, "bool" if self.name in _BOOL_RESULT else x.dtype)

    def reference(self, a, x):
        with np.errstate(all="ignore"):
            out = self.fn(x)
        return np.asarray(out).astype("bool" if self.name in _BOOL_RESULT else x.dtype)

    def compute(self, a, x):
        return te.compute(x.shape, lambda *i: self.expr(x[i]), name=self.name)


class BinaryOp(Op):
    pattern = Pattern.BROADCAST
    num_inputs = 2
    fn: Callable
    expr: Callable
    bool_result: bool

    def infer(self, a, x, y):
        dt = same_dtype(self, x, y)
        if self.name.startswith("logical_") and dt != "bool":
            raise self.fail(f"expects bool operands, got {x} and {y}")
        return TensorType(broadcast_shapes(x.shape, y.shape), "bool" if self.bool_result else dt)

    def reference(self, a, x, y):
        out = self.fn(x, y)
        return np.asarray(out).astype("bool" if self.bool_result else x.dtype)

    def compute(self, a, x, y):
        shape = broadcast_shapes(x.shape, y.shape)
        return te.compute(shape, lambda *i: self.expr(x[broadcast_index(x.shape, shape, i)],
                                                      y[broadcast_index(y.shape, shape, i)]), name=self.name)


for _name, (_fn, _expr, _fo) in UNARY.items():
    register(type(f"Unary_{_name}", (UnaryOp,), {"name": _name, "fn": staticmethod(_fn),
                                                  "expr": staticmethod(_expr), "float_only": _fo}))
for _name, (_fn, _expr, _br) in BINARY.items():
    register(type(f"Binary_{_name}", (BinaryOp,), {"name": _name, "fn": staticmethod(_fn),
                                                    "expr": staticmethod(_expr), "bool_result": _br}))


@register
class Where(Op):
    """where(cond, x, y): x where cond is true, else y (broadcasting)."""

    name = "where"
    pattern = Pattern.BROADCAST
    moves_data = True
    num_inputs = 3

    def infer(self, a, c, x, y):
        if c.dtype != "bool":
            raise self.fail(f"condition must be bool, got {c}")
        dt = same_dtype(self, x, y)
        return TensorType(broadcast_shapes(c.shape, x.shape, y.shape), dt)

    def reference(self, a, c, x, y):
        return np.where(c, x, y).astype(x.dtype)

    def compute(self, a, c, x, y):
        shape = broadcast_shapes(c.shape, x.shape, y.shape)
        return te.compute(shape, lambda *i: te.select(c[broadcast_index(c.shape, shape, i)],
                                                      x[broadcast_index(x.shape, shape, i)],
                                                      y[broadcast_index(y.shape, shape, i)]), name="where")


@register
class Clip(Op):
    """clip(x) to [lo, hi]; either bound may be None (unbounded)."""

    name = "clip"
    pattern = Pattern.ELEMWISE
    attrs = {"lo": None, "hi": None}

    def infer(self, a, x):
        return x

    def reference(self, a, x):
        out = x
        if a["lo"] is not None:
            out = np.maximum(out, np.asarray(a["lo"]).astype(x.dtype))
        if a["hi"] is not None:
            out = np.minimum(out, np.asarray(a["hi"]).astype(x.dtype))
        return out.astype(x.dtype)

    def compute(self, a, x):
        def f(*i):
            v = x[i]
            if a["lo"] is not None:
                v = te.maximum(v, te.const(a["lo"], x.dtype))
            if a["hi"] is not None:
                v = te.minimum(v, te.const(a["hi"], x.dtype))
            return v
        return te.compute(x.shape, f, name="clip")

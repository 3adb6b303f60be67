"""The intrinsics of the loop IR: the functions a :class:`~ember.tir.expr.Call` may name, each
declared once.

An entry gives the intrinsic's name, its arity, the argument dtypes it takes and the dtype of its
result (its type rule), and its meaning as a function of numpy arrays.  Everything else reads
this table:

* ``te.call`` checks a call against its entry (arity, argument dtypes) and takes the result dtype
  from the rule; ``tir.verify`` checks every call of a kernel the same way after each pass;
* the vectorizer (``tir.transform``) asks whether an intrinsic is a dot product of 8-bit operands
  (``dot``), which vector code writes its own way, and takes the calls of float32 and of int32
  intrinsics (``fixed_point_mul``, TFLite's requantization) into vector code;
* each code generator prints an intrinsic from a table of its language keyed by these names
  (``codegen/c_intrinsics`` for C, the ``INTRINSICS`` of ``codegen/lang_*`` for the GPU
  languages) and refuses, naming the intrinsic and the target, one its language lacks;
* the tests' checking interpreter of the loop IR evaluates a call by its ``numpy`` meaning, and a
  test compiles every intrinsic to C and compares it with that meaning.

The numpy meaning is the C semantics where C and numpy differ (integer powers with a negative
exponent, ``isnan`` of an integer); it takes and returns arrays of the argument dtypes (bfloat16
values as float32, which is how generated code computes them).  Adding an intrinsic is adding an
entry here and a printing to each language's table (the test names the languages that lack one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

_INTS = tuple(f"{p}int{b}" for p in ("", "u") for b in (8, 16, 32, 64))

#: argument dtypes each kind of intrinsic takes (all arguments of one call share one dtype but
#: for the ``byte`` kind)
ARG_KINDS = {
    "float": ("float16", "bfloat16", "float32", "float64"),
    "number": ("float16", "bfloat16", "float32", "float64") + _INTS + ("bool",),
    "byte": ("int8", "uint8"),
    "int32": ("int32",),
}


@dataclass(frozen=True)
class Intrinsic:
    """One intrinsic.  ``args``: a key of :data:`ARG_KINDS`; ``result``: ``"same"`` (the
    arguments' dtype) or a dtype; ``numpy``: its meaning on numpy arrays (broadcasting scalars);
    ``dot``: a dot product of four 8-bit pairs (x0..x3, w0..w3), vectorized with the w operands
    in lanes; ``doc``: what it computes, in a line."""

    name: str
    arity: int
    args: str
    result: str
    numpy: Callable
    doc: str
    dot: bool = False

    def result_dtype(self, dtypes: tuple) -> str:
        """The result dtype for arguments of ``dtypes``; a :class:`TypeError` naming the
        intrinsic when their number or dtypes break its rule."""
        if len(dtypes) != self.arity:
            raise TypeError(f"intrinsic {self.name} takes {self.arity} argument(s), got {len(dtypes)}")
        allowed = ARG_KINDS[self.args]
        bad = [d for d in dtypes if d not in allowed]
        if bad:
            raise TypeError(f"intrinsic {self.name} takes {self.args} arguments ({', '.join(allowed)}), "
                            f"got {', '.join(dtypes)}")
        if self.args != "byte" and len(set(dtypes)) > 1:
            raise TypeError(f"intrinsic {self.name} takes arguments of one dtype, got {', '.join(dtypes)}")
        return dtypes[0] if self.result == "same" else self.result


def _erf(x):
    # numpy has no erf; math.erf per element is exact and fast enough for an oracle
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


def _pow(a, b):
    """numpy's power; for integers C's (``ember_ipow``): wrapping, and a negative exponent gives
    1 for a base of 1, +-1 for -1, else 0 (the integer part of the real power); for bools a or not b."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.bool_:
        return a | ~b
    if a.dtype.kind == "f":
        return np.power(a, b)
    with np.errstate(over="ignore"):
        p = np.power(a, np.maximum(b, 0).astype(b.dtype))
    if a.dtype.kind == "u":
        return p
    neg = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 0, 1, -1), 0)).astype(a.dtype)
    return np.where(b < 0, neg, p).astype(a.dtype)


def _abs(x):
    x = np.asarray(x)
    return x if x.dtype == np.bool_ or x.dtype.kind == "u" else np.abs(x)


def _dot4_sat16(x0, x1, x2, x3, w0, w1, w2, w3):
    i = np.int64
    return (np.clip(i(x0) * w0 + i(x1) * w1, -32768, 32767) + np.clip(i(x2) * w2 + i(x3) * w3, -32768, 32767))


def _dot4(x0, x1, x2, x3, w0, w1, w2, w3):
    i = np.int64
    return i(x0) * w0 + i(x1) * w1 + i(x2) * w2 + i(x3) * w3


def _fixed_point_mul(x, m, shift):
    """TFLite's MultiplyByQuantizedMultiplier on int32 arrays, computed in int64: x times
    2**max(shift, 0) saturated to int32, gemmlowp's SaturatingRoundingDoublingHighMul by ``m``
    (the product's high half rounded half away from zero; INT32_MIN squared gives INT32_MAX),
    then divided by 2**max(-shift, 0) rounding half away from zero (RoundingDivideByPOT).  Shifts
    are clamped to [-31, 31]."""
    x, m, s = (np.asarray(v).astype(np.int64) for v in (x, m, shift))
    left, right = np.clip(s, 0, 31), np.clip(-s, 0, 31)
    xs = np.clip(x << left, -(1 << 31), (1 << 31) - 1)
    ab = xs * m
    # (ab + nudge) / 2**31 truncated, nudge = 2**30 for ab >= 0 and 1 - 2**30 below: floor((ab + 2**30) / 2**31)
    h = np.minimum((ab + (1 << 30)) >> 31, (1 << 31) - 1)
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (h < 0)
    return ((h >> right) + ((h & mask) > threshold)).astype(np.int32)


def _unary(name: str, fn: Callable, doc: str) -> Intrinsic:
    return Intrinsic(name, 1, "float", "same", fn, doc)


_ALL = [
    _unary("exp", np.exp, "e to the power x"),
    _unary("log", np.log, "natural logarithm"),
    _unary("sqrt", np.sqrt, "square root"),
    _unary("tanh", np.tanh, "hyperbolic tangent"),
    _unary("erf", _erf, "error function"),
    _unary("floor", np.floor, "round down"),
    _unary("ceil", np.ceil, "round up"),
    _unary("nearbyint", np.rint, "round to the nearest integer, ties to even"),
    _unary("sin", np.sin, "sine"),
    _unary("cos", np.cos, "cosine"),
    _unary("tan", np.tan, "tangent"),
    _unary("asin", np.arcsin, "inverse sine"),
    _unary("acos", np.arccos, "inverse cosine"),
    _unary("atan", np.arctan, "inverse tangent"),
    _unary("sinh", np.sinh, "hyperbolic sine"),
    _unary("cosh", np.cosh, "hyperbolic cosine"),
    _unary("asinh", np.arcsinh, "inverse hyperbolic sine"),
    _unary("acosh", np.arccosh, "inverse hyperbolic cosine"),
    _unary("atanh", np.arctanh, "inverse hyperbolic tangent"),
    Intrinsic("fmod", 2, "float", "same", np.fmod, "remainder of a / b truncated toward zero (C's fmod)"),
    Intrinsic("abs", 1, "number", "same", _abs, "absolute value (integers wrap at the minimum)"),
    Intrinsic("pow", 2, "number", "same", _pow, "a to the power b"),
    Intrinsic("isnan", 1, "number", "bool", np.isnan, "whether x is NaN (never for integers)"),
    Intrinsic("no_contract", 1, "float", "same", lambda x: x,
              "x itself, rounded where it is computed: never fused into a later multiply-add"),
    Intrinsic("dot4_sat16", 8, "byte", "int32", _dot4_sat16,
              "sat16(x0 w0 + x1 w1) + sat16(x2 w2 + x3 w3): x86's 8-bit multiply-add (vpmaddubsw)", dot=True),
    Intrinsic("dot4", 8, "byte", "int32", _dot4, "x0 w0 + x1 w1 + x2 w2 + x3 w3, exactly", dot=True),
    Intrinsic("fixed_point_mul", 3, "int32", "int32", _fixed_point_mul,
              "TFLite's MultiplyByQuantizedMultiplier(x, m, shift) (saturating its left shift), exactly"),
]

#: every intrinsic, by name
INTRINSICS: dict[str, Intrinsic] = {i.name: i for i in _ALL}

#: the 8-bit dot products (vectorized with their w operands in lanes)
DOT_CALLS = tuple(n for n, i in INTRINSICS.items() if i.dot)


def get(name: str) -> Intrinsic:
    """The intrinsic ``name``; a :class:`KeyError` listing the known ones if there is none."""
    try:
        return INTRINSICS[name]
    except KeyError:
        raise KeyError(f"no intrinsic {name!r}; the loop IR has {', '.join(INTRINSICS)}") from None


def result_dtype(name: str, dtypes: tuple) -> str:
    """The dtype of ``name`` applied to arguments of ``dtypes`` (the type rule; a
    :class:`TypeError` when they break it)."""
    try:
        intr = get(name)
    except KeyError as e:
        raise TypeError(e.args[0]) from None
    return intr.result_dtype(tuple(dtypes))

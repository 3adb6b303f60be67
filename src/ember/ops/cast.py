"""Conversion between dtypes: the ``cast`` op.

``cast(x) {to, saturate=False, round_mode="up"}`` converts every element to ``to``.  Between
numpy's types it is numpy's ``astype``.  The other types follow ONNX's Cast, which for them
agrees with ``ml_dtypes`` except where noted:

* **bfloat16** and the **narrow floats** (float8_e4m3fn, float8_e4m3fnuz, float8_e5m2,
  float8_e5m2fnuz, float4_e2m1fn): the value is first rounded to float32 (as ml_dtypes does for
  float64 and integers), then to the target, to nearest even.  Out of range, without
  ``saturate``: infinity for bfloat16 and float8_e5m2, NaN for the float8 types that have no
  infinity; with ``saturate`` (float8 only): the largest finite value of that sign, infinities
  included.  float4_e2m1fn has neither infinity nor NaN: it always saturates, and NaN becomes
  a zero of the opposite sign (what ml_dtypes does).  The ``fnuz`` types have no -0: -0 and
  negative values that round to zero give +0, and their one NaN has the sign bit set.
* **float8_e8m0fnu** (a power of two, 2^-127 .. 2^127, or NaN): the exponent of ``float32(x)``,
  its sign ignored, rounded by ``round_mode``: ``"up"`` rounds any fraction up, ``"down"`` drops
  it, ``"nearest"`` rounds up from half the way (for float32 subnormals, only above half the
  way).  A round up past 2^127 gives NaN, or stays at 2^127 with ``saturate``; infinities and
  NaN give NaN.  This is ONNX's reference (``onnx.numpy_helper.to_float8e8m0``), which differs
  from the table in ONNX's Cast documentation for infinities, zero and tiny values.
* **int4, uint4, int2, uint2**: integers wrap (their low 4 or 2 bits, two's complement); floats
  are truncated toward zero, and NaN, infinities and values whose truncation is outside the
  type's range give 0 (ONNX leaves those undefined; it is what ml_dtypes does since 0.7, and so
  what ONNX's backend tests expect).
* From a narrow type the value is exact in float32 (in int64 for the narrow integers), and the
  conversion goes on from there, as does a conversion from bfloat16 to anything but float32.

The C backend implements the same rules with integer bit manipulation
(:mod:`ember.codegen.c_dtypes`); the tests compare the two exhaustively.
"""

from __future__ import annotations

import numpy as np

from .. import te
from ..graph.types import DTYPES, NARROW_FLOAT_DTYPES, NARROW_INT_DTYPES, TensorType, np_dtype
from .base import Op, Pattern, REQUIRED, register

ROUND_MODES = ("up", "down", "nearest")

#: the float8 types ``saturate`` applies to
SATURABLE = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu"})


@register
class Cast(Op):
    name = "cast"
    pattern = Pattern.ELEMWISE
    moves_data = True
    attrs = {"to": REQUIRED, "saturate": False, "round_mode": "up"}

    def infer(self, a, x):
        if a["to"] not in DTYPES:
            raise self.fail(f"unknown target dtype {a['to']!r}")
        if a["round_mode"] not in ROUND_MODES:
            raise self.fail(f"round_mode must be one of {', '.join(ROUND_MODES)}, got {a['round_mode']!r}")
        return TensorType(x.shape, a["to"])

    def reference(self, a, x):
        with np.errstate(all="ignore"):
            return convert(x, a["to"], bool(a["saturate"]), a["round_mode"])

    def compute(self, a, x):
        sat, mode = bool(a["saturate"]) and a["to"] in SATURABLE, a["round_mode"]
        return te.compute(x.shape, lambda *i: te.cast(a["to"], x[i], saturate=sat, round_mode=mode), name="cast")


def convert(x: np.ndarray, to: str, saturate: bool = False, round_mode: str = "up") -> np.ndarray:
    """``x`` (an array of any IR dtype) converted to IR dtype ``to`` by the rules above."""
    src = str(x.dtype)
    if src == to:
        return x.copy()
    if src in NARROW_INT_DTYPES:
        x = x.astype(np.int64)
    elif src in NARROW_FLOAT_DTYPES or (src == "bfloat16" and to != "float32"):
        x = x.astype(np.float32)
    if to in NARROW_INT_DTYPES:
        return _to_narrow_int(x, to)
    if to == "float8_e8m0fnu":
        return _to_e8m0(x.astype(np.float32), saturate, round_mode)
    if to in NARROW_FLOAT_DTYPES or to == "bfloat16":
        xf = x.astype(np.float32)
        if saturate and to in SATURABLE:
            import ml_dtypes

            top = float(ml_dtypes.finfo(np_dtype(to)).max)
            xf = np.clip(xf, -top, top)           # NaN stays NaN
        return xf.astype(np_dtype(to))
    return x.astype(np_dtype(to))


def _to_narrow_int(x: np.ndarray, to: str) -> np.ndarray:
    bits = 4 if to in ("int4", "uint4") else 2
    if x.dtype.kind == "f":
        lo = 0 if to.startswith("u") else -(1 << (bits - 1))
        t = np.trunc(x.astype(np.float64))
        inside = (t >= lo) & (t < lo + (1 << bits))              # False for NaN
        v = np.where(inside, t, 0).astype(np.int64)
    else:
        v = x.astype(np.int64)
    low = v & ((1 << bits) - 1)
    if not to.startswith("u"):
        low = np.where(low >= 1 << (bits - 1), low - (1 << bits), low)
    return low.astype(np_dtype(to))


def _to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    e = ((u >> 23) & 0xFF).astype(np.int64)
    frac = u & 0x7FFFFF
    if round_mode == "up":
        up = frac != 0
    elif round_mode == "nearest":
        half, rest = (frac & 0x400000) != 0, (frac & 0x3FFFFF) != 0
        up = half & (rest | (e > 0))
    else:
        up = np.zeros(u.shape, bool)
    if saturate:
        up &= e != 0xFE
    out = np.where(e == 0xFF, 0xFF, e + up).astype(np.uint8)
    return out.view(np_dtype("float8_e8m0fnu"))

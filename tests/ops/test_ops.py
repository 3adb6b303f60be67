"""Every core op, compiled for the CPU, against its numpy reference.

``CASES`` maps each op of ``ember.ops.OPS`` to a function that adds its cases to a
:class:`~harness.Batch` (one compile per op).  An op registered without cases fails
``test_every_op_has_cases``; ops that genuinely cannot be compiled yet go in ``SKIP`` with
the reason.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ember.ops import OPS, REQUIRED
from ember.ops.nn import Conv2dPacked

from .harness import Batch, batch_kernels_safe, saturating_host

CASES: dict = {}

#: ops that cannot be compiled yet: name -> reason (keep empty when possible)
SKIP: dict[str, str] = {}

# the host ops have no kernel to compare: their differential tests are tests/ops/test_strings.py
# (hand-computed) and tests/frontend/test_onnx_strings.py (onnx.reference, compiled programs)
SKIP.update({name: "host op: no compiled kernel (see tests/ops/test_strings.py)" for name, op in OPS.items() if op.host})


def cases(*names):
    def deco(fn):
        for n in names:
            assert n not in CASES, n
            CASES[n] = fn
        return fn
    return deco


# ---------------------------------------------------------------------------------------------
# shapes

#: float shapes every unary op sees: scalar, size-1, odd sizes, a zero dim, rank 3, parallel
UNARY_SHAPES = [(), (1,), (7,), (13, 37), (0, 5), (3, 1, 9), (2, 3, 4, 8), (64, 1000)]

#: (lhs, rhs) shapes of binary ops: same, scalar-like, row, column, rank mismatch, both-sides
BINARY_SHAPES = [
    ((7, 13), (7, 13)),
    ((7, 13), (1,)),
    ((1,), (7, 13)),
    ((), (5, 3)),
    ((7, 13), (13,)),
    ((7, 13), (7, 1)),
    ((2, 7, 13), (13,)),
    ((4, 1, 1), (1, 3, 9)),
    ((7, 1), (1, 13)),
    ((3, 1, 5), (4, 1)),
    ((0, 5), (5,)),
    ((1, 16), (16,)),
    ((64, 1000), (1000,)),
    ((64, 1000), (64, 1)),
]

#: input domains of the unary float ops: (low, high) or None for standard normal
DOMAIN = {
    "log": (0.01, 10), "sqrt": (0, 10), "reciprocal": (0.1, 5), "asin": (-0.99, 0.99),
    "acos": (-0.99, 0.99), "acosh": (1.01, 10), "atanh": (-0.95, 0.95), "exp": (-10, 10),
    "tan": (-1.5, 1.5), "sinh": (-5, 5), "cosh": (-5, 5),
}

#: values every float unary op also sees (within its domain, where it has one)
SPECIAL = np.array([0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e-30, -3.7, 3.7, 100.0], dtype=np.float64)
NONFINITE = np.array([np.nan, np.inf, -np.inf, -np.nan], dtype=np.float64)

FLOAT_UNARY = ["exp", "log", "sqrt", "reciprocal", "tanh", "sigmoid", "erf", "floor", "ceil", "round",
               "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
               "isnan"]
SIGNED_UNARY = ["neg", "abs", "relu", "sign"]


def unary_cases(batch: Batch, op: str) -> None:
    dom = DOMAIN.get(op)
    lo, hi = dom if dom else (None, None)
    for shape in UNARY_SHAPES:
        batch.case(f"{op} float32{list(shape)}",
                   lambda c, shape=shape: c.op(op, [c.input(shape, "float32", low=lo, high=hi)]))
    batch.case(f"{op} float64[7, 13]",
               lambda c: c.op(op, [c.input((7, 13), "float64", low=lo, high=hi)]))
    special = SPECIAL
    if dom:
        special = special[(special >= lo) & (special <= hi)]
    special = np.concatenate([special, NONFINITE])
    batch.case(f"{op} special values", lambda c: c.op(op, [c.input(special.shape, "float32", data=special)]))
    batch.case(f"{op} special values float64",
               lambda c: c.op(op, [c.input(special.shape, "float64", data=special)]))
    # long enough for the vector loop and a tail, with the special values inside
    long = np.resize(special, 37)
    batch.case(f"{op} special values [37]", lambda c: c.op(op, [c.input((37,), "float32", data=long)]))


for _op in FLOAT_UNARY + SIGNED_UNARY:
    def _f(batch, op=_op):
        unary_cases(batch, op)
        if op in SIGNED_UNARY:
            for dt in ("int32", "int64"):
                for shape in [(7,), (5, 13), (64, 1000)]:
                    batch.case(f"{op} {dt}{list(shape)}", lambda c, dt=dt, shape=shape: c.op(op, [c.input(shape, dt)]))
    CASES[_op] = _f


@cases("logical_not")
def _logical_not(batch):
    for shape in [(), (1,), (7,), (13, 37), (0, 3), (64, 1000)]:
        batch.case(f"logical_not bool{list(shape)}", lambda c, shape=shape: c.op("logical_not", [c.input(shape, "bool")]))


ARITH = ["add", "sub", "mul", "div", "pow", "fmod", "maximum", "minimum"]
COMPARE = ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]
LOGICAL = ["logical_and", "logical_or", "logical_xor"]


def _binary_inputs(c, op, sa, sb, dt):
    if op == "pow" and dt.startswith("float"):
        return c.input(sa, dt, low=0.1, high=3), c.input(sb, dt, low=-3, high=3)
    if op == "pow":
        return c.input(sa, dt, low=-4, high=5), c.input(sb, dt, low=0, high=6)
    if op in ("div", "fmod") and not dt.startswith("float"):
        # zero divisors included: they must not crash
        return c.input(sa, dt, low=-100, high=100), c.input(sb, dt, low=-7, high=8)
    if op in ("div", "fmod"):
        a, b = c.input(sa, dt), c.input(sb, dt, low=0.5, high=3)
        return a, b
    if op in COMPARE and not dt.startswith("float") and dt != "bool":
        return c.input(sa, dt, low=-3, high=3), c.input(sb, dt, low=-3, high=3)
    if op in COMPARE and dt.startswith("float"):
        # ties
        return (c.input(sa, dt, data=np.round(c.rng.standard_normal(sa) * 2) / 2),
                c.input(sb, dt, data=np.round(c.rng.standard_normal(sb) * 2) / 2))
    return c.input(sa, dt), c.input(sb, dt)


def binary_cases(batch: Batch, op: str) -> None:
    if op in LOGICAL:
        dtypes = ["bool"]
    elif op in COMPARE:
        dtypes = ["float32", "float64", "int32", "int64", "bool"] if op in ("equal", "not_equal") else \
            ["float32", "float64", "int32", "int64"]
    else:
        dtypes = ["float32", "float64", "int32", "int64"]
    for sa, sb in BINARY_SHAPES:
        batch.case(f"{op} {dtypes[0]}{list(sa)},{list(sb)}",
                   lambda c, sa=sa, sb=sb: c.op(op, list(_binary_inputs(c, op, sa, sb, dtypes[0]))))
    for dt in dtypes[1:]:
        for sa, sb in [((7, 13), (13,)), ((37,), (37,)), ((3, 1), (1, 11)), ((64, 1000), (1000,))]:
            batch.case(f"{op} {dt}{list(sa)},{list(sb)}",
                       lambda c, sa=sa, sb=sb, dt=dt: c.op(op, list(_binary_inputs(c, op, sa, sb, dt))))
    if op not in LOGICAL:
        # the narrow and unsigned integers: wrap-around, unsigned division, promotions in C
        for dt in ("int8", "uint8", "int16", "uint16", "uint32", "uint64"):
            batch.case(f"{op} {dt}[37],[37]", lambda c, dt=dt: c.op(op, list(_binary_inputs(c, op, (37,), (37,), dt))))
    if "float32" in dtypes:
        # NaN, infinities and signed zeros on both sides, every pair
        vals = np.array([0.0, -0.0, 1.0, -2.5, np.nan, np.inf, -np.inf, 3.0])
        a = np.repeat(vals, len(vals))
        b = np.tile(vals, len(vals))
        for dt in ("float32", "float64"):
            if dt in dtypes:
                batch.case(f"{op} {dt} special pairs",
                           lambda c, dt=dt: c.op(op, [c.input(a.shape, dt, data=a), c.input(b.shape, dt, data=b)]))


for _op in ARITH + COMPARE + LOGICAL:
    CASES[_op] = lambda batch, op=_op: binary_cases(batch, op)


@cases("where")
def _where(batch):
    shapes = [((7, 13), (7, 13), (7, 13)), ((7, 1), (13,), (7, 13)), ((13,), (7, 13), ()),
              ((2, 1, 5), (3, 1), (1,)), ((0, 4), (4,), (1,)), ((64, 1000), (1000,), (64, 1))]
    for dt in ("float32", "float64", "int32", "int64", "bool"):
        for sc, sx, sy in (shapes if dt == "float32" else shapes[:3]):
            batch.case(f"where {dt} {list(sc)},{list(sx)},{list(sy)}",
                       lambda c, sc=sc, sx=sx, sy=sy, dt=dt: c.op("where", [c.input(sc, "bool"), c.input(sx, dt),
                                                                             c.input(sy, dt)]))


@cases("clip")
def _clip(batch):
    vals = np.concatenate([np.linspace(-3, 3, 29), NONFINITE])
    for lo, hi in [(None, None), (-1.0, None), (None, 0.5), (-0.25, 0.75), (0.0, 6.0)]:
        for dt, shape in [("float32", (7, 13)), ("float32", (64, 1000)), ("float64", (13,))]:
            batch.case(f"clip {dt}{list(shape)} lo={lo} hi={hi}",
                       lambda c, lo=lo, hi=hi, dt=dt, shape=shape: c.op("clip", [c.input(shape, dt)], lo=lo, hi=hi))
        batch.case(f"clip special lo={lo} hi={hi}",
                   lambda c, lo=lo, hi=hi: c.op("clip", [c.input(vals.shape, "float32", data=vals)], lo=lo, hi=hi))
    for dt in ("int32", "int64"):
        batch.case(f"clip {dt}", lambda c, dt=dt: c.op("clip", [c.input((5, 9), dt)], lo=-10, hi=20))
        batch.case(f"clip {dt} lo only", lambda c, dt=dt: c.op("clip", [c.input((5, 9), dt)], lo=3))


CAST_DTYPES = ["float32", "float64", "int32", "int64", "bool", "int8", "uint8", "int16", "uint16", "uint32",
               "uint64", "float16"]


@cases("cast")
def _cast(batch):
    for src, dst in itertools.product(CAST_DTYPES, repeat=2):
        def f(c, src=src, dst=dst):
            if src.startswith("float"):
                # in range of every integer dtype, fractions on both sides of zero, exact zeros
                lo = 0 if dst.startswith("uint") else -100
                data = np.round(c.rng.uniform(lo, 100, 37) * 4) / 4
                data[::5] = 0
                data[1] = -0.0 if lo < 0 else 0.75
                return c.op("cast", [c.input((37,), src, data=data)], to=dst)
            if src.startswith("int") or src.startswith("uint"):
                return c.op("cast", [c.input((37,), src, low=0 if dst.startswith("uint") else -100, high=100)], to=dst)
            return c.op("cast", [c.input((37,), src)], to=dst)
        batch.case(f"cast {src}->{dst}", f)
    # wrap-around of integers that do not fit (two's complement, as numpy does)
    for src, dst in [("int64", "int32"), ("int32", "int8"), ("int64", "uint8"), ("int32", "uint16")]:
        batch.case(f"cast {src}->{dst} wrapping",
                   lambda c, src=src, dst=dst: c.op("cast", [c.input((23,), src, low=-100000, high=100000)], to=dst))
    batch.case("cast float32->int32 [64, 1000]",
               lambda c: c.op("cast", [c.input((64, 1000), "float32", low=-1000, high=1000)], to="int32"))
    batch.case("cast int32->float32 [64, 1000]", lambda c: c.op("cast", [c.input((64, 1000), "int32")], to="float32"))
    batch.case("cast float32->bool NaN", lambda c: c.op("cast", [c.input((4,), "float32", data=NONFINITE)], to="bool"))
    _cast_ml_dtypes(batch)


NARROW_FLOATS = ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn"]
NARROW_INTS = ["int4", "uint4", "int2", "uint2"]


def _codes(dtype: str) -> np.ndarray:
    """Every code of a narrow dtype, one a byte."""
    from ember.graph.types import np_dtype

    n = 4 if dtype in ("int2", "uint2") else 16 if dtype in ("int4", "uint4", "float4_e2m1fn") else 256
    return np.arange(n, dtype=np.uint8).view(np_dtype(dtype))


def _cast_ml_dtypes(batch):
    """bfloat16 and the narrow types: every code out, a spread of values (ties, out of range,
    infinities, NaN) in; exhaustive checks are in tests/codegen/test_c_dtypes.py."""
    vals = np.concatenate([np.linspace(-600, 600, 97), np.linspace(-1, 1, 41) ** 3, [0.0, -0.0, 1e-9, 3e38],
                           [6.5, 7.5, 240.0, 248.0, 464.0, 61440.0, 2 ** -10, 2 ** -130], NONFINITE])
    for dt in NARROW_FLOATS + NARROW_INTS:
        for to in ["float32", "float16", "float64", "bfloat16", "int32", "uint8", "bool"]:
            batch.case(f"cast {dt}->{to}", lambda c, dt=dt, to=to: c.op("cast", [c.input(_codes(dt).shape, dt,
                                                                                        data=_codes(dt))], to=to))
        for src in ["float32", "float16", "float64", "bfloat16"]:
            for sat in ([False, True] if dt.startswith("float8") else [False]):
                modes = ["up", "down", "nearest"] if dt == "float8_e8m0fnu" else ["up"]
                for mode in modes:
                    batch.case(f"cast {src}->{dt} saturate={sat} {mode}",
                               lambda c, dt=dt, src=src, sat=sat, mode=mode: c.op(
                                   "cast", [c.input(vals.shape, src, data=vals)], to=dt, saturate=sat,
                                   round_mode=mode))
        batch.case(f"cast int32->{dt}", lambda c, dt=dt: c.op("cast", [c.input((41,), "int32", low=-1000, high=1000)],
                                                             to=dt))
    for a, b in [("float8_e4m3fn", "float8_e5m2"), ("float8_e5m2", "float8_e4m3fnuz"), ("int4", "float4_e2m1fn"),
                 ("uint4", "int2"), ("float8_e8m0fnu", "float8_e5m2fnuz"), ("float4_e2m1fn", "int4")]:
        batch.case(f"cast {a}->{b}", lambda c, a=a, b=b: c.op("cast", [c.input(_codes(a).shape, a, data=_codes(a))],
                                                             to=b, saturate=b.startswith("float8")))
    batch.case("cast float32->bfloat16->float32", lambda c: c.op("cast", [c.op(
        "cast", [c.input(vals.shape, "float32", data=vals)], to="bfloat16")], to="float32"), rtol=0, atol=0)
    batch.case("cast int64->bfloat16", lambda c: c.op("cast", [c.input((23,), "int64", low=-10 ** 9, high=10 ** 9)],
                                                     to="bfloat16"), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# reductions

REDUCE_AXES = [(), (0,), (1,), (2,), (-1,), (0, 2), (1, 2), (0, 1), (0, 1, 2), (2, 0)]


def reduce_cases(batch: Batch, op: str) -> None:
    dtypes = ["float32"] if op == "reduce_mean" else ["float32", "int32", "int64"]
    for axes in REDUCE_AXES:
        for keep in (True, False):
            batch.case(f"{op} [5, 7, 13] axes={axes} keepdims={keep}",
                       lambda c, axes=axes, keep=keep: c.op(op, [c.input((5, 7, 13), low=0.5, high=1.5)
                                                                 if op == "reduce_prod" else c.input((5, 7, 13))],
                                                             axes=axes, keepdims=keep), rtol=1e-5, atol=1e-5)
    for dt in dtypes[1:] + ["float64"]:
        for axes in [(0,), (2,), (0, 2), (0, 1, 2)]:
            batch.case(f"{op} {dt} axes={axes}",
                       lambda c, axes=axes, dt=dt: c.op(op, [c.input((3, 5, 6), dt, low=-2, high=3)
                                                             if op == "reduce_prod" and dt != "float64"
                                                             else c.input((3, 5, 6), dt)], axes=axes, keepdims=False),
                       rtol=1e-5, atol=1e-5)
    for shape, axes in [((1,), (0,)), ((1, 1), (0, 1)), ((37,), (0,)), ((4, 1, 3), (1,)), ((2, 3, 4, 5), (1, 3)),
                        ((64, 1000), (1,)), ((64, 1000), (0,)), ((64, 1000), (0, 1)), ((3, 9, 17, 8), (2, 3))]:
        for keep in (True, False):
            batch.case(f"{op} {list(shape)} axes={axes} keepdims={keep}",
                       lambda c, shape=shape, axes=axes, keep=keep: c.op(
                           op, [c.input(shape, low=0.9, high=1.1) if op == "reduce_prod" else c.input(shape)],
                           axes=axes, keepdims=keep), rtol=1e-4, atol=1e-4)
    if op not in ("reduce_max", "reduce_min"):
        # reducing an empty axis: the identity (or NaN for the mean)
        batch.case(f"{op} empty axis", lambda c: c.op(op, [c.input((3, 0, 2))], axes=(1,), keepdims=True))
        batch.case(f"{op} empty axis, no keepdims", lambda c: c.op(op, [c.input((0, 4))], axes=(0,), keepdims=False))
    batch.case(f"{op} over a kept zero-size dim", lambda c: c.op(op, [c.input((0, 4))], axes=(1,), keepdims=True))
    if op in ("reduce_max", "reduce_min", "reduce_sum", "reduce_mean"):
        # NaN propagates, infinities reduce
        data = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -1.0], [-np.inf, -2.0, 5.0], [4.0, 5.0, 6.0]])
        batch.case(f"{op} NaN and inf", lambda c: c.op(op, [c.input((4, 3), data=data)], axes=(1,), keepdims=False))


for _op in ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_mean"]:
    CASES[_op] = lambda batch, op=_op: reduce_cases(batch, op)


def arg_cases(batch: Batch, op: str) -> None:
    for axis in (0, 1, 2, -1):
        for keep in (True, False):
            for last in (False, True):
                # small integers: many ties
                batch.case(f"{op} ties axis={axis} keepdims={keep} last={last}",
                           lambda c, axis=axis, keep=keep, last=last: c.op(
                               op, [c.input((4, 5, 6), "int32", low=0, high=3)], axis=axis, keepdims=keep,
                               select_last_index=last))
                batch.case(f"{op} float axis={axis} keepdims={keep} last={last}",
                           lambda c, axis=axis, keep=keep, last=last: c.op(
                               op, [c.input((4, 5, 6), "float32", data=np.round(c.rng.standard_normal((4, 5, 6))))],
                               axis=axis, keepdims=keep, select_last_index=last))
    for shape, axis in [((1,), 0), ((37,), 0), ((64, 1000), 1), ((64, 1000), 0), ((3, 1, 4), 1), ((2, 0, 3), 2)]:
        batch.case(f"{op} {list(shape)} axis={axis}",
                   lambda c, shape=shape, axis=axis: c.op(op, [c.input(shape)], axis=axis, keepdims=False))
    for dt in ("float64", "int64", "int32"):
        batch.case(f"{op} {dt}", lambda c, dt=dt: c.op(op, [c.input((7, 9), dt)], axis=1, keepdims=False))
    # all-equal rows, +-inf, the dtype's extreme values
    batch.case(f"{op} constant rows", lambda c: c.op(op, [c.input((3, 8), data=np.ones((3, 8)))], axis=1))
    batch.case(f"{op} constant rows last", lambda c: c.op(op, [c.input((3, 8), data=np.ones((3, 8)))], axis=1,
                                                          select_last_index=True))
    inf = np.array([[-np.inf, -np.inf, -np.inf], [np.inf, np.inf, 1.0], [0.0, -np.inf, np.inf]])
    batch.case(f"{op} infinities", lambda c: c.op(op, [c.input((3, 3), data=inf)], axis=1))
    nan = np.array([[1.0, np.nan, 3.0, np.nan], [np.nan, 0.0, 5.0, -1.0], [2.0, 7.0, -np.inf, np.inf],
                    [np.nan, np.nan, np.nan, np.nan]])
    for last in (False, True):
        for dt in ("float32", "float64"):
            batch.case(f"{op} NaN {dt} last={last}", lambda c, last=last, dt=dt: c.op(
                op, [c.input((4, 4), dt, data=nan)], axis=1, select_last_index=last))
            batch.case(f"{op} NaN {dt} axis 0 last={last}", lambda c, last=last, dt=dt: c.op(
                op, [c.input((4, 4), dt, data=nan)], axis=0, select_last_index=last))
    ext = np.array([[np.iinfo(np.int32).min] * 3, [np.iinfo(np.int32).max] * 3, [0, np.iinfo(np.int32).min, 0]])
    batch.case(f"{op} int32 extremes", lambda c: c.op(op, [c.input((3, 3), "int32", data=ext)], axis=1))
    batch.case(f"{op} int32 extremes last",
               lambda c: c.op(op, [c.input((3, 3), "int32", data=ext)], axis=1, select_last_index=True))


for _op in ["argmax", "argmin"]:
    CASES[_op] = lambda batch, op=_op: arg_cases(batch, op)


# ---------------------------------------------------------------------------------------------
# data movement

@cases("reshape")
def _reshape(batch):
    for src, dst in [((6, 4), (24,)), ((24,), (2, 3, 4)), ((2, 3, 4), (4, 3, 2)), ((2, 3, 4), (6, 1, 4)),
                     ((1,), ()), ((), (1, 1)), ((7, 13), (13, 7)), ((0, 3), (3, 0)), ((5, 1, 7), (35,)),
                     ((64, 1000), (1000, 64)), ((64, 1000), (8, 8, 10, 100))]:
        for dt in ("float32", "int64", "bool"):
            if dt != "float32" and src != (2, 3, 4):
                continue
            batch.case(f"reshape {dt}{list(src)}->{list(dst)}",
                       lambda c, src=src, dst=dst, dt=dt: c.op("reshape", [c.input(src, dt)], shape=dst))


@cases("transpose")
def _transpose(batch):
    for shape, perms in [((7, 13), [(1, 0), (0, 1)]), ((2, 3, 5), list(itertools.permutations(range(3)))),
                         ((2, 3, 4, 5), [(0, 2, 3, 1), (0, 3, 1, 2), (3, 2, 1, 0), (1, 0, 3, 2)]),
                         ((1, 9, 1), [(2, 0, 1)]), ((0, 3), [(1, 0)]), ((64, 1000), [(1, 0)]),
                         ((17, 8, 33), [(2, 1, 0), (1, 2, 0)])]:
        for perm in perms:
            batch.case(f"transpose {list(shape)} perm={perm}",
                       lambda c, shape=shape, perm=perm: c.op("transpose", [c.input(shape)], perm=perm))
    for dt in ("int32", "float64", "bool", "int64"):
        batch.case(f"transpose {dt}", lambda c, dt=dt: c.op("transpose", [c.input((3, 4, 5), dt)], perm=(2, 0, 1)))


@cases("slice")
def _slice(batch):
    specs = [
        ((10,), (0,), (10,), (1,)),
        ((10,), (2,), (9,), (3,)),
        ((10,), (9,), (-1,), (-1,)),       # full reverse
        ((10,), (8,), (1,), (-2,)),
        ((10,), (5,), (5,), (1,)),         # empty
        ((10,), (10,), (10,), (1,)),       # empty at the end
        ((10,), (3,), (-1,), (-4,)),
        ((7, 13), (1, 2), (6, 13), (1, 4)),
        ((7, 13), (6, 12), (-1, -1), (-1, -1)),
        ((7, 13), (6, 0), (0, 13), (-2, 5)),
        ((4, 5, 6), (0, 4, 1), (4, -1, 6), (1, -2, 2)),
        ((1, 5), (0, 0), (1, 5), (1, 1)),
        ((64, 1000), (3, 999), (64, -1), (1, -3)),
        ((64, 1000), (0, 5), (64, 1000), (2, 1)),
        ((10,), (0,), (10,), (20,)),        # a step beyond the axis: one element
        ((10,), (9,), (-1,), (-20,)),
        ((3, 1), (2, 0), (-1, 1), (-1, 1)),
    ]
    for shape, st, en, sp in specs:
        batch.case(f"slice {list(shape)} {st}:{en}:{sp}",
                   lambda c, shape=shape, st=st, en=en, sp=sp: c.op("slice", [c.input(shape)], starts=st, ends=en,
                                                                   steps=sp))
    for dt in ("int64", "bool", "float64"):
        batch.case(f"slice {dt}", lambda c, dt=dt: c.op("slice", [c.input((9, 4), dt)], starts=(8, 1), ends=(-1, 4),
                                                        steps=(-3, 2)))


@cases("concat")
def _concat(batch):
    for shapes, axis in [([(2, 3), (4, 3), (1, 3)], 0), ([(2, 3), (2, 5), (2, 1)], 1), ([(2, 3), (2, 5), (2, 1)], -1),
                         ([(3, 4, 5), (3, 2, 5), (3, 7, 5)], 1), ([(3, 4, 5), (3, 4, 1), (3, 4, 13)], 2),
                         ([(2, 3), (0, 3), (1, 3)], 0), ([(7,)], 0), ([(5,), (5,)], 0),
                         ([(64, 500), (64, 500)], 1), ([(1, 9), (1, 9), (1, 9), (1, 9)], 0),
                         ([(0, 3), (0, 3)], 0)]:
        batch.case(f"concat {shapes} axis={axis}",
                   lambda c, shapes=shapes, axis=axis: c.op("concat", [c.input(s) for s in shapes], axis=axis))
    for dt in ("int32", "bool", "float64"):
        batch.case(f"concat {dt}", lambda c, dt=dt: c.op("concat", [c.input((2, 3), dt), c.input((2, 4), dt),
                                                                    c.input((2, 1), dt)], axis=1))
    batch.case("concat same input twice", lambda c: (lambda x: c.op("concat", [x, x, x], axis=0))(c.input((3, 5))))


@cases("pad")
def _pad(batch):
    specs = [
        ((5,), (2, 3)),
        ((7, 13), (1, 2, 3, 4)),
        ((7, 13), (0, 0, 0, 0)),
        ((7, 13), (-1, 2, 0, -3)),
        ((3, 4, 5), (0, 1, 2, 1, 0, 2)),
        ((2, 3, 4, 5), (0, 0, 1, 1, 0, 0, 1, 1)),
        ((1, 1), (2, 2, 2, 2)),
        ((64, 1000), (0, 3, 0, 5)),
    ]
    for shape, pads in specs:
        for mode in ("constant", "reflect", "edge", "wrap"):
            if mode == "reflect" and any(p >= d for p, d in zip(pads, shape + shape)):
                continue        # numpy reflects at most dim - 1 elements
            if mode != "constant" and shape == (1, 1) and mode == "reflect":
                continue
            batch.case(f"pad {list(shape)} {pads} {mode}",
                       lambda c, shape=shape, pads=pads, mode=mode: c.op("pad", [c.input(shape)], pads=pads, mode=mode,
                                                                         value=1.5))
    for dt in ("int32", "int64", "bool", "float64"):
        batch.case(f"pad {dt}", lambda c, dt=dt: c.op("pad", [c.input((3, 4), dt)], pads=(1, 0, 2, 3), value=1))
    batch.case("pad wrap wider than the dim", lambda c: c.op("pad", [c.input((3, 4))], pads=(4, 5, 7, 9), mode="wrap"))
    batch.case("pad edge wider than the dim", lambda c: c.op("pad", [c.input((3, 4))], pads=(4, 5, 7, 9), mode="edge"))


@cases("broadcast_to")
def _broadcast_to(batch):
    for src, dst in [((1,), (7,)), ((3, 1), (3, 5)), ((5,), (4, 5)), ((), (2, 3)), ((1, 1, 1), (2, 3, 4)),
                     ((4, 1, 6), (2, 4, 7, 6)), ((3,), (3,)), ((1000,), (64, 1000)), ((0,), (3, 0))]:
        batch.case(f"broadcast_to {list(src)}->{list(dst)}",
                   lambda c, src=src, dst=dst: c.op("broadcast_to", [c.input(src)], shape=dst))
    batch.case("broadcast_to int64", lambda c: c.op("broadcast_to", [c.input((3, 1), "int64")], shape=(3, 4)))


@cases("gather")
def _gather(batch):
    for shape, ishape, axis in [((10,), (4,), 0), ((10,), (), 0), ((5, 7), (3,), 0), ((5, 7), (3,), 1),
                                ((5, 7), (2, 4), 1), ((4, 5, 6), (3, 2), -2), ((4, 5, 6), (9,), 2),
                                ((1000, 64), (37,), 0), ((5, 7), (0,), 0)]:
        for idt in ("int64", "int32"):
            n = shape[axis]
            batch.case(f"gather {list(shape)} idx {idt}{list(ishape)} axis={axis}",
                       lambda c, shape=shape, ishape=ishape, axis=axis, idt=idt, n=n:
                       c.op("gather", [c.input(shape), c.input(ishape, idt, low=-n, high=n)], axis=axis))
    batch.case("gather int32 data", lambda c: c.op("gather", [c.input((6, 3), "int32"),
                                                              c.input((4,), "int64", data=[-6, 5, 0, -1])]))


@cases("check_index")
def _check_index(batch):
    for ishape, dims in [((6,), (5,)), ((3, 4), (7,)), ((4, 2), (3, 5)), ((2, 3, 3), (2, 4, 6)), ((0,), (3,))]:
        for idt in ("int64", "int32"):
            n = min(dims)
            batch.case(f"check_index {idt}{list(ishape)} dims={list(dims)}",
                       lambda c, ishape=ishape, dims=dims, idt=idt, n=n:
                       c.op("check_index", [c.input(ishape, idt, low=-n, high=n)], dims=dims,
                            what=tuple(f"axis {k}" for k in range(len(dims)))))


@cases("check_present")
def _check_present(batch):
    # (an absent value, the error of the run, in tests/runtime/test_optional_inputs.py)
    batch.case("check_present true", lambda c: c.op("check_present", [c.input((), "bool", data=[True])],
                                                    what="the optional 'x'"))


@cases("arange")
def _arange(batch):
    # static lengths here; symbolic lengths and starts in tests/te/test_symbolic_kernels.py
    for length, start, delta, dtype in [(7, 0, 1, "int64"), (13, -5, 3, "int32"), (1, 4, 0, "int64"),
                                        (0, 0, 1, "int64"), (1000, 2, -1, "int64"), (9, 0.5, 0.25, "float32"),
                                        (40, -1.0, 0.1, "float64")]:
        batch.case(f"arange {length} from {start} by {delta} {dtype}",
                   lambda c, length=length, start=start, delta=delta, dtype=dtype:
                   c.op("arange", [], length=length, start=start, delta=delta, dtype=dtype))


    for start, delta, dtype in [(3, 2, "int64"), (-4, -3, "int32"), (0.5, 0.25, "float32")]:
        batch.case(f"arange 11 from a run-time {start} by {delta} {dtype}",
                   lambda c, start=start, delta=delta, dtype=dtype:
                   c.op("arange", [c.input((), dtype, data=start), c.input((), dtype, data=delta)], length=11,
                        dtype=dtype))


def _body(text: str):
    from ember.graph.text import parse_graph
    return parse_graph(text)


@cases("if")
def _if(batch):
    # both branches of one region op, each taken by the condition the run feeds
    for shape in [(4,), (13, 37)]:
        dims = ", ".join(map(str, shape))
        then_b = _body(f"graph t(%a: float32[{dims}]) {{\n  %two = const float32[] 2.0\n"
                       f"  %r = mul(%a, %two)\n  return %r\n}}")
        else_b = _body(f"graph e(%a: float32[{dims}]) {{\n  %r = neg(%a)\n  %s = exp(%r)\n  return %s\n}}")
        for cond in (True, False):
            batch.case(f"if {cond} float32{list(shape)}",
                       lambda c, shape=shape, cond=cond, t=then_b, e=else_b: c.op(
                           "if", [c.input((), "bool", data=cond), c.input(shape, "float32")],
                           then_branch=t, else_branch=e))


@cases("loop")
def _loop(batch):
    # a run-time trip count, a condition computed in the body (stops early), a carried value
    body = _body("""graph b(%i: int64[], %k: bool[], %acc: float32[7], %x: float32[7]) {
  %r = add(%acc, %x)
  %fi = cast(%i) {to="float32"}
  %s = add(%r, %fi)
  %lim = const float32[] 40.0
  %tot = reduce_sum(%s) {axes=[0], keepdims=false}
  %go = less(%tot, %lim)
  return %go, %s
}""")
    for trips in (0, 1, 3, 50):
        batch.case(f"loop M={trips}", lambda c, m=trips: c.op(
            "loop", [c.input((), "int64", data=m), c.input((), "bool", data=True),
                     c.input((7,), "float32", low=0, high=1), c.input((7,), "float32", low=0, high=1)],
            body=body, num_carried=1))


@cases("bind_dims")
def _bind_dims(batch):
    # the op itself: its input passed through (binding during a run: tests/frontend/test_onnx_data_shapes.py)
    batch.case("bind_dims [3]", lambda c: c.op("bind_dims", [c.input((3,), "int64", data=[4, 0, 7])],
                                               symbols=("a", "b", "c"), limits=(4, -1, 9)))
    batch.case("bind_dims []", lambda c: c.op("bind_dims", [c.input((), "int64", data=5)], symbols=("n",)))


@cases("reshape_data")
def _reshape_data(batch):
    for src, dst in [((2, 3, 4), (4, 6)), ((24,), (2, 3, 2, 2)), ((5, 1), (5,)), ((0, 3), (3, 0))]:
        batch.case(f"reshape_data {list(src)}->{list(dst)}",
                   lambda c, src=src, dst=dst: c.op("reshape_data", [c.input(src), c.input((len(dst),), "int64",
                                                                                             data=list(dst))],
                                                    shape=dst))


# ---------------------------------------------------------------------------------------------
# neural-network ops

def _conv_tol(ci, kh, kw):
    k = ci * kh * kw
    return dict(rtol=1e-4, atol=1e-5 * max(1.0, np.sqrt(k)))


CONV_SPECS = [
    # x shape, (O, Ci, KH, KW), attrs
    ((1, 3, 8, 8), (4, 3, 3, 3), {}),
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(pads=(1, 1, 1, 1))),
    ((2, 3, 9, 11), (5, 3, 3, 3), dict(strides=(2, 2), pads=(1, 1, 1, 1))),
    ((1, 2, 10, 10), (3, 2, 3, 3), dict(dilations=(2, 2), pads=(2, 2, 2, 2))),
    ((1, 4, 7, 9), (6, 2, 3, 3), dict(groups=2, pads=(1, 0, 2, 1))),
    ((1, 8, 12, 12), (8, 1, 3, 3), dict(groups=8, pads=(1, 1, 1, 1))),        # depthwise
    ((1, 16, 13, 21), (16, 1, 3, 3), dict(groups=16, pads=(1, 1, 1, 1))),     # depthwise, wide
    ((1, 8, 16, 16), (8, 1, 3, 3), dict(groups=8, strides=(2, 2), pads=(0, 0, 1, 1))),
    ((1, 3, 7, 7), (5, 3, 1, 1), {}),
    ((1, 3, 7, 9), (5, 3, 2, 4), dict(strides=(1, 3), pads=(0, 2, 1, 0))),
    ((1, 16, 14, 14), (32, 16, 3, 3), dict(pads=(1, 1, 1, 1))),
    ((1, 16, 15, 15), (24, 16, 1, 1), dict()),
    ((1, 8, 5, 5), (16, 8, 5, 5), dict(pads=(2, 2, 2, 2))),
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((0, 3, 8, 8), (4, 3, 3, 3), dict(pads=(1, 1, 1, 1))),                   # empty batch
    ((3, 6, 9, 9), (8, 3, 3, 3), dict(groups=2, strides=(2, 1), dilations=(1, 2), pads=(2, 1, 0, 3))),
]


@cases("conv2d")
def _conv2d(batch):
    for xs, ws, attrs in CONV_SPECS:
        batch.case(f"conv2d x{list(xs)} w{list(ws)} {attrs}",
                   lambda c, xs=xs, ws=ws, attrs=attrs: c.op("conv2d", [c.input(xs), c.input(ws)], **attrs),
                   **_conv_tol(*ws[1:]))
    batch.case("conv2d float64", lambda c: c.op("conv2d", [c.input((1, 3, 6, 6), "float64"),
                                                          c.input((2, 3, 3, 3), "float64")], pads=(1, 1, 1, 1)))


@cases("conv2d_packed")
def _conv2d_packed(batch):
    for xs, ws, attrs, ob in [((1, 3, 8, 8), (8, 3, 3, 3), dict(pads=(1, 1, 1, 1)), 8),
                              ((1, 16, 14, 14), (32, 16, 3, 3), dict(pads=(1, 1, 1, 1)), 16),
                              ((2, 8, 9, 11), (16, 8, 3, 3), dict(strides=(2, 2)), 8),
                              ((1, 8, 7, 7), (16, 8, 1, 1), {}, 16),
                              ((1, 4, 9, 9), (8, 2, 3, 3), dict(groups=2, pads=(1, 1, 1, 1)), 4),
                              ((1, 8, 10, 10), (12, 8, 3, 3), dict(dilations=(2, 2), pads=(0, 1, 2, 3)), 4),
                              ((1, 8, 6, 6), (8, 8, 3, 3), {}, 8)]:
        def f(c, xs=xs, ws=ws, attrs=attrs, ob=ob):
            w = c.rng.standard_normal(ws).astype(np.float32)
            return c.op("conv2d_packed", [c.input(xs), c.input(Conv2dPacked.pack(w, ob).shape,
                                                               data=Conv2dPacked.pack(w, ob))], **attrs)
        batch.case(f"conv2d_packed x{list(xs)} w{list(ws)} ob={ob} {attrs}", f, **_conv_tol(*ws[1:]))


@cases("matmul")
def _matmul(batch):
    for sa, sb in [((3, 4), (4, 5)), ((1, 1), (1, 1)), ((7, 13), (13, 9)), ((16, 16), (16, 16)), ((5, 8), (8, 24)),
                   ((2, 7, 13), (13, 9)), ((7, 13), (3, 13, 9)), ((2, 1, 5, 6), (3, 6, 4)), ((4, 3, 8), (4, 8, 16)),
                   ((37, 64), (64, 37)), ((64, 128), (128, 64)), ((12, 200), (200, 40)), ((1, 64), (64, 1000)),
                   ((3, 0), (0, 4)), ((0, 5), (5, 3)), ((0, 3, 4), (4, 5)), ((2, 3, 4), (0, 1, 4, 5))]:
        k = sa[-1]
        batch.case(f"matmul {list(sa)}@{list(sb)}", lambda c, sa=sa, sb=sb: c.op("matmul", [c.input(sa), c.input(sb)]),
                   rtol=1e-4, atol=1e-5 * max(1.0, np.sqrt(k)))
    for dt in ("float64", "int32", "int64"):
        batch.case(f"matmul {dt}", lambda c, dt=dt: c.op("matmul", [c.input((3, 5), dt, low=-5, high=5)
                                                                    if dt.startswith("int") else c.input((3, 5), dt),
                                                                    c.input((5, 4), dt, low=-5, high=5)
                                                                    if dt.startswith("int") else c.input((5, 4), dt)]))


@cases("matmul_packed")
def _matmul_packed(batch):
    from ember.ops.nn import MatMulPacked

    for sa, (k, n), nb in [((3, 4), (4, 16), 8), ((7, 13), (13, 16), 16), ((2, 5, 6), (6, 24), 8),
                           ((37, 64), (64, 32), 8), ((64, 128), (128, 64), 16), ((5, 9), (9, 12), 4),
                           ((1, 64), (64, 1000), 8), ((6, 3), (3, 8), 8)]:
        def f(c, sa=sa, k=k, n=n, nb=nb):
            w = MatMulPacked.pack(c.rng.standard_normal((k, n)).astype(np.float32), nb)
            return c.op("matmul_packed", [c.input(sa), c.input(w.shape, data=w)])
        batch.case(f"matmul_packed {list(sa)}@[{k}, {n}] nb={nb}", f, rtol=1e-4, atol=1e-5 * max(1.0, np.sqrt(k)))
    # batched weights: one set of panels per batch index, and broadcast against x's batch dims
    for sa, ws, nb in [((4, 5, 16), (4, 16, 24), 8), ((3, 7, 9), (3, 9, 16), 16), ((2, 3, 6, 8), (3, 8, 12), 8),
                       ((6, 8), (2, 8, 16), 8)]:
        def f(c, sa=sa, ws=ws, nb=nb):
            w = MatMulPacked.pack(c.rng.standard_normal(ws).astype(np.float32), nb)
            return c.op("matmul_packed", [c.input(sa), c.input(w.shape, data=w)], n=ws[-1])
        batch.case(f"matmul_packed batched {list(sa)}@{list(ws)} nb={nb}", f, rtol=1e-4, atol=1e-4)


@cases("conv2d_nchwc")
def _conv2d_nchwc(batch):
    from ember.ops.nn import Conv2dNCHWc, to_blocked_array

    for xs, ws, attrs, cb, ob in [((1, 8, 8, 8), (8, 8, 3, 3), dict(pads=(1, 1, 1, 1)), 8, 8),
                                  ((1, 16, 9, 11), (32, 16, 3, 3), dict(strides=(2, 2), pads=(1, 0, 2, 1)), 8, 16),
                                  ((2, 4, 7, 7), (8, 4, 1, 1), {}, 4, 8),
                                  ((1, 8, 10, 10), (16, 8, 3, 3), dict(dilations=(2, 2), pads=(2, 2, 2, 2)), 4, 8),
                                  ((1, 16, 12, 13), (16, 1, 3, 3), dict(groups=16, pads=(1, 1, 1, 1)), 8, 8),
                                  ((1, 8, 9, 9), (8, 1, 3, 3), dict(groups=8, strides=(2, 2), pads=(0, 0, 1, 1)), 8, 8),
                                  ((1, 8, 5, 6), (8, 8, 3, 3), {}, 8, 8)]:
        def f(c, xs=xs, ws=ws, attrs=attrs, cb=cb, ob=ob):
            x = to_blocked_array(c.rng.standard_normal(xs).astype(np.float32), cb)
            w = Conv2dNCHWc.pack(c.rng.standard_normal(ws).astype(np.float32), cb, ob,
                                 depthwise=attrs.get("groups", 1) > 1)
            return c.op("conv2d_nchwc", [c.input(x.shape, data=x), c.input(w.shape, data=w)], **attrs)
        batch.case(f"conv2d_nchwc x{list(xs)} w{list(ws)} cb={cb} ob={ob} {attrs}", f, **_conv_tol(*ws[1:]))


# ---- quantized ops ---------------------------------------------------------------------------

def _ints(c, shape, dtype, low=None, high=None):
    """Random integers over the dtype's whole range (or [low, high))."""
    info = np.iinfo(dtype)
    lo = info.min if low is None else low
    hi = info.max + 1 if high is None else high
    return c.input(shape, dtype, data=c.rng.integers(lo, hi, shape).astype(dtype))


@cases("quantize")
def _quantize(batch):
    for qdt in ("int8", "uint8", "int16", "uint16"):
        for shape, pshape in [((2, 3, 17), ()), ((4, 3, 2, 9), (3, 1, 1)), ((5, 16), (16,)), ((), ())]:
            def f(c, qdt=qdt, shape=shape, pshape=pshape):
                info = np.iinfo(qdt)
                zp = c.rng.integers(info.min // 2, info.max // 2 + 1, pshape).astype(qdt)
                return c.op("quantize", [c.input(shape, low=-300, high=300), c.input(pshape, low=0.01, high=2.0),
                                         c.const(zp)])
            batch.case(f"quantize to {qdt} {list(shape)} params{list(pshape)}", f)
    # ties round to even, saturation at both ends, infinities, NaN (to the zero point)
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 1e30, -1e30, np.inf, -np.inf, np.nan, 0.0, -0.0,
                  3.4999998, 64.5], np.float32)
    for qdt, zp in (("int8", -3), ("uint8", 128), ("int16", 7)):
        batch.case(f"quantize {qdt} edges", lambda c, qdt=qdt, zp=zp: c.op(
            "quantize", [c.input(x.shape, data=x), c.const(np.float32(1.0)), c.const(np.array(zp, qdt))]))
        batch.case(f"quantize {qdt} edges scaled", lambda c, qdt=qdt, zp=zp: c.op(
            "quantize", [c.input(x.shape, data=x), c.const(np.float32(0.5)), c.const(np.array(zp, qdt))]))


@cases("dequantize")
def _dequantize(batch):
    for qdt in ("int8", "uint8", "int16", "uint16", "int32"):
        for shape, pshape in [((2, 3, 17), ()), ((4, 3, 2, 9), (3, 1, 1)), ((5, 16), (16,))]:
            batch.case(f"dequantize {qdt} {list(shape)} params{list(pshape)}",
                       lambda c, qdt=qdt, shape=shape, pshape=pshape: c.op(
                           "dequantize", [_ints(c, shape, qdt), c.input(pshape, low=0.001, high=0.5),
                                          _ints(c, pshape, qdt, -100 if qdt.startswith("int") else 0, 100)]))
    # a residual addition of two dequantized tensors is rounded as two dequantizes and an add
    batch.case("dequantize + dequantize", lambda c: c.op("add", [
        c.op("dequantize", [_ints(c, (3, 64), "int8"), c.const(np.float32(0.0137)), c.const(np.int8(-5))]),
        c.op("dequantize", [_ints(c, (3, 64), "uint8"), c.const(np.float32(0.0291)), c.const(np.uint8(131))])]),
        rtol=0, atol=0)


@cases("requantize")
def _requantize(batch):
    for qdt in ("int8", "uint8", "int16"):
        for shape, mshape in [((2, 16, 5, 5), ()), ((2, 16, 5, 5), (16, 1, 1)), ((7, 24), (24,))]:
            batch.case(f"requantize to {qdt} {list(shape)} multiplier{list(mshape)}",
                       lambda c, qdt=qdt, shape=shape, mshape=mshape: c.op(
                           "requantize", [_ints(c, shape, "int32", -200000, 200000),
                                          c.input(mshape, low=1e-4, high=2e-3), c.const(np.array(3, qdt))]))
    acc = np.array([1, 3, 5, -1, -3, 255, 257, -257, 2 ** 31 - 1, -2 ** 31, 16777217, -16777219, 0], np.int32)
    batch.case("requantize ties and extremes", lambda c: c.op(
        "requantize", [c.input(acc.shape, "int32", data=acc), c.const(np.float32(0.5)), c.const(np.uint8(10))]))


#: (acc, multiplier, shift) of TFLite's fixed-point multiply that reach its edges: INT32_MIN
#: squared (saturating), ties of both roundings on either sign, left shifts that overflow int32,
#: the largest right shift
_FIXED_POINT_EDGES = [(-2 ** 31, -2 ** 31, 0), (2 ** 31 - 1, 2 ** 31 - 1, 0), (-2 ** 31, 2 ** 31 - 1, 0),
                      (3, 2 ** 30, 0), (-3, 2 ** 30, 0), (6, 2 ** 30, -1), (-6, 2 ** 30, -1), (10, 2 ** 30, -2),
                      (-10, 2 ** 30, -2), (2 ** 20, 2 ** 30, 12), (-(2 ** 20), 2 ** 30, 12), (7, 2 ** 31 - 1, 31),
                      (2 ** 31 - 1, 2 ** 31 - 1, -31), (-2 ** 31, 2 ** 30, -31), (5, 2 ** 30, 40), (5, 2 ** 30, -40)]


@cases("fixed_point_multiply")
def _fixed_point_multiply(batch):
    for shape, pshape in [((2, 16, 5, 5), (1, 16, 1, 1)), ((7, 24), (24,)), ((3, 9, 11), ())]:
        def case(c, shape=shape, pshape=pshape):
            acc = c.rng.integers(-2 ** 31, 2 ** 31, shape) >> c.rng.integers(0, 31, shape)   # of every size
            mult = c.rng.integers(2 ** 30, 2 ** 31, pshape)
            shift = c.rng.integers(-12, 3, pshape)
            return c.op("fixed_point_multiply", [c.input(shape, "int32", data=acc.astype(np.int32)),
                                                 c.const(mult.astype(np.int32)), c.const(shift.astype(np.int32))])
        batch.case(f"fixed_point_multiply {list(shape)} by {list(pshape)}", case)
    edges = np.array(_FIXED_POINT_EDGES * 2, np.int32).T
    batch.case("fixed_point_multiply edges", lambda c: c.op(
        "fixed_point_multiply", [c.input(edges[0].shape, "int32", data=edges[0]),
                                 c.input(edges[1].shape, "int32", data=edges[1]),
                                 c.input(edges[2].shape, "int32", data=edges[2])]))


def test_fixed_point_multiply_reference_is_tflites():
    """The op's reference against gemmlowp's primitives as the TFLite frontend writes them
    (``tflite_fixed_point``, in int64 without saturation), where TFLite's arithmetic is defined:
    shifts in [-31, 30] and x 2**shift within int32."""
    from ember.frontend import tflite_fixed_point as fp
    from ember.ops import OPS

    rng = np.random.default_rng(3)
    n = 200000
    x = rng.integers(-2 ** 31, 2 ** 31, n) >> rng.integers(0, 31, n)
    m = rng.integers(0, 2 ** 31, n)
    s = rng.integers(-31, 8, n)
    edges = np.array(_FIXED_POINT_EDGES, np.int64).T
    x, m, s = (np.concatenate([e, v]) for e, v in zip(edges, (x, m, s)))
    ok = (s <= 30) & (s >= -31) & (np.abs(x * (np.int64(1) << np.maximum(s, 0))) < 2 ** 31)
    x, m, s = x[ok], m[ok], s[ok]
    want = fp.rounding_divide_by_pot(fp.NumpyOps(), fp.srdhm(fp.NumpyOps(), x << np.maximum(s, 0), m),
                                     np.maximum(-s, 0))
    got = OPS["fixed_point_multiply"].reference({}, x.astype(np.int32), m.astype(np.int32), s.astype(np.int32))
    np.testing.assert_array_equal(got, want)


def _saturating_data(c, shape, dtype):
    """8-bit data near the top of the range, where pairs of products leave int16."""
    return _ints(c, shape, dtype, 180, 256) if dtype == "uint8" else _ints(c, shape, dtype, -128, 128)


INT_CONV_SPECS = [
    # x shape, (O, Ci, KH, KW), attrs
    ((1, 16, 5, 5), (16, 16, 3, 3), dict(pads=(1, 1, 1, 1))),
    ((1, 16, 7, 9), (16, 16, 3, 3), dict(strides=(2, 2), pads=(1, 0, 2, 1))),
    ((2, 16, 5, 5), (32, 16, 1, 1), {}),
    ((1, 3, 11, 11), (16, 3, 7, 7), dict(strides=(2, 2), pads=(3, 3, 3, 3))),      # an image's 3 channels
    ((1, 3, 8, 8), (4, 3, 3, 3), dict(pads=(1, 1, 1, 1))),                         # not blocked
    ((1, 8, 10, 10), (16, 8, 3, 3), dict(dilations=(2, 2), pads=(2, 2, 2, 2))),
    ((1, 4, 7, 9), (6, 2, 3, 3), dict(groups=2, pads=(1, 0, 2, 1))),
    ((1, 8, 6, 6), (8, 1, 3, 3), dict(groups=8, pads=(1, 1, 1, 1))),               # depthwise
    ((1, 6, 5, 5), (16, 6, 3, 3), {}),
]


@cases("conv2d_int")
def _conv2d_int(batch):
    batch.target = saturating_host()      # pair saturation is computed on x86 without VNNI
    # every shape with uint8 x int8 saturating products and a constant weight (the layout pass
    # blocks it), a few as a graph input (unblocked), exact, or of other operand types
    combos = [(spec, ("uint8", "int8"), True, True) for spec in INT_CONV_SPECS]
    combos += [(INT_CONV_SPECS[k], dts, sat, const_w) for k, dts, sat, const_w in [
        (0, ("uint8", "int8"), False, True), (2, ("uint8", "int8"), True, False), (0, ("uint8", "int8"), True, False),
        (6, ("uint8", "int8"), True, False), (1, ("int8", "int8"), False, True), (5, ("int8", "int8"), True, True),
        (2, ("uint8", "uint8"), False, True), (7, ("uint8", "uint8"), False, False), (8, ("int8", "uint8"), True, True)]]
    for (xs, ws, attrs), (xdt, wdt), sat, const_w in combos:

        def f(c, xs=xs, ws=ws, attrs=attrs, xdt=xdt, wdt=wdt, sat=sat, const_w=const_w):
            x = _saturating_data(c, xs, xdt) if sat else _ints(c, xs, xdt)
            w = c.rng.integers(np.iinfo(wdt).min, np.iinfo(wdt).max + 1, ws).astype(wdt)
            pad_value = 131 if xdt == "uint8" else -7
            return c.op("conv2d_int", [x, c.const(w) if const_w else c.input(ws, wdt, data=w)],
                        pad_value=pad_value, saturate_pairs=sat, **attrs)
        batch.case(f"conv2d_int {xdt}x{wdt} x{list(xs)} w{list(ws)} sat={sat} const={const_w} {attrs}", f)
    # the saturation happens: pairs of 255 * 127 leave int16
    batch.case("conv2d_int saturates", lambda c: c.op(
        "conv2d_int", [c.input((1, 8, 4, 4), "uint8", data=np.full((1, 8, 4, 4), 255, np.uint8)),
                       c.const(np.full((8, 8, 1, 1), 127, np.int8))], saturate_pairs=True))


@cases("conv2d_int_nchwc")
def _conv2d_int_nchwc(batch):
    from ember.ops.nn import to_blocked_array
    from ember.ops.quant import Conv2dIntNCHWc

    # sat: pairs saturate ("saturate", groups of four), are summed exactly in groups of four
    # ("exact") or one product at a time (False)
    for xs, ws, attrs, cb, ob, sat in [((1, 16, 8, 8), (16, 16, 3, 3), {}, 16, 16, True),
                                       ((1, 16, 9, 11), (32, 16, 3, 3), dict(strides=(2, 2)), 8, 16, True),
                                       ((2, 8, 7, 7), (8, 8, 1, 1), {}, 4, 8, True),
                                       ((1, 3, 11, 11), (16, 3, 7, 7), dict(strides=(2, 2)), 3, 16, True),
                                       ((1, 6, 6, 6), (8, 6, 3, 3), dict(dilations=(2, 1)), 6, 8, True),
                                       ((1, 16, 8, 8), (16, 16, 3, 3), {}, 16, 16, False),
                                       ((1, 8, 6, 6), (16, 8, 1, 1), dict(strides=(2, 2)), 8, 8, False),
                                       ((1, 32, 8, 8), (32, 32, 3, 3), {}, 16, 16, "exact"),
                                       ((1, 16, 9, 11), (32, 16, 3, 3), dict(strides=(2, 2)), 8, 16, "exact"),
                                       ((1, 3, 11, 11), (16, 3, 7, 7), dict(strides=(2, 2)), 3, 16, "exact")]:
        def f(c, xs=xs, ws=ws, attrs=attrs, cb=cb, ob=ob, sat=sat):
            x = to_blocked_array(c.rng.integers(150, 256, xs).astype(np.uint8), cb)
            w = Conv2dIntNCHWc.pack(c.rng.integers(-128, 128, ws).astype(np.int8), cb, ob, bool(sat))
            pairs = {"exact": {"pairs": "exact"}}.get(sat, {})
            return c.op("conv2d_int_nchwc", [c.input(x.shape, "uint8", data=x), c.input(w.shape, "int8", data=w)],
                        kernel=ws[2:], **attrs, **pairs)
        batch.case(f"conv2d_int_nchwc x{list(xs)} w{list(ws)} cb={cb} ob={ob} sat={sat} {attrs}", f)


@cases("conv2d_split_k")
def _conv2d_split_k(batch):
    for xs, ws, attrs, kb in [((1, 40, 6, 6), (8, 40, 1, 1), {}, 16), ((1, 32, 7, 7), (16, 32, 3, 3), dict(pads=(1, 1, 1, 1)), 8),
                              ((2, 24, 9, 9), (8, 24, 1, 1), dict(strides=(2, 2)), 24), ((1, 5, 6, 6), (4, 5, 1, 1), {}, 2)]:
        batch.case(f"conv2d_split_k x{list(xs)} w{list(ws)} k_block={kb} {attrs}",
                   lambda c, xs=xs, ws=ws, attrs=attrs, kb=kb: c.op(
                       "conv2d_split_k", [c.input(xs), c.const(c.rng.standard_normal(ws).astype(np.float32))],
                       k_block=kb, **attrs), **_conv_tol(*ws[1:]))
    batch.case("conv2d_split_k weight input", lambda c: c.op(
        "conv2d_split_k", [c.input((1, 16, 5, 5)), c.input((8, 16, 1, 1))], k_block=8), **_conv_tol(16, 1, 1))


@cases("conv2d_split_k_nchwc")
def _conv2d_split_k_nchwc(batch):
    from ember.ops.nn import Conv2dNCHWc, to_blocked_array

    for xs, ws, attrs, cb, ob, kb in [((1, 48, 6, 6), (16, 48, 1, 1), {}, 16, 16, 32),
                                      ((1, 32, 9, 9), (8, 32, 3, 3), dict(strides=(2, 2)), 8, 8, 16),
                                      ((1, 16, 5, 5), (16, 16, 1, 1), {}, 8, 16, 16)]:
        def f(c, xs=xs, ws=ws, attrs=attrs, cb=cb, ob=ob, kb=kb):
            x = to_blocked_array(c.rng.standard_normal(xs).astype(np.float32), cb)
            w = Conv2dNCHWc.pack(c.rng.standard_normal(ws).astype(np.float32), cb, ob)
            return c.op("conv2d_split_k_nchwc", [c.input(x.shape, data=x), c.input(w.shape, data=w)], k_block=kb,
                        **attrs)
        batch.case(f"conv2d_split_k_nchwc x{list(xs)} w{list(ws)} cb={cb} ob={ob} k_block={kb}", f, **_conv_tol(*ws[1:]))


@cases("matmul_int")
def _matmul_int(batch):
    batch.target = saturating_host()
    for (sa, sb), (adt, bdt), sat in itertools.product(
            [((3, 4), (4, 5)), ((7, 13), (13, 9)), ((2, 7, 13), (13, 16)), ((2, 1, 5, 6), (3, 6, 8)), ((1, 64), (64, 40)),
             ((5, 0), (0, 3))],
            [("uint8", "int8"), ("int8", "int8"), ("uint8", "uint8"), ("int8", "uint8")], (False, True)):
        batch.case(f"matmul_int {adt}x{bdt} {list(sa)}@{list(sb)} sat={sat}",
                   lambda c, sa=sa, sb=sb, adt=adt, bdt=bdt, sat=sat: c.op(
                       "matmul_int", [_saturating_data(c, sa, adt) if sat else _ints(c, sa, adt),
                                      _ints(c, sb, bdt)], saturate_pairs=sat))
    batch.case("matmul_int constant weight", lambda c: c.op(
        "matmul_int", [_saturating_data(c, (2, 48), "uint8"), c.const(c.rng.integers(-128, 128, (48, 24)).astype(np.int8))],
        saturate_pairs=True))
    # constant weights, packed for the 8-bit dot products (passes.pack_int_matmul): odd K, N
    # not a multiple of the panel, a uint8 weight (stored less 128), batch dims
    for (sa, sb), bdt, sat in [(((3, 37), (37, 45)), "int8", True), (((2, 5, 64), (64, 40)), "int8", True),
                               (((4, 37), (37, 45)), "uint8", False), (((1, 6), (6, 3)), "uint8", False),
                               (((2, 3, 9), (1, 9, 20)), "int8", True)]:
        batch.case(f"matmul_int constant {bdt} weight {list(sa)}@{list(sb)} sat={sat}",
                   lambda c, sa=sa, sb=sb, bdt=bdt, sat=sat: c.op(
                       "matmul_int", [_saturating_data(c, sa, "uint8"),
                                      c.const(c.rng.integers(np.iinfo(bdt).min, np.iinfo(bdt).max + 1, sb).astype(bdt))],
                       saturate_pairs=sat))


@cases("matmul_int_packed")
def _matmul_int_packed(batch):
    from ember.ops.quant import MatMulIntPacked

    for sa, (k, n), nb, pairs in [((3, 40), (37, 45), 16, "saturate"), ((2, 5, 64), (64, 40), 8, "saturate"),
                                  ((4, 8), (8, 8), 8, "exact"), ((3, 40), (37, 45), 16, "exact"),
                                  ((1, 2, 12), (9, 33), 32, "exact"), ((3, 40), (37, 45), 16, "split"),
                                  ((2, 2, 8), (8, 70), 32, "split")]:
        def f(c, sa=sa, k=k, n=n, nb=nb, pairs=pairs):
            w = np.zeros((sa[-1], n), np.int8)
            w[:k] = c.rng.integers(-128, 128, (k, n))         # zero weights for the padded reduction
            # split: halves of any size (pairs saturating in each), and halves that add up to w
            w = np.stack([w, c.rng.integers(-128, 128, w.shape)]) if pairs == "split" and nb == 16 else \
                MatMulIntPacked.split(w) if pairs == "split" else w
            wp = MatMulIntPacked.pack(w.astype(np.int8), nb)
            return c.op("matmul_int_packed", [_saturating_data(c, sa, "uint8"), c.input(wp.shape, "int8", data=wp)],
                        n=n, pairs=pairs)
        batch.case(f"matmul_int_packed {list(sa)} k={k} n={n} nb={nb} {pairs}", f)


@cases("winograd_input")
def _winograd_input(batch):
    from ember.ops.nn import to_blocked_array

    for xs, cb, m, pads in [((1, 8, 8, 8), 8, 4, (1, 1, 1, 1)), ((2, 16, 6, 10), 8, 2, (1, 1, 1, 1)),
                            ((1, 16, 7, 5), 16, 2, (0, 1, 1, 0)), ((1, 8, 10, 6), 8, 4, (0, 0, 0, 0))]:
        tiles = xs[0] * ((xs[2] + pads[0] + pads[2] - 2) // m) * ((xs[3] + pads[1] + pads[3] - 2) // m)
        for rows in (0, tiles + 3):           # 0: one row per tile; else zero padding rows
            def f(c, xs=xs, cb=cb, m=m, pads=pads, rows=rows):
                x = to_blocked_array(c.rng.standard_normal(xs).astype(np.float32), cb)
                return c.op("winograd_input", [c.input(x.shape, data=x)], m=m, pads=pads, rows=rows)
            batch.case(f"winograd_input x{list(xs)} cb={cb} m={m} pads={pads} rows={rows}", f, rtol=1e-5, atol=1e-4)


@cases("winograd_output")
def _winograd_output(batch):
    for m, tiles, o, ob, pad in [(4, (1, 2, 2), 8, 8, 0), (2, (2, 3, 5), 32, 16, 0), (4, (1, 1, 3), 16, 8, 2)]:
        def f(c, m=m, tiles=tiles, o=o, ob=ob, pad=pad):
            rows = int(np.prod(tiles)) + pad
            y = c.op("winograd_output", [c.input(((m + 2) ** 2, rows, o))], m=m, tiles=tiles, block=ob)
            return c.op("relu", [y])                          # an epilogue fused into the transform
        batch.case(f"winograd_output m={m} tiles={tiles} O={o} ob={ob} padding rows={pad}", f, rtol=1e-5, atol=1e-4)


POOL_SPECS = [
    ((1, 2, 8, 8), dict(kernel=(2, 2), strides=(2, 2))),
    ((1, 3, 9, 9), dict(kernel=(3, 3), strides=(2, 2))),
    ((1, 3, 9, 9), dict(kernel=(3, 3), strides=(2, 2), ceil_mode=True)),
    ((1, 3, 10, 10), dict(kernel=(3, 3), strides=(2, 2), ceil_mode=True)),
    ((1, 3, 7, 11), dict(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1))),
    ((2, 3, 7, 11), dict(kernel=(3, 2), strides=(2, 3), pads=(1, 0, 1, 1))),
    ((2, 3, 7, 11), dict(kernel=(3, 2), strides=(2, 3), pads=(1, 0, 1, 1), count_include_pad=True)),
    ((1, 4, 12, 12), dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), ceil_mode=True)),
    ((1, 4, 12, 12), dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), ceil_mode=True, count_include_pad=True)),
    ((1, 2, 9, 9), dict(kernel=(2, 2), dilations=(2, 2), strides=(1, 1))),
    ((1, 2, 5, 5), dict(kernel=(5, 5))),                                     # global
    ((1, 1, 1, 1), dict(kernel=(1, 1))),
    ((1, 16, 13, 17), dict(kernel=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1))),
    ((1, 2, 6, 6), dict(kernel=(3, 3), strides=(3, 3), pads=(2, 2, 2, 2), count_include_pad=True)),
]


def pool_cases(batch, op):
    for xs, attrs in POOL_SPECS:
        batch.case(f"{op} x{list(xs)} {attrs}", lambda c, xs=xs, attrs=attrs: c.op(op, [c.input(xs)], **attrs))
    batch.case(f"{op} float64", lambda c: c.op(op, [c.input((1, 2, 7, 7), "float64")], kernel=(3, 3),
                                               pads=(1, 1, 1, 1)))
    if op == "max_pool2d":
        batch.case(f"{op} int32", lambda c: c.op(op, [c.input((1, 2, 7, 7), "int32")], kernel=(3, 3), strides=(2, 2),
                                                 pads=(1, 1, 1, 1)))
        batch.case(f"{op} all negative", lambda c: c.op(op, [c.input((1, 2, 6, 6), low=-9, high=-1)], kernel=(3, 3),
                                                        pads=(1, 1, 1, 1)))


for _op in ["max_pool2d", "avg_pool2d"]:
    CASES[_op] = lambda batch, op=_op: pool_cases(batch, op)


@cases("softmax")
def _softmax(batch):
    for log in (False, True):
        for shape, axis in [((7,), 0), ((4, 13), -1), ((4, 13), 0), ((3, 5, 7), 1), ((3, 5, 7), 0), ((2, 3, 4, 9), 3),
                            ((64, 1000), 1), ((64, 1000), 0), ((1, 1), 1), ((5, 1), 1),
                            # rows with a tail past the vectors (ViT's 197), and a whole number of them
                            ((2, 3, 197), -1), ((3, 21), 1), ((4, 48), -1)]:
            batch.case(f"softmax log={log} {list(shape)} axis={axis}",
                       lambda c, shape=shape, axis=axis, log=log: c.op("softmax", [c.input(shape, low=-20, high=20)],
                                                                       axis=axis, log=log), atol=1e-5)
        batch.case(f"softmax log={log} float64",
                   lambda c, log=log: c.op("softmax", [c.input((3, 7), "float64")], axis=1, log=log))
        batch.case(f"softmax log={log} -inf entries",
                   lambda c, log=log: c.op("softmax", [c.input((2, 4), data=[[0, -np.inf, 1, 2], [-np.inf, 3, 3, 0]])],
                                           axis=1, log=log))
        # a NaN anywhere in a row (in the vectors or in the tail) makes the whole row NaN
        nan_rows = np.arange(3 * 21, dtype=np.float32).reshape(3, 21) / 10
        nan_rows[0, 3], nan_rows[1, 19] = np.nan, np.nan
        batch.case(f"softmax log={log} NaN entries",
                   lambda c, log=log: c.op("softmax", [c.input((3, 21), data=nan_rows)], axis=1, log=log))


@cases("attention")
def _attention(batch):
    # (q, keys transposed, values): ViT's 197-long rows (a tail past the vectors), GPT-2's and
    # BERT's 128, broadcast batch dims, a short row, a width of values that is not whole vectors
    shapes = [((1, 3, 197, 16), (1, 3, 16, 197), (1, 3, 197, 16)),
              ((2, 2, 128, 8), (2, 2, 8, 128), (2, 2, 128, 16)),
              ((3, 5, 8), (1, 8, 21), (3, 21, 8)),
              ((4, 3), (3, 6), (6, 5)),
              ((2, 7, 4), (2, 4, 7), (2, 7, 12)),
              # no batch dims; one pair of heads and whole row tiles (run in parallel)
              ((20, 8), (8, 20), (20, 16)), ((1, 2, 12, 8), (1, 2, 8, 12), (1, 2, 12, 16)),
              # head widths of MobileViT (36, 60) and others that are not whole pairs of vectors:
              # column tiles with a tail of part of a vector or of one whole vector
              ((2, 2, 13, 36), (2, 2, 36, 13), (2, 2, 13, 36)), ((2, 19, 8), (2, 8, 19), (2, 19, 40)),
              ((1, 4, 16, 60), (1, 4, 60, 16), (1, 4, 16, 60))]
    for qs, ks, vs in shapes:
        batch.case(f"attention q{list(qs)} kt{list(ks)} v{list(vs)}",
                   lambda c, qs=qs, ks=ks, vs=vs: c.op("attention", [c.input(qs), c.input(ks), c.input(vs)], scale=0.3),
                   rtol=1e-4, atol=1e-5)
    batch.case("attention plus a broadcast bias (BERT's padding mask)",
               lambda c: c.op("attention", [c.input((2, 3, 9, 8)), c.input((2, 3, 8, 9)), c.input((2, 3, 9, 8)),
                                            c.input((2, 1, 1, 9), low=-10, high=0)], mask="add"), rtol=1e-4, atol=1e-5)
    causal = np.triu(np.ones((11, 11), bool), 1)
    for when in (True, False):
        batch.case(f"attention with a causal fill (fill_when={when})",
                   lambda c, when=when: c.op("attention", [c.input((2, 11, 8)), c.input((2, 8, 11)), c.input((2, 11, 16)),
                                                           c.const(causal if when else ~causal)],
                                             scale=0.35, mask="fill", fill=-3.4028234663852886e38, fill_when=when),
                   rtol=1e-4, atol=1e-5)
    # keys transposed with zero columns past the 20 in use (what the fusion pass makes)
    batch.case("attention with padded keys",
               lambda c: c.op("attention", [c.input((2, 20, 8)),
                                            c.input((2, 8, 32), data=np.pad(np.random.default_rng(3).standard_normal(
                                                (2, 8, 20)), ((0, 0), (0, 0), (0, 12)))),
                                            c.input((2, 20, 16))], scale=0.5, keys=20), rtol=1e-4, atol=1e-5)
    batch.case("attention float64", lambda c: c.op("attention", [c.input((2, 5, 4), "float64"), c.input((2, 4, 6), "float64"),
                                                                 c.input((2, 6, 8), "float64")], scale=0.5),
               rtol=1e-9, atol=1e-10)


@cases("layer_norm")
def _layer_norm(batch):
    for shape, axis, pshape in [((4, 13), -1, (13,)), ((2, 3, 8), -1, (8,)), ((2, 3, 8), 1, (3, 8)),
                                ((2, 5, 6), -2, (1, 6)), ((64, 1000), 1, (1000,)), ((3, 1), -1, (1,)),
                                ((4, 7), 1, ())]:
        batch.case(f"layer_norm {list(shape)} axis={axis} params{list(pshape)}",
                   lambda c, shape=shape, axis=axis, pshape=pshape: c.op(
                       "layer_norm", [c.input(shape, low=-3, high=5), c.input(pshape), c.input(pshape)], axis=axis,
                       epsilon=1e-3), rtol=1e-4, atol=1e-5)
    batch.case("layer_norm float64", lambda c: c.op("layer_norm", [c.input((3, 10), "float64"), c.input((10,), "float64"),
                                                                   c.input((10,), "float64")]),
               rtol=1e-9, atol=1e-10)


@cases("batch_norm")
def _batch_norm(batch):
    for shape in [(2, 3), (1, 4, 5, 5), (2, 3, 7), (1, 16, 13, 13), (2, 1, 3, 3)]:
        ch = shape[1]

        def f(c, shape=shape, ch=ch):
            return c.op("batch_norm", [c.input(shape), c.input((ch,)), c.input((ch,)), c.input((ch,)),
                                       c.input((ch,), low=0.1, high=2.0)], epsilon=1e-3)
        batch.case(f"batch_norm {list(shape)}", f, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the tests

SLOW = {"conv2d", "conv2d_packed", "conv2d_nchwc", "matmul", "matmul_packed", "cast", "avg_pool2d", "max_pool2d",
        "conv2d_int", "matmul_int", "matmul_int_packed", "winograd_input", "winograd_output"}


def test_every_op_has_cases():
    missing = sorted(set(OPS) - set(CASES) - set(SKIP))
    assert not missing, f"ops without differential tests: {missing} (add cases to tests/ops/test_ops.py)"
    stale = sorted((set(CASES) | set(SKIP)) - set(OPS))
    assert not stale, f"cases for ops that are not registered: {stale}"


@pytest.mark.parametrize("op", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(OPS)])
def test_op(op):
    if op in SKIP:
        pytest.skip(SKIP[op])
    if op not in CASES:
        pytest.fail(f"op {op} has no cases")
    batch = Batch(f"op_{op}", seed=0)
    CASES[op](batch)
    batch.check()


#: ops that graph passes rewrite into other ops at the default opt level (lower_batch_norm):
#: their own compute only runs without the passes
REWRITTEN_BY_PASSES = ["batch_norm"]


#: ops whose generated code has paths for one vector width (AVX2 intrinsics at 8 lanes: round,
#: NaN-propagating max, 8-bit widening and narrowing, the 8-bit multiply-add) or register tiles
#: sized by it: compiled again at every narrower width than this machine's
LANE_SENSITIVE = ["round", "maximum", "max_pool2d", "quantize", "dequantize", "requantize", "fixed_point_multiply",
                  "conv2d_nchwc",
                  "conv2d_int_nchwc", "matmul_packed", "matmul_int", "matmul_int_packed", "attention", "softmax", "layer_norm", "erf"]


@pytest.mark.parametrize("lanes", [4, 8])
@pytest.mark.parametrize("op", LANE_SENSITIVE)
def test_op_at_narrower_vectors(op, lanes):
    from ember.target import host

    if lanes >= host().lanes:
        pytest.skip(f"this machine's vectors have {host().lanes} lanes")
    batch = Batch(f"op_{op}_l{lanes}", seed=0)
    CASES[op](batch)
    batch.target = (batch.target or host()).with_knobs({"vector.lanes": lanes})
    batch.check()


@pytest.mark.parametrize("op", REWRITTEN_BY_PASSES)
def test_op_without_passes(op):
    batch = Batch(f"op0_{op}", seed=0, opt_level=0)
    CASES[op](batch)
    batch.check()


@pytest.mark.parametrize("op", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CASES)])
def test_kernels_memory_safe(op):
    """Every kernel of the op's cases, interpreted: no out-of-bounds access (even with
    garbage indices), no uninitialized read, no data race, every output element written."""
    batch = Batch(f"op_{op}", seed=0)
    CASES[op](batch)
    batch_kernels_safe(batch)


def test_gather_with_bad_indices_is_an_error():
    """Indices out of [-n, n) at run time (the reference rejects them) are an error of the run,
    as in onnxruntime, whichever element holds them; in range, the same module is right."""
    import ember
    from ember.errors import IndexOutOfRangeError
    from ember.graph import GraphBuilder, TensorType

    b = GraphBuilder("bad_gather")
    x = b.input("x", TensorType((5, 64), "float32"))
    i = b.input("i", TensorType((7,), "int64"))
    mod = ember.compile(b.finish([b.op("relu", [b.op("gather", [x, i], axis=0)])]), cflags=("-O1",))
    data = np.arange(5 * 64, dtype=np.float32).reshape(5, 64)
    for bad in (-(1 << 62), -6, 5, 1 << 40, 1 << 62, -(1 << 63)):
        for at in (0, 6):
            idx = np.array([0, -1, 4, -5, 2, 1, 3], dtype=np.int64)
            idx[at] = bad
            with pytest.raises(IndexOutOfRangeError, match=rf"gather node .*index {bad} is out of range \[-5, 5\)"):
                mod(data, idx)
    good = np.array([0, -1, 4, -5, 2, 1, 3], dtype=np.int64)
    np.testing.assert_array_equal(mod(data, good), data[[0, 4, 4, 0, 2, 1, 3]])


def test_cast_type_rule():
    from ember.errors import TypeInferenceError
    from ember.graph import GraphBuilder, TensorType

    b = GraphBuilder("c")
    x = b.input("x", TensorType((3,), "float32"))
    assert b.op("cast", [x], to="float8_e8m0fnu", saturate=True, round_mode="nearest").type == \
        TensorType((3,), "float8_e8m0fnu")
    assert b.op("cast", [b.op("cast", [x], to="int2")], to="uint4").type.dtype == "uint4"
    with pytest.raises(TypeInferenceError, match="round_mode"):
        b.op("cast", [x], to="float8_e8m0fnu", round_mode="even")
    with pytest.raises(TypeInferenceError, match="float6"):
        b.op("cast", [x], to="float6_e2m3fn")


@pytest.mark.parametrize("op", sorted(OPS))
def test_narrow_dtypes_only_move(op):
    """The narrow types have no arithmetic: only the ops that move or convert data take them,
    and the others say so naming the dtype (never a crash in codegen)."""
    from ember.errors import TypeInferenceError
    from ember.graph import GraphBuilder, TensorType

    opdef = OPS[op]
    if opdef.moves_data:
        assert op in ("cast", "reshape", "transpose", "slice", "concat", "pad", "broadcast_to", "gather", "where",
                      "reshape_data")
        return
    b = GraphBuilder("narrow")
    lo = opdef.num_inputs if isinstance(opdef.num_inputs, int) else opdef.num_inputs[0]
    if lo == 0:
        return                     # no operand to be narrow (arange makes its values itself)
    xs = [b.input(f"x{k}", TensorType((2, 3, 4, 4), "float8_e4m3fn")) for k in range(lo)]
    required = {k: 1 for k, v in opdef.attrs.items() if v is REQUIRED}      # e.g. k_block
    with pytest.raises(TypeInferenceError, match="float8_e4m3fn"):
        b.op(op, xs, **required)

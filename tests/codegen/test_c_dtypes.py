"""The C routines for bfloat16 and the narrow types, compiled and run, exhaustively.

Every conversion the generated code can make to or from bfloat16, float8, float4, int4 and
int2 is checked bit for bit against the reference interpreter's ``cast`` over all codes of the
narrow type (all 65536 of float16 and bfloat16) and over a wide sweep of float32 values: every
value of every narrow float with its float32 neighbours, every midpoint (the ties) with its
neighbours, every power of two from the float32 subnormals to infinity, and random bit patterns
(NaN payloads and subnormals included).  The reference itself is checked against independent
oracles: ml_dtypes' conversions and ONNX's reference functions (``saturate_cast``,
``to_float8e8m0``).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import numpy_helper

import ember
from ember.graph import GraphBuilder, TensorType
from ember.graph.types import np_dtype
from ember.ops.cast import convert

CFLAGS = ("-O1",)
FLOAT8 = ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"]
NARROW_FLOATS = FLOAT8 + ["float8_e8m0fnu", "float4_e2m1fn"]
NARROW_INTS = ["int4", "uint4", "int2", "uint2"]
NARROW = NARROW_FLOATS + NARROW_INTS
MODES = ["up", "down", "nearest"]


def codes(dtype: str) -> np.ndarray:
    n = 4 if dtype in ("int2", "uint2") else 16 if dtype in ("int4", "uint4", "float4_e2m1fn") else 256
    return np.arange(n, dtype=np.uint8).view(np_dtype(dtype))


def targets(to: str) -> list[tuple[str, bool, str]]:
    """(to, saturate, round_mode) of every variant of a conversion to ``to``."""
    if to == "float8_e8m0fnu":
        return [(to, s, m) for s in (False, True) for m in MODES]
    if to in FLOAT8:
        return [(to, False, "up"), (to, True, "up")]
    return [(to, False, "up")]


def float32_sweep() -> np.ndarray:
    grid = []
    for dt in NARROW_FLOATS + ["bfloat16"]:
        v = (np.arange(65536, dtype=np.uint16) if dt == "bfloat16" else codes(dt).view(np.uint8)).view(np_dtype(dt))
        f = np.unique(v.astype(np.float32)[np.isfinite(v.astype(np.float32))])
        f = np.unique(np.concatenate([f, -f]))
        grid += [f, ((f[1:].astype(np.float64) + f[:-1]) / 2).astype(np.float32)]   # the values, the ties
    powers = np.ldexp(1.0, np.arange(-149, 128))
    grid += [p.astype(np.float32) for p in (powers, -powers, powers * 1.5, powers * 1.75) if True]
    base = np.concatenate(grid).astype(np.float32)
    bits = base.view(np.uint32)
    near = np.concatenate([bits, bits + 1, bits - 1, bits + 2, bits - 2]).view(np.float32)
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 2 ** 32, 1 << 17, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001,
                        0xFFA00000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x80000001, 0x007FFFFF],
                       np.uint32).view(np.float32)
    out = np.concatenate([special, near, noise])
    return np.unique(out.view(np.uint32)).view(np.float32)


SWEEP = float32_sweep()


def run_casts(src: str, data: np.ndarray, variants: list[tuple[str, bool, str]]) -> list[np.ndarray]:
    """Compile one graph casting ``data`` (of IR dtype ``src``) to every variant; run it."""
    b = GraphBuilder("casts")
    x = b.input("x", TensorType(data.shape, src))
    outs = [b.op("cast", [x], to=to, saturate=sat, round_mode=mode) for to, sat, mode in variants]
    mod = ember.compile(b.finish(outs), cflags=CFLAGS)
    return list(mod.run({"x": data}).values())


def same_bits(got: np.ndarray, want: np.ndarray, what: str, inputs: np.ndarray) -> None:
    """Equal element by element, bit for bit; float NaNs need only both be NaN."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    g, w = got.reshape(-1), want.reshape(-1)
    if g.dtype.kind == "f" and g.dtype.itemsize >= 2:
        nan = np.isnan(g) & np.isnan(w)
        bad = ~nan & (g.view(f"u{g.dtype.itemsize}") != w.view(f"u{w.dtype.itemsize}"))
    elif g.dtype.itemsize == 2 and str(g.dtype) == "bfloat16":
        nan = np.isnan(g.astype(np.float32)) & np.isnan(w.astype(np.float32))
        bad = ~nan & (g.view(np.uint16) != w.view(np.uint16))
    else:
        bad = g.view(f"u{g.dtype.itemsize}") != w.view(f"u{w.dtype.itemsize}")
    if bad.any():
        k = np.flatnonzero(bad)
        x = inputs.reshape(-1)[k[0]]
        raise AssertionError(f"{what}: {len(k)} of {g.size} differ; first input {x!r} "
                             f"(bits {x.view(f'u{inputs.dtype.itemsize}')!r}): got {g[k[0]]!r}, "
                             f"expected {w[k[0]]!r}")


def check_against_reference(src: str, data: np.ndarray, variants) -> list[np.ndarray]:
    got = run_casts(src, data, variants)
    refs = []
    with np.errstate(all="ignore"):
        for (to, sat, mode), g in zip(variants, got):
            ref = convert(data, to, sat, mode)
            same_bits(g, ref, f"{src} -> {to} saturate={sat} round_mode={mode}", data)
            refs.append(ref)
    return refs


def check_narrow_int(got: np.ndarray, x: np.ndarray, to: str, src: str) -> None:
    """``got`` is the conversion of the float ``x`` to the 4- or 2-bit integer ``to``: truncated
    toward zero, 0 where that falls outside the type's range (ml_dtypes since 0.7; before, it
    wrapped), so the oracle is written out here and ml_dtypes checks the values that fit."""
    bits = 4 if to.endswith("4") else 2
    lo = 0 if to.startswith("u") else -(1 << (bits - 1))
    with np.errstate(invalid="ignore"):
        t = np.trunc(x.astype(np.float64))
        fits = (t >= lo) & (t < lo + (1 << bits))
    want = np.where(fits, np.where(fits, t, 0), 0).astype(np.int64)
    same_bits(got, want.astype(np_dtype(to)), f"{src} -> {to} vs truncation, 0 outside", x)
    same_bits(got[fits], x[fits].astype(np_dtype(to)), f"{src} -> {to} vs ml_dtypes", x[fits])


# ---- from float32, float16, float64 and bfloat16 -----------------------------------------------

@pytest.mark.parametrize("to", NARROW + ["bfloat16"])
def test_from_float32_sweep(to):
    variants = targets(to)
    refs = check_against_reference("float32", SWEEP, variants)
    with np.errstate(all="ignore"):
        for (_, sat, mode), ref in zip(variants, refs):
            # the reference against independent oracles
            if to == "float8_e8m0fnu":
                want = numpy_helper.to_float8e8m0(SWEEP, sat, mode)
            elif to in FLOAT8 and sat:
                want = numpy_helper.saturate_cast(SWEEP, np_dtype(to))
            elif to in NARROW_INTS:
                check_narrow_int(ref, SWEEP, to, "float32")
                continue
            else:
                want = SWEEP.astype(np_dtype(to))
            same_bits(ref, want, f"reference float32 -> {to} saturate={sat} {mode} vs oracle", SWEEP)


def test_from_float16_every_value():
    x = np.arange(65536, dtype=np.uint16).view(np.float16)
    variants = [v for to in NARROW + ["bfloat16"] for v in targets(to)]
    refs = check_against_reference("float16", x, variants)
    with np.errstate(all="ignore"):
        for (to, sat, mode), ref in zip(variants, refs):
            if to in FLOAT8 and not sat or to in ("float4_e2m1fn", "bfloat16"):
                same_bits(ref, x.astype(np_dtype(to)), f"reference float16 -> {to} vs ml_dtypes", x)
            if to in FLOAT8 and sat:
                same_bits(ref, numpy_helper.saturate_cast(x, np_dtype(to)), f"float16 -> {to} vs onnx", x)
            if to == "float8_e8m0fnu":
                same_bits(ref, numpy_helper.to_float8e8m0(x, sat, mode), f"float16 -> {to} vs onnx", x)
            if to in NARROW_INTS:
                check_narrow_int(ref, x, to, "float16")


def test_from_bfloat16_every_value():
    x = np.arange(65536, dtype=np.uint16).view(ml_dtypes.bfloat16)
    variants = [v for to in NARROW + ["float32", "float16", "float64", "int32", "bool"] for v in targets(to)]
    refs = check_against_reference("bfloat16", x, variants)
    same_bits(refs[variants.index(("float32", False, "up"))], x.astype(np.float32), "bfloat16 -> float32", x)


def test_from_float64_rounds_through_float32():
    """As the ONNX reference does: a float64 is first rounded to float32 (for int4/int2:
    truncated), then converted (ml_dtypes up to 0.6 did the same; 0.7 rounds it directly)."""
    f = SWEEP[np.isfinite(SWEEP)].astype(np.float64)
    step = np.abs(f) * 2.0 ** -26 + 2.0 ** -160
    x = np.concatenate([f, f + step, f - step, [np.nan, np.inf, -np.inf, 1e300, -1e300, 2.0 ** 31 + 5, 7.999999999]])
    variants = [v for to in NARROW + ["bfloat16"] for v in targets(to)]
    refs = check_against_reference("float64", x, variants)
    with np.errstate(all="ignore"):
        for (to, sat, _), ref in zip(variants, refs):
            if to in ("float4_e2m1fn", "bfloat16") or to in FLOAT8 and not sat:
                same_bits(ref, x.astype(np.float32).astype(np_dtype(to)),
                          f"reference float64 -> {to} vs ml_dtypes from float32", x)
            if to in NARROW_INTS:
                check_narrow_int(ref, x, to, "float64")


# ---- from the narrow types ----------------------------------------------------------------------

@pytest.mark.parametrize("src", NARROW)
def test_every_code_to_every_type(src):
    x = codes(src)
    to = ["float32", "float16", "float64", "bfloat16", "int8", "uint8", "int32", "int64", "bool"]
    variants = [v for t in to + [n for n in NARROW if n != src] for v in targets(t)]
    refs = check_against_reference(src, x, variants)
    # decoding against ml_dtypes: exact in float32, and on to float16 and bfloat16
    for t in ("float32", "float16", "bfloat16"):
        same_bits(refs[variants.index((t, False, "up"))], x.astype(np_dtype(t)), f"{src} -> {t} vs ml_dtypes", x)


@pytest.mark.parametrize("src", ["int8", "uint8", "int32", "int64", "bool"])
def test_from_integers(src):
    if src == "bool":
        x = np.array([False, True])
    elif src in ("int8", "uint8"):
        x = np.arange(256, dtype=np.int64).astype(np.dtype(src))
    else:
        span = np.arange(-70000, 70000, 7)
        x = np.concatenate([span, [2 ** 24 + 1, -(2 ** 31), 2 ** 31 - 1, 123456789]]).astype(src)
        if src == "int64":
            x = np.concatenate([x, np.array([2 ** 62 + 2 ** 40 + 1, -(2 ** 63)], np.int64)])
    variants = [v for to in NARROW + ["bfloat16"] for v in targets(to)]
    refs = check_against_reference(src, x, variants)
    with np.errstate(all="ignore"):
        for (to, sat, _), ref in zip(variants, refs):
            if to in NARROW_INTS or to == "bfloat16" or to in ("float4_e2m1fn",) or to in FLOAT8 and not sat:
                same_bits(ref, x.astype(np_dtype(to)), f"reference {src} -> {to} vs ml_dtypes", x)


def test_reading_any_byte_of_a_narrow_integer():
    """Bytes outside the canonical encoding (high bits set) read as their low bits, as in
    ml_dtypes."""
    raw = np.arange(256, dtype=np.uint8)
    for src in NARROW_INTS:
        x = raw.view(np_dtype(src))
        (got,) = run_casts(src, x, [("int32", False, "up")])
        np.testing.assert_array_equal(got, x.astype(np.int32), err_msg=src)

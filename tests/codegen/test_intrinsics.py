"""The intrinsics of the loop IR (``ember.tir.intrinsics``): every one has a printing in C, its
generated C computes its numpy meaning (compiled and run, scalar and vector code, on inputs that
reach the special values), ``te.call`` and ``tir.verify`` enforce its arity and dtype rule, and a
language that lacks an intrinsic refuses it by name."""

from __future__ import annotations

import numpy as np
import pytest

from ember import te
from ember.codegen import c_intrinsics
from ember.codegen.c import CGenerator
from ember.codegen.gpu import LANGUAGES, GPUGenerator, printed_intrinsics
from ember.errors import CodegenError
from ember.target import host
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.tir import intrinsics
from ember.tir.expr import Call, Const, Load, Var
from ember.tir.stmt import Buffer, For, PrimFunc, Store
from ember.tir.transform import optimize
from ember.tir.verify import verify_func

from te.kbuild import build_kernels
from tir.interp import run_kernel

LANES = host().lanes
N = 4 * LANES + 3          # whole vectors and a tail

#: what the GPU languages lack (the 8-bit dot products are CPU kernels' only; WGSL has no 64-bit
#: integers for the fixed-point multiply's products)
GPU_LACKS = {"dot4", "dot4_sat16"}
WGSL_LACKS = GPU_LACKS | {"fixed_point_mul"}


def _floats(dtype: str, k: int) -> np.ndarray:
    """N values of ``dtype``: zeros of both signs, ties, the edges of exp's range, NaN and the
    infinities, then a sweep; ``k`` rotates them (the second operand of a binary intrinsic)."""
    special = [0.0, -0.0, 0.5, 1.5, 2.5, -0.5, -2.5, 1.0, -1.0, 1e-3, 0.2, -0.3, 3.0, -4.0, 20.0, 89.0,
               -104.0, 100.0, -200.0, np.nan, np.inf, -np.inf]
    sweep = np.linspace(-6.0, 6.0, N - len(special)).tolist()
    return np.roll(np.array(special + sweep, dtype), 7 * k)


def _ints(dtype: str, k: int) -> np.ndarray:
    if dtype == "bool":
        return np.array([(i >> k) & 1 for i in range(N)], bool)
    info = np.iinfo(dtype)
    base = [0, 1, -1, 2, -2, 3, -3, 5, 7, -7, 20, info.max, info.min + 1]
    vals = [v for v in base if info.min <= v <= info.max]
    vals += [(i * 37 + 11 * k) % 19 - (0 if info.min == 0 else 6) for i in range(N - len(vals))]
    return np.roll(np.array(vals, np.int64).astype(dtype), 5 * k)


def _fixed_point_inputs(rng) -> list[np.ndarray]:
    """x, multiplier, shift of ``fixed_point_mul``: the int32 extremes (INT32_MIN squared
    saturates), ties of the rounding steps, left shifts that overflow, and random values."""
    lo, hi = -(1 << 31), (1 << 31) - 1
    special = [(lo, lo, 0), (lo, hi, 0), (hi, hi, 0), (hi, lo, 0), (lo, lo, -1), (3, 1 << 30, 0), (-3, 1 << 30, 0),
               (1, 1 << 30, 0), (-1, 1 << 30, 0), (6, 1 << 30, -1), (-6, 1 << 30, -1), (10, 1 << 30, -2),
               (-10, 1 << 30, -2), (1 << 20, 1 << 30, 12), (-(1 << 20), 1 << 30, 12), (7, hi, 31), (-7, hi, 31),
               (5, 1 << 30, -31), (hi, hi, -31), (lo, 1 << 30, -31), (5, 1 << 30, 40), (5, 1 << 30, -40),
               (0, 12345, 3), (-1, -1, 0)]
    n = N - len(special)
    x = np.concatenate([[v[0] for v in special], rng.integers(lo, hi, n, endpoint=True)])
    m = np.concatenate([[v[1] for v in special], rng.integers(1 << 30, hi, n, endpoint=True)])
    s = np.concatenate([[v[2] for v in special], rng.integers(-20, 4, n)])
    x[len(special)::3] >>= rng.integers(0, 24, len(x[len(special)::3]))       # accumulators of every size
    return [v.astype(np.int32) for v in (x, m, s)]


def _inputs(intr: intrinsics.Intrinsic, dtype: str, rng) -> list[np.ndarray]:
    if intr.name == "fixed_point_mul":
        return _fixed_point_inputs(rng)
    if intr.args == "byte":
        return ([rng.integers(0, 256, N).astype(np.uint8) for _ in range(4)]
                + [rng.integers(-128, 128, N).astype(np.int8) for _ in range(4)])
    if dtype.startswith("float"):
        return [_floats(dtype, k) for k in range(intr.arity)]
    xs = [_ints(dtype, k) for k in range(intr.arity)]
    if intr.name == "pow" and dtype not in ("bool",) and not dtype.startswith("uint"):
        xs[1] = (np.arange(N) % 9 - 3).astype(dtype)      # negative exponents, of -1 and 1 too
    return xs


#: (intrinsic, dtype, vectorized) of every kernel the agreement test compiles
CASES = []
for _intr in intrinsics.INTRINSICS.values():
    if _intr.args == "byte":
        CASES += [(_intr.name, "uint8", False)]
        continue
    if _intr.args == "int32":
        CASES += [(_intr.name, "int32", False), (_intr.name, "int32", True)]
        continue
    for _dt in ("float32", "float64") + (("int8", "int32", "int64", "uint8", "uint32", "bool")
                                          if _intr.args == "number" else ()):
        if _intr.name == "abs" and _dt == "bool":
            continue
        CASES.append((_intr.name, _dt, False))
    CASES.append((_intr.name, "float32", True))


def _kernel(name: str, dtype: str, vectorized: bool, k: int):
    intr = intrinsics.get(name)
    if intr.args == "byte":
        ins = ([te.placeholder((N,), "uint8", f"x{j}") for j in range(4)]
               + [te.placeholder((N,), "int8", f"w{j}") for j in range(4)])
    else:
        ins = [te.placeholder((N,), dtype, f"a{j}") for j in range(intr.arity)]
    out = te.compute((N,), lambda i: te.call(name, *[x[i] for x in ins]), name=f"k{k}_{name}")
    s = create_schedule(out)
    if vectorized:
        _, vi = s.root.split(s.root.leaves[-1], LANES)
        s.root.vectorize(vi)
    f = optimize(lower(s, f"k{k}_{name}", ins + [s.output]), LANES)
    return f, [((N,), x.dtype) for x in ins], ((N,), out.dtype)


def _tolerance(name: str, dtype: str):
    if not dtype.startswith("float"):
        return {}
    # libm and numpy's float functions may differ in the last bits; the vector exp, erf and tanh
    # of the preamble are polynomials (relative error ~1e-7, erf's absolute error < 5e-7)
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-12, "atol": 1e-12}


def test_every_intrinsic_has_a_c_printing():
    assert set(c_intrinsics.SCALAR) == set(intrinsics.INTRINSICS)
    assert set(c_intrinsics.VECTOR) <= set(intrinsics.INTRINSICS)
    assert set(c_intrinsics.LIBM) <= set(intrinsics.INTRINSICS)


@pytest.mark.parametrize("language", list(LANGUAGES) + ["wgsl"])
def test_what_the_gpu_languages_lack(language):
    """The GPU languages print every intrinsic but the 8-bit dot products (and WGSL the
    fixed-point multiply); a new intrinsic without a printing in one of them fails here."""
    assert set(intrinsics.INTRINSICS) - printed_intrinsics(language) == (WGSL_LACKS if language == "wgsl" else GPU_LACKS)
    assert printed_intrinsics(language) <= set(intrinsics.INTRINSICS)


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_a_language_refuses_an_intrinsic_it_lacks_by_name(language):
    x = Buffer("x", "uint8", 4)
    w = Buffer("w", "int8", 4)
    out = Buffer("out", "int32", 1)
    xs = [Load(x, Const(j)) for j in range(4)]
    ws = [Load(w, Const(j)) for j in range(4)]
    f = PrimFunc("dot", [x, w, out], Store(out, Const(0), Call("dot4", tuple(xs + ws), "int32")))
    with pytest.raises(CodegenError, match=f"intrinsic dot4 on uint8 .*{language}"):
        GPUGenerator(language).expr(f.body.value)


def test_c_refuses_an_unknown_intrinsic_by_name():
    with pytest.raises(CodegenError, match="intrinsic rsqrt on float32 .*C code generator"):
        c_intrinsics.scalar("rsqrt", ["x"], "float32", "float32", str)
    with pytest.raises(CodegenError, match="intrinsic isnan on float32 vectors"):
        c_intrinsics.vector("isnan", ["x"])


def test_te_call_checks_arity_and_dtypes():
    x = te.placeholder((4,), "float32", "x")
    n = te.placeholder((4,), "int32", "n")
    d = te.placeholder((4,), "float64", "d")
    b = te.placeholder((4,), "uint8", "b")
    with pytest.raises(TypeError, match="intrinsic exp takes 1 argument"):
        te.call("exp", x[0], x[1])
    with pytest.raises(TypeError, match="intrinsic exp takes float arguments.*got int32"):
        te.call("exp", n[0])
    with pytest.raises(TypeError, match="intrinsic pow takes arguments of one dtype"):
        te.call("pow", x[0], d[0])
    with pytest.raises(TypeError, match="no intrinsic 'rsqrt'"):
        te.call("rsqrt", x[0])
    with pytest.raises(TypeError, match="intrinsic dot4 takes byte arguments"):
        te.call("dot4", *[b[0]] * 7, x[0])
    # the result dtype is the rule's
    assert te.call("isnan", x[0]).dtype == "bool"
    assert te.call("dot4", *[b[0]] * 8).dtype == "int32"
    assert te.call("pow", n[0], n[1]).dtype == "int32"
    assert te.call("pow", x[0], 2).args[1].dtype == "float32"      # a number takes the others' dtype


def test_verify_checks_calls_against_the_rule():
    x = Buffer("x", "float32", 4)
    out = Buffer("out", "float32", 4)
    i = Var("i")
    for call, what in ((Call("exp", (Load(x, i),), "int32"), "its type rule gives float32"),
                       (Call("exp", (Load(x, i), Load(x, i)), "float32"), "takes 1 argument"),
                       (Call("rsqrt", (Load(x, i),), "float32"), "no intrinsic 'rsqrt'")):
        f = PrimFunc("bad", [x, out], For(i, 4, "serial", Store(out, i, call)))
        with pytest.raises(CodegenError, match=what):
            verify_func(f)


def test_the_interpreter_runs_the_numpy_meaning():
    f, _, _ = _kernel("pow", "int32", False, 0)
    a = np.array([-1, -1, 1, 2, 0, 3, -2] + [2] * (N - 7), np.int32)
    b = np.array([-3, -2, -5, -1, 3, 2, 3] + [1] * (N - 7), np.int32)
    got = run_kernel(f, [a, b, np.zeros(N, np.int32)])[-1]
    np.testing.assert_array_equal(got[:7], [-1, 1, 1, 0, 0, 9, -8])


def test_generated_c_computes_the_numpy_meaning():
    """Every intrinsic on every dtype its rule takes (scalar C, and float32 or int32 vector C),
    in one compiled module, against its numpy meaning."""
    rng = np.random.default_rng(0)
    specs, feeds, wants, cases = [], {}, [], []
    for k, (name, dtype, vec) in enumerate(CASES):
        f, in_types, out_type = _kernel(name, dtype, vec, k)
        if vec and out_type[1] in ("float32", "int32"):      # the vector C is what runs
            src = CGenerator(LANES).kernel(f)
            assert c_intrinsics.VECTOR.get(name, "EMBER_VMAP") in src, name
        xs = _inputs(intrinsics.get(name), dtype, rng)
        specs.append((f, in_types, out_type))
        for j, x in enumerate(xs):
            feeds[f"k{k}_in{j}"] = x
        with np.errstate(all="ignore"):
            wants.append(np.asarray(intrinsics.get(name).numpy(*xs)).astype(out_type[1]))
        cases.append((name, dtype, vec))
    got = build_kernels(specs, name="intrinsics").run(feeds)
    for k, ((name, dtype, vec), want) in enumerate(zip(cases, wants)):
        np.testing.assert_allclose(got[f"k{k}_out"], want, **_tolerance(name, dtype),
                                   err_msg=f"{name} on {dtype}{' vectors' if vec else ''}")


@pytest.mark.parametrize("name", intrinsics.DOT_CALLS)
def test_vector_dot_products_compute_the_numpy_meaning(name):
    """The dot products with their w operands in lanes (one ISA instruction where the host has
    it: vpmaddubsw, vpdpbusd; the generic C otherwise) against the numpy meaning, saturation
    included."""
    I, J = 3, 2 * LANES
    X = te.placeholder((I, 4), "uint8", "X")
    W = te.placeholder((J, 4), "int8", "W")
    out = te.compute((I, J), lambda i, j: te.call(name, *[X[i, k] for k in range(4)], *[W[j, k] for k in range(4)]),
                     name="vdot")
    s = create_schedule(out)
    _, vi = s.root.split(s.root.leaves[-1], LANES)
    s.root.vectorize(vi)
    f = optimize(lower(s, "vdot", [X, W, s.output]), LANES)
    assert f"ember_v{name}(" in CGenerator(LANES).kernel(f)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (I, 4)).astype(np.uint8)
    x[0] = 255
    w = rng.integers(-128, 128, (J, 4)).astype(np.int8)
    w[:2] = 127
    want = intrinsics.get(name).numpy(*[x[:, None, k] for k in range(4)], *[w[None, :, k] for k in range(4)])
    got = build_kernels([(f, [((I, 4), "uint8"), ((J, 4), "int8")], ((I, J), "int32"))], name="vdot").run(
        {"k0_in0": x, "k0_in1": w})["k0_out"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(run_kernel(f, [x, w, np.zeros((I, J), np.int32)])[-1].reshape(I, J), want)

"""The C generator writes a subexpression used several times in a statement once, as a named
temporary (``codegen.c_shared``): the C of a deeply shared expression stays linear in size
(written as a tree, x_{k+1} = f(x_k, x_k) doubles at every step), computes the same values,
and a part C computes only under a condition stays under it.  Stores side by side that read
nothing they write (an unrolled transform's points) share one plan: a part they share is
written once; a store that reads what one before it wrote keeps its own."""

from __future__ import annotations

import numpy as np

from ember.codegen.c import CGenerator, _store_run
from ember.target import host
from ember.tir.expr import Broadcast, Const, Load, Ramp, Select, Var, binop
from ember.tir.stmt import Buffer, For, PrimFunc, Seq, Store

from te.kbuild import build_kernels

N = 64
MOD = 1000003


def _step(x):
    """One step of the shared recurrence: x is used in the condition and in both branches."""
    big = binop("gt", x, Const(MOD // 2))
    return Select(big, binop("mod", binop("sub", binop("mul", x, Const(3)), x), Const(MOD)),
                  binop("add", binop("mul", x, x), x) % MOD)


def _step_ref(x: np.ndarray) -> np.ndarray:
    return np.where(x > MOD // 2, (x * 3 - x) % MOD, (x * x + x) % MOD)


def _deep_kernel(depth: int) -> PrimFunc:
    a = Buffer("a", "int64", N, const=True)
    out = Buffer("out", "int64", N)
    i = Var("i")
    x = Load(a, i)
    for _ in range(depth):
        x = _step(x)
    return PrimFunc(f"deep{depth}", [a, out], For(i, N, "serial", Store(out, i, x)))


def test_deeply_shared_expression_is_linear_and_right():
    sizes = {d: len(CGenerator(host().lanes).kernel(_deep_kernel(d))) for d in (10, 20, 30)}
    # each step adds the same few temporaries: linear growth (as a tree, 2^30 copies of a[i])
    assert sizes[30] - sizes[20] < 1.2 * (sizes[20] - sizes[10]) and sizes[30] < 20000, sizes
    code = CGenerator(host().lanes).kernel(_deep_kernel(30))
    assert "const __auto_type t0 = " in code
    f = _deep_kernel(30)
    mod = build_kernels([(f, [((N,), "int64")], ((N,), "int64"))], name="deep")
    data = np.random.default_rng(0).integers(0, MOD, N).astype(np.int64)
    want = data
    for _ in range(30):
        want = _step_ref(want)
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], want)


def test_guarded_part_stays_under_its_condition():
    """A load that may leave its buffer (a[i - 1] at i = 0), used twice inside one branch of a
    select, is named inside that branch, not before the statement."""
    a = Buffer("a", "int64", N, const=True)
    out = Buffer("out", "int64", N)
    i = Var("i")
    prev = Load(a, binop("sub", i, Const(1)))
    inner = binop("add", binop("mul", prev, prev), prev)
    value = Select(binop("gt", i, Const(0)), binop("add", inner, inner), Const(-1))
    f = PrimFunc("guarded", [a, out], For(i, N, "serial", Store(out, i, value)))
    code = CGenerator(host().lanes).kernel(f)
    store = next(line for line in code.splitlines() if "out" in line and " = " in line and "[i]" in line)
    assert store.count("({ const __auto_type") == 1, code
    assert not any(line.strip().startswith("const __auto_type") for line in code.splitlines()), code
    mod = build_kernels([(PrimFunc("guarded", [a, out], f.body), [((N,), "int64")], ((N,), "int64"))],
                        name="guarded")
    data = np.arange(N, dtype=np.int64) * 7 - 100
    p = np.concatenate([[0], data[:-1]])
    want = np.where(np.arange(N) > 0, 2 * (p * p + p), -1)
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], want)


def test_vector_code_shares_across_a_lane_wise_select():
    """The same kind of recurrence in float32 vector code (lane-wise selects, which compute
    both branches): linear C, numpy's values."""
    depth, lanes = 30, host().lanes
    a = Buffer("a", "float32", N, const=True)
    out = Buffer("out", "float32", N)
    i = Var("i")
    at = Ramp(binop("mul", i, Const(lanes)), 1, lanes)

    def c(v):
        return Broadcast(Const(v, "float32"), lanes)

    x = Load(a, at, lanes=lanes)
    for _ in range(depth):
        x = Select(binop("gt", x, c(0.5)), binop("sub", x, c(0.25)), binop("mul", x, c(1.5)))
    f = PrimFunc("vsel", [a, out], For(i, N // lanes, "serial", Store(out, at, x)))
    code = CGenerator(lanes).kernel(f)
    assert len(code) < 20000 and "ember_vsel" in code, len(code)
    mod = build_kernels([(f, [((N,), "float32")], ((N,), "float32"))], name="vsel")
    data = np.random.default_rng(1).random(N).astype(np.float32)
    want = data
    for _ in range(depth):
        want = np.where(want > np.float32(0.5), want - np.float32(0.25), want * np.float32(1.5)).astype(np.float32)
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], want)


def _poly(x):
    return binop("mod", binop("add", binop("mul", x, x), binop("mul", x, Const(7))), Const(MOD))


def test_side_by_side_stores_share_their_parts():
    """Two stores of one loop body computing from the same part: it is named once, before both
    (an unrolled Winograd transform's points share their row sums the same way), and the values
    are right."""
    a = Buffer("a", "int64", N, const=True)
    out = Buffer("out", "int64", 2 * N)
    i = Var("i")
    y = _poly(Load(a, i))
    body = Seq([Store(out, binop("mul", i, Const(2)), binop("add", y, Const(1))),
                Store(out, binop("add", binop("mul", i, Const(2)), Const(1)), binop("mul", y, Const(3)))])
    assert _store_run(body.stmts, 0) == 2
    f = PrimFunc("pair", [a, out], For(i, N, "serial", body))
    code = CGenerator(host().lanes).kernel(f)
    assert code.count("* INT64_C(7)") == 1, code
    mod = build_kernels([(f, [((N,), "int64")], ((2 * N,), "int64"))], name="pair")
    data = np.arange(N, dtype=np.int64) * 13 + 5
    p = (data * data + data * 7) % MOD
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], np.stack([p + 1, p * 3], 1).reshape(-1))


def test_a_store_reading_what_one_before_wrote_keeps_its_own_plan():
    """out[i] written, then read by the next store: nothing of the second may be computed before
    the first store (each statement its own plan), so the second reads the new value."""
    a = Buffer("a", "int64", N, const=True)
    out = Buffer("out", "int64", N)
    i = Var("i")
    y = _poly(Load(a, i))
    body = Seq([Store(out, i, y), Store(out, i, binop("add", binop("mul", Load(out, i), Const(2)), y))])
    assert _store_run(body.stmts, 0) == 1
    f = PrimFunc("again", [a, out], For(i, N, "serial", body))
    mod = build_kernels([(f, [((N,), "int64")], ((N,), "int64"))], name="again")
    data = np.arange(N, dtype=np.int64) * 13 + 5
    p = (data * data + data * 7) % MOD
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], 3 * p)

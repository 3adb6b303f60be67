"""Index simplification and range analysis of the loop IR, checked by evaluation.

Random integer expressions over loop variables with known extents (sums, scaled terms,
divisions and remainders by constants, min/max, the shapes fuse and split produce) are
simplified with ``simplify_index``; the result must evaluate to the same value as the original
at random points of the iteration space (C semantics: division truncates toward zero).
``bound`` must contain every value, and ``stride_in`` must split an affine index exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from ember.te.tensor import IterVar
from ember.tir.analysis import bound, linear_form, simplify_index, stride_in
from ember.tir.expr import BinOp, Const, Expr, Var, binop


def c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def evaluate(e: Expr, env: dict) -> int:
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return env[e]
    if isinstance(e, BinOp):
        a, b = evaluate(e.a, env), evaluate(e.b, env)
        if e.op == "add":
            return a + b
        if e.op == "sub":
            return a - b
        if e.op == "mul":
            return a * b
        if e.op == "div":
            return 0 if b == 0 else c_div(a, b)
        if e.op == "mod":
            return 0 if b == 0 else a - c_div(a, b) * b
        if e.op == "max":
            return max(a, b)
        if e.op == "min":
            return min(a, b)
    raise TypeError(f"cannot evaluate {e!r}")


def var(name: str, extent: int) -> IterVar:
    return IterVar(name, "int64", extent=extent)


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.vars = [var(f"v{k}", int(self.rng.choice([1, 2, 3, 4, 7, 8, 13, 16, 37]))) for k in range(4)]

    def expr(self, depth: int) -> Expr:
        r = self.rng.random()
        if depth == 0 or r < 0.2:
            if self.rng.random() < 0.75:
                return self.vars[int(self.rng.integers(len(self.vars)))]
            return Const(int(self.rng.integers(-9, 20)))
        op = self.rng.choice(["add", "sub", "mul", "div", "mod", "max", "min", "split", "fuse"])
        if op in ("add", "sub", "max", "min"):
            return binop(op, self.expr(depth - 1), self.expr(depth - 1))
        if op == "mul":
            return binop("mul", self.expr(depth - 1), Const(int(self.rng.integers(-3, 9))))
        if op in ("div", "mod"):
            return binop(op, self.expr(depth - 1), Const(int(self.rng.choice([1, 2, 3, 4, 8, 16]))))
        if op == "split":       # outer * factor + inner, the value of a split axis
            f = int(self.rng.choice([2, 4, 8]))
            return binop("add", binop("mul", self.expr(depth - 1), Const(f)), binop("mod", self.expr(depth - 1),
                                                                                   Const(f)))
        a = self.expr(depth - 1)   # fused index taken apart again
        n = int(self.rng.choice([3, 5, 8]))
        return binop("add", binop("mul", binop("div", a, Const(n)), Const(n)), binop("mod", a, Const(n)))


def _points(vars_, rng, n=200):
    for _ in range(n):
        yield {v: int(rng.integers(0, v.extent)) for v in vars_}


@pytest.mark.parametrize("seed", range(60))
def test_simplify_preserves_value(seed):
    g = _Gen(seed)
    rng = np.random.default_rng(seed + 1000)
    for _ in range(20):
        e = g.expr(4)
        s = simplify_index(e)
        b = bound(e)
        for env in _points(g.vars, rng, 40):
            want = evaluate(e, env)
            got = evaluate(s, env)
            assert got == want, f"simplify_index({e!r}) = {s!r}: {got} != {want} at {env}"
            if b is not None:
                assert b[0] <= want <= b[1], f"bound({e!r}) = {b} misses {want} at {env}"


@pytest.mark.parametrize("seed", range(20))
def test_stride_in_is_exact(seed):
    g = _Gen(seed)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        e = g.expr(3)
        v = g.vars[0]
        st = stride_in(e, v)
        if st is None:
            continue
        c, base = st
        for env in _points(g.vars, rng, 20):
            env0 = dict(env)
            env0[v] = 0
            assert evaluate(base, env0) == evaluate(base, env), f"stride_in({e!r}) base {base!r} uses {v!r}"
            assert evaluate(e, env) == c * env[v] + evaluate(base, env), f"stride_in({e!r}) = {st!r}"


def test_exact_divisions_disappear():
    i, j = var("i", 13), var("j", 8)
    e = binop("add", binop("mul", i, Const(8)), j)
    assert repr(simplify_index(binop("div", e, Const(8)))) == "i"
    assert repr(simplify_index(binop("mod", e, Const(8)))) == "j"
    # fuse then unfuse: back to the two loop variables
    f = var("f", 13 * 8)
    again = binop("add", binop("mul", binop("div", f, Const(8)), Const(8)), binop("mod", f, Const(8)))
    assert repr(simplify_index(again)) == "f"
    # terms cancel
    assert repr(simplify_index(binop("sub", binop("add", e, Const(3)), binop("mul", i, Const(8))))) == "(j add 3)"


def test_no_unsound_rewrites_with_negative_values():
    i = var("i", 10)
    for e in [binop("div", binop("sub", i, Const(3)), Const(2)), binop("mod", binop("sub", i, Const(5)), Const(4)),
              binop("div", binop("sub", Const(0), i), Const(3)), binop("mod", binop("mul", i, Const(-3)), Const(7))]:
        s = simplify_index(e)
        for x in range(10):
            assert evaluate(s, {i: x}) == evaluate(e, {i: x}), f"{e!r} -> {s!r} at i={x}"


def test_inexact_division_is_kept():
    i, j = var("i", 4), var("j", 9)
    e = binop("div", binop("add", binop("mul", i, Const(8)), j), Const(8))    # j may reach 8
    s = simplify_index(e)
    for x in range(4):
        for y in range(9):
            assert evaluate(s, {i: x, j: y}) == evaluate(e, {i: x, j: y})


def test_bound_of_unknowns():
    v = Var("v")                         # no extent: no range
    assert bound(v) is None
    assert bound(binop("add", v, Const(1))) is None
    i = var("i", 5)
    assert bound(binop("div", Const(7), binop("sub", i, Const(2)))) is None   # divisor may be 0 or negative
    assert bound(binop("mod", i, Const(3))) == (0, 2)
    assert bound(binop("mod", binop("sub", i, Const(9)), Const(4))) == (-3, 0)
    assert bound(binop("max", i, Const(2))) == (2, 4)
    assert bound(i, {i: (1, 2)}) == (1, 2)


def test_linear_form_of_floats_is_none():
    assert linear_form(Const(1.0, "float32")) is None


CMPS = ["lt", "le", "gt", "ge", "eq", "ne"]


def evaluate_bool(e: Expr, env: dict) -> bool:
    if isinstance(e, Const):
        return bool(e.value)
    if isinstance(e, BinOp) and e.op in CMPS:
        a, b = evaluate(e.a, env), evaluate(e.b, env)
        return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b, "ne": a != b}[e.op]
    if isinstance(e, BinOp) and e.op in ("and", "or"):
        a, b = evaluate_bool(e.a, env), evaluate_bool(e.b, env)
        return (a and b) if e.op == "and" else (a or b)
    raise TypeError(f"cannot evaluate {e!r}")


@pytest.mark.parametrize("seed", range(20))
def test_decided_comparisons_are_right(seed):
    g = _Gen(seed)
    rng = np.random.default_rng(seed)
    decided = 0
    for _ in range(40):
        op = str(rng.choice(CMPS))
        e = binop(op, g.expr(2), g.expr(2))
        e = binop(str(rng.choice(["and", "or"])), e, binop(op, g.expr(1), Const(int(rng.integers(-3, 12)))))
        s = simplify_index(e)
        decided += isinstance(s, Const)
        for env in _points(g.vars, rng, 30):
            assert evaluate_bool(s, env) == evaluate_bool(e, env), f"{e!r} -> {s!r} at {env}"
    assert decided > 0


def test_padding_checks_fold_inside_the_interior():
    i = var("i", 8)
    inner = binop("add", i, Const(1))           # i + 1 in [1, 8]
    assert simplify_index(binop("ge", inner, Const(0))).value is True
    assert simplify_index(binop("lt", inner, Const(9))).value is True
    assert isinstance(simplify_index(binop("lt", inner, Const(8))), BinOp)


def test_constants_fold_with_c_and_numpy_semantics():
    assert binop("div", Const(-7), Const(2)).value == -3          # truncation toward zero
    assert binop("mod", Const(-7), Const(2)).value == -1
    assert binop("div", Const(7), Const(-2)).value == -3
    assert isinstance(binop("div", Const(7), Const(0)), BinOp)    # never folded: decided at run time
    # integers wrap like numpy's astype; NaN and infinities convert like numpy does
    assert Const(300, "int8").value == 44 and Const(-1, "uint8").value == 255
    assert binop("gt", Const(300, "int8"), Const(100, "int8")).value is False
    with np.errstate(all="ignore"):
        assert Const(float("nan"), "int32").value == int(np.asarray(np.nan).astype(np.int32))
    assert Const(-0.75, "int64").value == 0


# ---- symbolic sizes ------------------------------------------------------------------------

def test_indices_over_size_variables_simplify_and_keep_their_values():
    """Loops whose extents are size variables (symbolic dimensions): products of sizes combine
    whatever order they were written in, a reshape's div/mod by a size cancel when the loop
    ranges allow, and every result keeps its value at random sizes within the bounds."""
    from ember.tir.analysis import size_bounds
    from ember.tir.expr import size_var

    seq, b = size_var("seq"), size_var("batch")
    i = IterVar("i", extent=seq)
    j = IterVar("j", extent=binop("mul", b, seq))
    k = IterVar("k", extent=8)
    lin = binop("add", binop("mul", j, seq), i)
    cases = [
        (binop("div", lin, seq), j), (binop("mod", lin, seq), i),
        (binop("mod", binop("mod", j, seq), seq), binop("mod", j, seq)),
        (binop("div", binop("mod", j, seq), seq), Const(0)),
        (binop("sub", binop("mul", binop("mul", b, seq), k), binop("mul", k, binop("mul", seq, b))), Const(0)),
    ]
    rng = np.random.default_rng(0)
    with size_bounds({"seq": 12, "batch": 3}):
        for e, want in cases:
            got = simplify_index(e)
            assert repr(got) == repr(want), (e, got)
        # not exact: stays a division, still correct
        odd = simplify_index(binop("div", binop("add", lin, Const(1)), seq))
        for _ in range(200):
            sv, bv = int(rng.integers(1, 13)), int(rng.integers(1, 4))
            env = {seq: sv, b: bv, i: int(rng.integers(0, sv)), j: int(rng.integers(0, bv * sv)),
                   k: int(rng.integers(0, 8))}
            for e, _ in cases + [(binop("div", binop("add", lin, Const(1)), seq), None)]:
                assert evaluate(simplify_index(e), env) == evaluate(e, env)
            assert evaluate(odd, env) == c_div(env[j] * sv + env[i] + 1, sv)
        assert bound(seq) == (0, 12) and bound(i) == (0, 11)


def test_divisions_by_a_tile_count_that_may_be_zero():
    """A tile row taken apart again: ``((f mod T) * 4 + r) mod 4`` and ``div 4`` with T =
    (height + 3) div 4, a count that is 0 for an empty image (then no loop runs): the divisor
    counts as at least 1, so they resolve to ``r`` and ``f mod T``, and keep their values."""
    from ember.tir.analysis import size_bounds
    from ember.tir.expr import size_var

    h, n = size_var("height"), size_var("batch")
    tiles = binop("div", binop("add", h, Const(3)), Const(4))
    f = IterVar("f", extent=binop("mul", n, tiles))
    r = IterVar("r", extent=4)
    row = binop("mul", binop("mod", f, tiles), Const(4))
    y = binop("add", row, r)
    rng = np.random.default_rng(1)
    with size_bounds({"height": 300, "batch": 4}):
        assert bound(binop("mod", f, tiles)) is not None
        assert repr(simplify_index(binop("mod", y, Const(4)))) == repr(r)
        assert repr(simplify_index(binop("div", y, Const(4)))) == repr(simplify_index(binop("mod", f, tiles)))
        for _ in range(200):
            hv, nv = int(rng.integers(1, 301)), int(rng.integers(1, 5))
            env = {h: hv, n: nv, f: int(rng.integers(0, nv * ((hv + 3) // 4))), r: int(rng.integers(0, 4))}
            for e in (binop("mod", y, Const(4)), binop("div", y, Const(4)), binop("div", f, tiles)):
                assert evaluate(simplify_index(e), env) == evaluate(e, env)


def test_linear_form_of_a_shared_subexpression_is_formed_once():
    """An index DAG that shares each level twice (2**40 paths from the root) is formed in linear
    time, and each use gets terms of its own (a caller changing them changes no other)."""
    i = Var("i")
    e = i
    for _ in range(40):
        e = BinOp("add", e, e, "int64")
    terms, k = linear_form(e)
    assert k == 0 and [c for _, c in terms.values()] == [2 ** 40]
    c, base = stride_in(e, i)
    assert c == 2 ** 40 and isinstance(base, Const) and base.value == 0
    again, _ = linear_form(e)
    again.clear()
    assert linear_form(e)[0]

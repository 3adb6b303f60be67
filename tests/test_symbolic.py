"""The algebra of symbolic dimensions (ember.symbolic): exact, canonical, and checked against
plain integer arithmetic at random values of the symbols."""

from __future__ import annotations

import pickle
import random

import pytest

from ember.symbolic import (Sym, SymbolicError, as_dim, bind, compare, dim_max, dim_min, dim_range,
                            exact_div, parse, product, symbol)

b, s = symbol("batch"), symbol("seq")


def test_canonical_forms():
    assert b * s * 768 == 768 * s * b == parse("seq*768*batch")
    assert hash(b * s * 768) == hash(parse("768*batch*seq"))
    assert (s * 768) // 12 == 64 * s
    assert str(b * s * 768) == "768*batch*seq"
    assert s - s == 0 and isinstance(s - s, int)
    assert s * 0 == 0 and (s + 3) - 3 == s
    assert (s + 1) * (s - 1) == s * s - 1
    assert product([b, s, 64, 12]) == 768 * b * s
    assert as_dim("seq") == s and as_dim(5) == 5
    assert s == "seq" and s != "batch" and s != 3


def test_floor_division_and_remainder():
    assert (s * 8 + 3) // 8 == s and (s * 8 + 3) % 8 == 3
    assert (s + 7) // 8 != s
    assert str((s + 7) // 8) == "(seq + 7)//8"
    assert (s % 8) // 8 == 0 and (s % 8) % 8 == s % 8     # the remainder is below 8
    assert ((s + 7) // 8) * 8 - s != 0
    with pytest.raises(SymbolicError):
        s // 0
    with pytest.raises(SymbolicError):
        5 // s


def test_exact_division():
    assert exact_div(768 * b * s, 64 * b * s) == 12
    assert exact_div(768 * b * s, 12) == 64 * b * s
    assert exact_div(768 * b * s, 7) is None
    assert exact_div(s * s + s, s) == s + 1
    assert exact_div(s + 1, s) is None
    assert exact_div(64 * b * s + 64 * b, 16 * s + 16) == 4 * b          # by a sum: a monomial quotient
    assert exact_div(512 * b * s - 3072 * b, b * s - 6 * b) == 512
    assert exact_div(64 * b * s + 1, 16 * s + 16) is None
    assert s // 5 // 2 // 2 == s // 20                                   # one canonical form
    assert ((s - 10) // 5 + 1 - 3) // 2 + 1 == s // 10 - 1
    assert (768 * b * s) // (64 * s) == 12 * b
    with pytest.raises(SymbolicError, match="exact"):
        (s + 1) // s


def test_undecidable_questions_raise():
    with pytest.raises(SymbolicError, match="run time"):
        bool(s)
    with pytest.raises(SymbolicError):
        int(s)
    with pytest.raises(SymbolicError):
        if s > 4:
            pass
    assert s >= 0 and s + 1 > 0 and not (s < 0)       # symbols are never negative
    assert compare(s, "<=", 512) is None
    assert compare(s, "<=", 512, {"seq": 512}) is True
    assert compare(s, ">", 512, {"seq": 384}) is False
    assert dim_min(s, 512, {"seq": 100}) == s and dim_max(s, 512, {"seq": 100}) == 512
    with pytest.raises(SymbolicError):
        dim_min(s, 512)
    assert dim_range(2 * s + 1, {"seq": 10}) == (1, 21)
    assert dim_range(s % 8) == (0, 7)


def test_text_round_trip_and_pickle():
    exprs = [s, b * s * 768, (s + 7) // 8, -(s // 3) + 4, 3 * b * (s % 8), s * s - 2 * s, (b + 1) * (s + 2)]
    for e in exprs:
        assert parse(str(e)) == e, str(e)
        assert pickle.loads(pickle.dumps(e)) == e
    assert parse("(seq + 7)/8") == (s + 7) // 8
    for bad in ("", "seq +", "seq)", "2 $ seq", "(seq"):
        with pytest.raises(SymbolicError):
            parse(bad)


def _random_expr(rng, depth, signed=True):
    """A random expression; without ``signed``, one that is never negative (a valid numerator
    of the floor divisions and remainders of dimensions)."""
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([b, s, symbol("h")]) if rng.random() < 0.7 else rng.randint(0, 9)
    op = rng.choice("+-*/%" if signed else "+*/%")
    if op in "/%":
        x, c = _random_expr(rng, depth - 1, signed=False), rng.randint(1, 9)
        return x // c if op == "/" else x % c
    x, y = _random_expr(rng, depth - 1, signed), _random_expr(rng, depth - 1, signed)
    return {"+": x + y, "-": x - y, "*": x * y}[op]


def _value(e, env):
    return e.evaluate(env) if isinstance(e, Sym) else e


@pytest.mark.parametrize("seed", range(20))
def test_random_expressions_agree_with_integers(seed):
    rng = random.Random(seed)
    for _ in range(30):
        a, c = _random_expr(rng, 3), _random_expr(rng, 2)
        for _ in range(5):
            env = {"batch": rng.randint(0, 40), "seq": rng.randint(0, 40), "h": rng.randint(0, 40)}
            va, vc = _value(a, env), _value(c, env)
            assert _value(a + c, env) == va + vc
            assert _value(a * c, env) == va * vc
            assert _value(a - c, env) == va - vc
            if isinstance(a, Sym) and compare(a, ">=", 0):
                k = rng.randint(1, 12)
                assert _value(a // k, env) == va // k
                assert _value(a % k, env) == va % k
            if isinstance(a, Sym):
                assert _value(parse(str(a)), env) == va
                lo, hi = dim_range(a, {"batch": 40, "seq": 40, "h": 40})
                assert lo <= va and (hi is None or va <= hi)


def test_bind_reads_symbols_from_shapes():
    env = {}
    bind((b, s, 768), (2, 7, 768), env, "input 'x'")
    assert env == {"batch": 2, "seq": 7}
    bind((b, 2 * s), (2, 14), env, "input 'y'")
    with pytest.raises(SymbolicError, match="'seq' is 7"):
        bind((b, s), (2, 8), env, "input 'z'")
    with pytest.raises(SymbolicError, match="expected 768"):
        bind((b, s, 768), (2, 7, 769), {}, "input 'x'")
    with pytest.raises(SymbolicError, match="rank"):
        bind((b, s), (2,), {}, "input 'x'")
    with pytest.raises(SymbolicError, match=r"2\*seq is 14"):
        bind((s, 2 * s), (7, 15), {}, "input 'x'")


def test_compare_bounds_floor_divisions_by_their_quotients():
    from ember.symbolic import compare, symbol

    s = symbol("S")
    assert compare(s - s // 3, ">=", 0) is True              # 3*S - S >= 0
    assert compare(2 * (s // 2), "<=", s) is True
    assert compare(s // 3 + 1, "<=", s) is None              # S = 0
    assert compare(s - 2 * ((s + 2) // 3), ">=", 0) is None  # S = 1 makes it -1


def test_padding_to_whole_windows_is_a_whole_multiple():
    # (c - x % c) % c, as exporters pad to whole windows: x plus it divides by c exactly
    h = symbol("h")
    for x in (h, h // 4, s + 1):
        for c in (2, 4, 7):
            pad = (c - x % c) % c
            assert exact_div(x + pad, c) is not None
            for v in range(0, 60):
                env = {"h": v, "seq": v, "batch": 1}
                xv = _value(x, env)
                assert _value(pad, env) == (c - xv % c) % c and _value((-x) % c, env) == (-xv) % c
                assert _value((2 - 3 * x) % c, env) == (2 - 3 * xv) % c

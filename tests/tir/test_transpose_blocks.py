"""``tir.transform.transpose_blocks``: copies that transpose become blocks of vectors transposed in
registers; a hand-written kernel before and after, the loop nests it must leave alone, and
transpositions of many shapes and lane counts against numpy (the checking interpreter, and C on
this machine)."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ops import get_op
from ember.schedules.cpu_loops import default_schedule
from ember.target import host
from ember.te import placeholder
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.codegen.c import CGenerator
from ember.tir.expr import Const, Load, Ramp, Shuffle, Var
from ember.tir.printer import print_func
from ember.tir.stmt import Buffer, For, PrimFunc, Store
from ember.tir.transform import optimize, transpose_blocks, transpose_vectors
from ember.tir.verify import verify_func as verify

from tir.interp import run_kernel

LANES = host().lanes


def _var(name: str, extent: int) -> Var:
    v = Var(name)
    v.extent = extent
    return v


def _copy(j_kind="serial", j_extent=8, dtype="float32", lanes=4, middle=None):
    """out[j, k] = x[k, j] for x of [lanes, j_extent]: a loop j over x's rows' elements, the
    vector loop k over x's rows (``middle``: a loop of that kind between them)."""
    x = Buffer("x", dtype, lanes * j_extent, const=True)
    out = Buffer("out", dtype, lanes * j_extent)
    j, k = _var("j", j_extent), _var("k", lanes)
    body = Store(out, j * lanes + k, Load(x, k * j_extent + j))
    loop = For(k, lanes, "vectorized", body)
    if middle is not None:
        m = _var("m", 1)
        loop = For(m, 1, middle, loop)
    return PrimFunc("t", [x, out], For(j, j_extent, j_kind, loop))


def test_before_and_after_in_text_form():
    f = _copy()
    assert print_func(f) == (
        "kernel t(const x: float32[32], out: float32[32]):\n"
        "  for j in 0..8:\n"
        "    for vectorized k in 0..4:\n"
        "      out[((j mul 4) add k)] = x[((k mul 8) add j)]\n")
    g = transpose_blocks(f, 4)
    verify(g)
    # the block's rows r0..r3 (x from j_b*4 on, a row of 8 apart), then two rounds of shuffles:
    # bit 0 of the row and the lane index swapped (a0..a3), then bit 1 (the columns)
    r = ["x[ramp((j_b mul 4), 1, 4)]", "x[ramp(((j_b mul 4) add 8), 1, 4)]",
         "x[ramp(((j_b mul 4) add 16), 1, 4)]", "x[ramp(((j_b mul 4) add 24), 1, 4)]"]
    a = [f"shuffle({r[0]}, {r[1]}, [0, 4, 2, 6])", f"shuffle({r[0]}, {r[1]}, [1, 5, 3, 7])",
         f"shuffle({r[2]}, {r[3]}, [0, 4, 2, 6])", f"shuffle({r[2]}, {r[3]}, [1, 5, 3, 7])"]
    assert print_func(g) == (
        "kernel t(const x: float32[32], out: float32[32]):\n"
        "  for j_b in 0..2:\n"
        f"    out[ramp((j_b mul 16), 1, 4)] = shuffle({a[0]}, {a[2]}, [0, 1, 4, 5])\n"
        f"    out[ramp(((j_b mul 16) add 4), 1, 4)] = shuffle({a[1]}, {a[3]}, [0, 1, 4, 5])\n"
        f"    out[ramp(((j_b mul 16) add 8), 1, 4)] = shuffle({a[0]}, {a[2]}, [2, 3, 6, 7])\n"
        f"    out[ramp(((j_b mul 16) add 12), 1, 4)] = shuffle({a[1]}, {a[3]}, [2, 3, 6, 7])\n")
    x = np.arange(32, dtype=np.float32)
    got = run_kernel(g, [x, np.zeros(32, np.float32)])[-1]
    np.testing.assert_array_equal(got, x.reshape(4, 8).T.reshape(-1))


@pytest.mark.parametrize("what", ["parallel j", "parallel between", "bytes", "uneven", "one lane", "no gather"])
def test_loop_nests_that_are_not_left_alone(what):
    if what == "parallel j":
        f = _copy(j_kind="parallel")
    elif what == "parallel between":
        f = _copy(middle="parallel")
    elif what == "bytes":
        f = _copy(dtype="uint8")
    elif what == "uneven":
        f = _copy(j_extent=6)
    elif what == "one lane":
        f = _copy()
    else:
        # the vector loop is contiguous in the source too: a plain copy, vectorized as it is
        x, out = Buffer("x", "float32", 32, const=True), Buffer("out", "float32", 32)
        j, k = _var("j", 8), _var("k", 4)
        f = PrimFunc("t", [x, out], For(j, 8, "serial", For(k, 4, "vectorized", Store(out, j * 4 + k, Load(x, j * 4 + k)))))
    lanes = 1 if what == "one lane" else 4
    assert print_func(transpose_blocks(f, lanes)) == print_func(f)


def test_transpose_vectors_is_the_transposition():
    for n in (2, 4, 8, 16):
        m = np.arange(n * n).reshape(n, n)

        def value(e):
            if isinstance(e, Shuffle):
                return np.concatenate([value(e.a), value(e.b)])[list(e.indices)]
            return m[e.value]

        cols = transpose_vectors([Const(r) for r in range(n)])
        assert len({id(x) for c in cols for x in (c.a, c.b)}) == n      # n shuffles a round, shared
        np.testing.assert_array_equal(np.array([value(c) for c in cols]), m.T)


def _transpose_kernel(shape, perm, lanes):
    """The transposition's kernel as the compiler makes it: the op's compute, the default CPU
    schedule (the output's last axis vectorized) and the loop passes, at ``lanes`` lanes."""
    x = placeholder(shape, "float32", "x")
    out = get_op("transpose").compute({"perm": tuple(perm)}, x)
    s = create_schedule(out)
    default_schedule(s, _Lanes(lanes))
    return optimize(lower(s, "transpose", [x, s.output]), lanes)


class _Lanes:
    """What ``default_schedule`` asks of a target, at ``lanes`` lanes."""

    def __init__(self, lanes):
        self.lanes = lanes
        self.num_cores = 2

    def knob(self, name, default):
        return default


CASES = [((2, 32, 2, 32), (0, 2, 3, 1), True),       # attention's keys transposed, [B, S, H, D] -> [B, H, D, S]
         ((32, 48), (1, 0), True),
         ((3, 16, 40), (0, 2, 1), True),              # 40 is not whole blocks of 16: only smaller lanes
         ((2, 8, 16, 3), (0, 3, 2, 1), False),        # the source's contiguous axis is 3 long
         ((4, 6, 32), (0, 2, 1), False),              # 6 rows: no whole block
         ((8, 16, 8, 4), (0, 2, 1, 3), False)]        # the last axis stays last: no gather


def _blocks(shape, perm, blocks, lanes) -> bool:
    """Whether the kernel is made of transposed blocks: where the output's last axis and the
    source's (the loop along its rows) are whole vectors."""
    return blocks and shape[perm[-1]] % lanes == 0 and shape[-1] % lanes == 0


@pytest.mark.parametrize("lanes", [4, 8, 16])
@pytest.mark.parametrize("shape,perm,blocks", CASES)
def test_transpositions_against_numpy(shape, perm, blocks, lanes):
    f = _transpose_kernel(shape, perm, lanes)
    verify(f)
    assert ("shuffle(" in print_func(f)) == _blocks(shape, perm, blocks, lanes)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = run_kernel(f, [x, np.zeros(x.size, np.float32)])[-1]
    np.testing.assert_array_equal(got, np.transpose(x, perm).reshape(-1))


@pytest.mark.parametrize("shape,perm,blocks", CASES[:3])
def test_transpositions_in_c(shape, perm, blocks):
    from te.kbuild import build_kernels

    f = _transpose_kernel(shape, perm, LANES)
    out_shape = tuple(shape[p] for p in perm)
    mod = build_kernels([(f, [(shape, "float32")], (out_shape, "float32"))], name="transpose_blocks")
    assert ("EMBER_SHUFFLE(" in CGenerator(LANES).kernel(f)) == _blocks(shape, perm, blocks, LANES)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    np.testing.assert_array_equal(mod.run({"k0_in0": x})["k0_out"], np.transpose(x, perm))


@pytest.mark.parametrize("bad", ["lanes", "index"])
def test_the_verifier_refuses_a_shuffle_that_does_not_fit(bad):
    from ember.errors import CodegenError

    x, out = Buffer("x", "float32", 16, const=True), Buffer("out", "float32", 16)
    four = Load(x, Ramp(Const(0), 1, 4), lanes=4)
    other = Load(x, Ramp(Const(8), 1, 8), lanes=8) if bad == "lanes" else Load(x, Ramp(Const(4), 1, 4), lanes=4)
    idx = (0, 1, 2, 3) if bad == "lanes" else (0, 1, 2, 8)
    f = PrimFunc("t", [x, out], Store(out, Ramp(Const(0), 1, 4), Shuffle(four, other, idx)))
    with pytest.raises(CodegenError, match="a shuffle of float32 x 4"):
        verify(f)

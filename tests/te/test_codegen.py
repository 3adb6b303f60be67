"""C code generation details that the op tests reach only by chance: constants at the edges of
their types, lane-wise selects whose branches read outside a buffer, big local buffers
(heap-allocated), integer powers, and unrolled allocations."""

from __future__ import annotations

import numpy as np

from ember import te
from ember.codegen.c import CGenerator
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.target import host
from ember.tir.expr import Const
from ember.tir.stmt import Buffer, For, PrimFunc, Seq, Store
from ember.tir.transform import optimize
from ember.te.tensor import IterVar

from tir.interp import run_kernel

from .kbuild import build_kernels

LANES = host().lanes


def _kernel(out, ins, name):
    s = create_schedule(out)
    if len(out.shape):
        leaves = s.root.leaves
        if leaves[-1].extent >= LANES:
            _, vi = s.root.split(leaves[-1], LANES)
            s.root.vectorize(vi)
    return s, optimize(lower(s, name, list(ins) + [s.output]), LANES)


def test_int64_constants_at_the_edges():
    out = Buffer("out", "int64", 5)
    vals = [-(1 << 63), -(1 << 62) - 5, (1 << 63) - 1, (1 << 62) + 7, -1]
    f = PrimFunc("consts", [out], Seq([Store(out, Const(k), Const(v, "int64")) for k, v in enumerate(vals)]))
    mod = build_kernels([(f, [], ((5,), "int64"))], name="consts")
    np.testing.assert_array_equal(mod.run({})["k0_out"], np.array(vals, dtype=np.int64))


def test_lane_wise_select_reads_are_bounds_checked():
    """A select with a condition per lane computes both branches in vector code; the lanes its
    condition rejects may index outside a buffer (here before the start of ``b``) and must not
    be read from memory."""
    m = te.placeholder((4, 16), "float32", "m")
    b = te.placeholder((4, 16), "float32", "b")
    sel = te.compute((4, 16), lambda i, j: te.select(te.gt(m[i, j], te.const(0.0, "float32")), b[i, j - 3],
                                                     te.const(-1.0, "float32")), name="sel")
    _, f = _kernel(sel, [m, b], "sel")
    assert "ember_vload_checked" in CGenerator(LANES).kernel(f)
    mask = np.where(np.arange(64).reshape(4, 16) % 16 < 3, -1.0, np.random.rand(4, 16)).astype(np.float32)
    data = np.random.rand(4, 16).astype(np.float32)
    want = np.full((4, 16), -1.0, np.float32)
    want.reshape(-1)[3:] = np.where(mask.reshape(-1)[3:] > 0, data.reshape(-1)[:-3], -1.0)
    np.testing.assert_array_equal(run_kernel(f, [mask, data, np.zeros(64)])[-1].reshape(4, 16), want)
    mod = build_kernels([(f, [((4, 16), "float32"), ((4, 16), "float32")], ((4, 16), "float32"))], name="sel")
    np.testing.assert_array_equal(mod.run({"k0_in0": mask, "k0_in1": data})["k0_out"], want)


def test_uniform_select_evaluates_one_branch():
    """A select whose condition is the same for every lane is a C conditional: no checks."""
    a = te.placeholder((3, 16), "float32", "a")
    b = te.placeholder((2, 16), "float32", "b")
    cat = te.compute((5, 16), lambda i, j: te.select(te.ge(i, te.const(3)), b[i - 3, j], a[i, j]), name="cat")
    _, f = _kernel(cat, [a, b], "cat0")
    src = CGenerator(LANES).kernel(f)
    assert "ember_vload_checked" not in src and "EMBER_LOAD_CHECKED" not in src


def test_big_local_buffer_goes_to_the_heap():
    A = te.placeholder((64, 9), "float32", "A")
    B = te.placeholder((9, 1000), "float32", "B")
    k = te.reduce_axis(9, "k")
    mm = te.compute((64, 1000), lambda i, j: te.sum(A[i, k] * B[k, j], [k]), name="mm")
    s = create_schedule(mm)
    for st in s.stages.values():
        if st.is_reduction:
            st.compute_at(s.root, None)          # the whole result in one local buffer
    f = optimize(lower(s, "bigacc", [A, B, s.output]), LANES)
    assert "malloc" in CGenerator(LANES).kernel(f)
    a, b = np.random.rand(64, 9).astype(np.float32), np.random.rand(9, 1000).astype(np.float32)
    mod = build_kernels([(f, [((64, 9), "float32"), ((9, 1000), "float32")], ((64, 1000), "float32"))], name="big")
    np.testing.assert_allclose(mod.run({"k0_in0": a, "k0_in1": b})["k0_out"], a @ b, rtol=1e-5)


def test_nan_propagates_through_max_and_min_vectors():
    a = te.placeholder((2, 16), "float32", "a")
    mx = te.compute((2, 16), lambda i, j: te.maximum(a[i, j], te.const(0.0, "float32")) +
                    te.minimum(a[i, j], te.const(1.0, "float32")), name="mx")
    _, f = _kernel(mx, [a], "mxk")
    data = np.where(np.arange(32).reshape(2, 16) % 3 == 0, np.nan, np.linspace(-2, 2, 32).reshape(2, 16))
    data = data.astype(np.float32)
    mod = build_kernels([(f, [((2, 16), "float32")], ((2, 16), "float32"))], name="nanmax")
    got = mod.run({"k0_in0": data})["k0_out"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(data))


def test_repeated_allocations_from_unrolling():
    i = IterVar("u", "int64", extent=3)
    acc = Buffer("acc", "float32", 2, "local")
    out = Buffer("out", "float32", 3)
    from ember.tir.stmt import Allocate
    from ember.tir.expr import Load, binop

    body = Allocate(acc, Seq([Store(acc, Const(0), binop("mul", Const(2.0, "float32"), Const(1.5, "float32"))),
                              Store(out, i, Load(acc, Const(0)))]))
    f = optimize(PrimFunc("unrolled", [out], For(i, 3, "unrolled", body)), LANES)
    mod = build_kernels([(f, [], ((3,), "float32"))], name="unrolled")
    np.testing.assert_array_equal(mod.run({})["k0_out"], [3.0, 3.0, 3.0])


def test_padding_along_the_vector_axis_is_vectorized():
    """Index comparisons on the vectorized loop become lane masks: the padded copy stays vector
    code, its loads before the start of the row are masked (and bounds-checked)."""
    x = te.placeholder((3, 21), "float32", "x")
    pad = te.compute((3, 26), lambda i, j: te.select(
        te.logical_and(te.ge(j - 2, te.const(0)), te.lt(j - 2, te.const(21))), x[i, j - 2],
        te.const(0.0, "float32")), name="padw")
    _, f = _kernel(pad, [x], "padw")
    src = CGenerator(LANES).kernel(f)
    assert "ember_vsel" in src and "ember_vload_checked" in src
    data = np.random.rand(3, 21).astype(np.float32)
    want = np.pad(data, ((0, 0), (2, 3)))
    np.testing.assert_array_equal(run_kernel(f, [data, np.zeros(78)])[-1].reshape(3, 26), want)
    mod = build_kernels([(f, [((3, 21), "float32")], ((3, 26), "float32"))], name="padw")
    np.testing.assert_array_equal(mod.run({"k0_in0": data})["k0_out"], want)


def test_bool_masks_are_vector_loads_and_stores():
    """Boolean tensors are bytes of 0 / 1 in memory and lane masks in vector code: a select on a
    mask read contiguously or with a stride (a transposed mask), and a comparison stored as
    bool, stay vector code and match numpy."""
    m = te.placeholder((4, 16), "bool", "m")
    mt = te.placeholder((16, 4), "bool", "mt")
    x = te.placeholder((4, 16), "float32", "x")
    sel = te.compute((4, 16), lambda i, j: te.select(
        te.logical_and(m[i, j], te.logical_not(mt[j, i])), x[i, j], te.const(-7.0, "float32")), name="selm")
    cmp = te.compute((4, 16), lambda i, j: te.logical_or(te.gt(x[i, j], te.const(0.5, "float32")), m[i, j]),
                     name="cmpm")
    mask = np.random.default_rng(1).random((4, 16)) < 0.5
    data = np.random.default_rng(2).random((4, 16)).astype(np.float32)
    mask_t = np.random.default_rng(3).random((16, 4)) < 0.5
    want_sel = np.where(mask & ~mask_t.T, data, -7.0)
    for out, ins, want in ((sel, [m, mt, x], want_sel), (cmp, [x, m], (data > 0.5) | mask)):
        _, f = _kernel(out, ins, out.name)
        src = CGenerator(LANES).kernel(f)
        assert "ember_vwiden_u8" in src and "ivdep" not in src, src
        assert out is sel or "ember_vnarrow_u8" in src
        feeds = {"selm": [mask, mask_t, data], "cmpm": [data, mask]}[out.name]
        mod = build_kernels([(f, [(a.shape, str(a.dtype)) for a in feeds], ((4, 16), str(want.dtype)))],
                            name=out.name)
        got = mod.run({f"k0_in{k}": a for k, a in enumerate(feeds)})["k0_out"]
        np.testing.assert_array_equal(got, want)

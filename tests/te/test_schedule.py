"""Schedule primitives preserve what a tensor-expression program computes.

Every (program, schedule) pair is lowered to loop IR and optimized exactly as the compiler does
(``lower`` then ``tir.transform.optimize``), then

* run by the checking interpreter (``tests/tir/interp.py``): results against numpy, and no
  out-of-bounds access, uninitialized read, data race or unwritten output element;
* compiled to C (all pairs in one module) and run: results against numpy.

Schedules that a lowering cannot honour must fail with a clean ``CodegenError``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ember import te
from ember.errors import CodegenError
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.target import host
from ember.tir.transform import optimize

from tir.interp import run_kernel

from .kbuild import build_kernels

LANES = host().lanes
RNG = np.random.default_rng(7)


# ---------------------------------------------------------------------------------------------
# programs: (input shapes, dtype, builder(placeholders) -> output tensor, numpy reference)

def _ew2d(A, B):
    return te.compute(A.shape, lambda i, j: A[i, j] * te.const(2.0, "float32") + B[j], name="ew")


def _transpose(A, B):
    return te.compute((A.shape[1], A.shape[0]), lambda j, i: A[i, j] + B[j], name="tr")


def _matmul(A, B):
    k = te.reduce_axis(A.shape[1], "k")
    return te.compute((A.shape[0], B.shape[1]), lambda i, j: te.sum(A[i, k] * B[k, j], [k]), name="mm")


def _matmul_relu(A, B):
    mm = _matmul(A, B)
    return te.compute(mm.shape, lambda i, j: te.maximum(mm[i, j] + te.const(0.5, "float32"),
                                                         te.const(0.0, "float32")), name="relu")


def _matmul_transposed(A, B):
    mm = _matmul(A, B)
    return te.compute((mm.shape[1], mm.shape[0]), lambda j, i: mm[i, j] * mm[i, j], name="mmt")


def _rowsum_scale(A, B):
    k = te.reduce_axis(A.shape[1], "k")
    s = te.compute((A.shape[0], 1), lambda i, z: te.sum(A[i, k] * B[k], [k]), name="rowsum")
    return te.compute(A.shape, lambda i, j: A[i, j] / s[i, te.const(0)], name="scale")


def _softmax(A, B):
    n, m = A.shape
    r1, r2 = te.reduce_axis(m, "r1"), te.reduce_axis(m, "r2")
    zero = te.const(0)
    mx = te.compute((n, 1), lambda i, z: te.reduce("max", A[i, r1], [r1]), name="mx")
    sm = te.compute((n, 1), lambda i, z: te.sum(te.call("exp", A[i, r2] - mx[i, z]), [r2]), name="sm")
    return te.compute(A.shape, lambda i, j: te.call("exp", A[i, j] - mx[i, zero]) / sm[i, zero] + B[j], name="sfx")


def _argmax(A, B):
    r = te.reduce_axis(A.shape[1], "r")
    return te.compute((A.shape[0],), lambda i: te.arg_reduce(te.gt, A[i, r] + B[r], r), name="am")


def _np_softmax(a, b):
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True) + b


PROGRAMS = {
    "ew2d": (((13, 37), (37,)), _ew2d, lambda a, b: a * 2 + b),
    "transpose": (((13, 37), (37,)), _transpose, lambda a, b: (a + b).T),
    "matmul": (((13, 9), (9, 37)), _matmul, lambda a, b: a @ b),
    "matmul_relu": (((13, 9), (9, 37)), _matmul_relu, lambda a, b: np.maximum(a @ b + 0.5, 0)),
    "matmul_t": (((13, 9), (9, 37)), _matmul_transposed, lambda a, b: ((a @ b) ** 2).T),
    "rowsum": (((13, 37), (37,)), _rowsum_scale, lambda a, b: a / (a @ b)[:, None]),
    "softmax": (((13, 37), (37,)), _softmax, _np_softmax),
    "argmax": (((13, 37), (37,)), _argmax, lambda a, b: np.argmax(a + b, axis=1)),
}


# ---------------------------------------------------------------------------------------------
# schedules of the root stage (its first two axes are i, j: spatial extents 13 and 37, or 37
# and 13 for the transpose; argmax has one axis)

def _ij(s):
    leaves = s.root.leaves
    return leaves[0], leaves[1] if len(leaves) > 1 else None


def sch_none(s):
    pass


def sch_split(f, axis=1):
    def go(s):
        v = s.root.leaves[min(axis, len(s.root.leaves) - 1)]
        s.root.split(v, f)
    go.__name__ = f"split{axis}_{f}"
    return go


def sch_split_vec(s):
    i, j = _ij(s)
    _, ji = s.root.split(i if j is None else j, LANES)
    s.root.vectorize(ji)


def sch_split_vec_par(s):
    i, j = _ij(s)
    if j is None:
        return sch_split_vec(s)
    _, ji = s.root.split(j, LANES)
    s.root.vectorize(ji)
    s.root.parallel(i)


def sch_split_unroll(s):
    i, j = _ij(s)
    _, ji = s.root.split(i if j is None else j, 4)
    s.root.unroll(ji)


def sch_fuse(s):
    i, j = _ij(s)
    if j is not None:
        s.root.fuse(i, j)


def sch_fuse_split_vec(s):
    i, j = _ij(s)
    f = s.root.fuse(i, j) if j is not None else i
    _, fi = s.root.split(f, LANES)
    s.root.vectorize(fi)


def sch_fuse_parallel(s):
    i, j = _ij(s)
    f = s.root.fuse(i, j) if j is not None else i
    s.root.parallel(f)


def sch_reorder(s):
    i, j = _ij(s)
    if j is not None:
        s.root.reorder(j, i)


def sch_tile(s):
    i, j = _ij(s)
    if j is None:
        return
    io, ii = s.root.split(i, 4)
    jo, ji = s.root.split(j, LANES)
    s.root.reorder(io, jo, ii, ji)
    s.root.vectorize(ji)
    s.root.unroll(ii)
    s.root.parallel(io)


def sch_tile_fused_parallel(s):
    i, j = _ij(s)
    if j is None:
        return
    io, ii = s.root.split(i, 2)
    jo, ji = s.root.split(j, 16)
    s.root.reorder(io, jo, ii, ji)
    s.root.parallel(s.root.fuse(io, jo))


def sch_inner_outside(s):
    i, j = _ij(s)
    jo, ji = s.root.split(i if j is None else j, 8)
    s.root.reorder(ji, jo)


def sch_nested_split(s):
    i, j = _ij(s)
    jo, ji = s.root.split(i if j is None else j, 3)
    s.root.split(jo, 2)


def sch_split_fuse_outer(s):
    i, j = _ij(s)
    if j is None:
        return
    jo, ji = s.root.split(j, 8)
    s.root.parallel(s.root.fuse(i, jo))


def sch_split_reorder_middle(s):
    i, j = _ij(s)
    if j is None:
        return
    jo, ji = s.root.split(j, 4)
    s.root.reorder(jo, i, ji)


def sch_vectorize_unsplit(s):
    i, j = _ij(s)
    s.root.vectorize(i if j is None else j)


def sch_unroll_outer(s):
    i, j = _ij(s)
    s.root.unroll(i)


def sch_parallel_inner(s):
    i, j = _ij(s)
    s.root.parallel(i if j is None else j)


def sch_split_exact(s):
    i, j = _ij(s)
    v = i if j is None else j
    s.root.split(v, v.extent)


ROOT_SCHEDULES = [sch_none, sch_split(1), sch_split(4), sch_split(8), sch_split(64), sch_split(5, axis=0),
                  sch_split_exact, sch_split_vec, sch_split_vec_par, sch_split_unroll, sch_fuse, sch_fuse_split_vec,
                  sch_fuse_parallel, sch_reorder, sch_tile, sch_tile_fused_parallel, sch_inner_outside,
                  sch_nested_split, sch_split_fuse_outer, sch_split_reorder_middle, sch_vectorize_unsplit,
                  sch_unroll_outer, sch_parallel_inner]


# schedules of the reduction stages (programs with one): (root schedule, reduction schedule)

def _red(s):
    return [st for st in s.stages.values() if st.is_reduction]


def red_at(level):
    def go(s):
        root = s.root
        for st in _red(s):
            st.compute_at(root, root.leaves[level] if level is not None and level < len(root.leaves) else None)
    go.__name__ = f"compute_at_{level}"
    return go


def red_at_split(s):
    """compute_at inside an uneven split of the root: the tail computes a partial region."""
    root = s.root
    i, j = _ij(s)
    if j is None:
        return
    jo, ji = root.split(j, 8)
    root.vectorize(ji)
    for st in _red(s):
        st.compute_at(root, jo)


def red_split_reduce(f):
    def go(s):
        for st in _red(s):
            ro, ri = st.split(st.reduce_axes[0], f)
            st.reorder(*[v for v in st.leaves if v not in (ro, ri)], ro, ri)
    go.__name__ = f"split_reduce_{f}"
    return go


def red_reduce_outside(s):
    for st in _red(s):
        spatial = [v for v in st.leaves if v not in st.reduce_axes]
        st.reorder(*st.reduce_axes, *spatial)


def red_vectorize(s):
    root = s.root
    i, j = _ij(s)
    if j is None:
        return
    jo, ji = root.split(j, 16)
    for st in _red(s):
        st.compute_at(root, jo)
        sj = st.tensor.axes[-1]
        if sj.extent > 1:
            a, b = st.split(sj, LANES)
            st.reorder(*st.reduce_axes, a, b)
            st.vectorize(b)
            st.unroll(a)


def red_unroll_reduce(s):
    for st in _red(s):
        st.unroll(st.reduce_axes[0])


RED_SCHEDULES = [red_at(None), red_at(0), red_at(1), red_at_split, red_split_reduce(3), red_split_reduce(4),
                 red_split_reduce(64), red_reduce_outside, red_vectorize, red_unroll_reduce]

REDUCTION_PROGRAMS = ["matmul", "matmul_relu", "matmul_t", "rowsum", "softmax", "argmax"]

CASES = [(p, sch) for p in PROGRAMS for sch in ROOT_SCHEDULES] + \
        [(p, sch) for p in REDUCTION_PROGRAMS for sch in RED_SCHEDULES]
IDS = [f"{p}-{sch.__name__}" for p, sch in CASES]


def make(prog: str, sch):
    """(kernel or CodegenError, input arrays, expected output)"""
    shapes, build, ref = PROGRAMS[prog]
    ins = [te.placeholder(sh, "float32", f"in{k}") for k, sh in enumerate(shapes)]
    out = build(*ins)
    s = create_schedule(out)
    arrays = [RNG.standard_normal(sh).astype(np.float32) for sh in shapes]
    if prog == "rowsum":
        arrays[1] = np.abs(arrays[1]) + 0.5
        arrays[0] = np.abs(arrays[0]) + 0.1
    expected = ref(*arrays)
    try:
        sch(s)
        f = optimize(lower(s, f"k_{prog}_{sch.__name__}", ins + [s.output]), LANES)
    except CodegenError as e:
        return e, arrays, expected
    return f, arrays, expected


#: (program, schedule) pairs that lowering rejects with a CodegenError by design
EXPECTED_ERRORS: dict = {}


@pytest.mark.parametrize("prog,sch", CASES, ids=IDS)
def test_schedule_interpreted(prog, sch):
    f, arrays, expected = make(prog, sch)
    if isinstance(f, CodegenError):
        assert (prog, sch.__name__) in EXPECTED_ERRORS, f"unexpected CodegenError: {f}"
        return
    assert (prog, sch.__name__) not in EXPECTED_ERRORS, "lowering now succeeds: update EXPECTED_ERRORS"
    out = np.zeros(expected.size, dtype=np.int64 if expected.dtype.kind == "i" else np.float32)
    got = run_kernel(f, arrays + [out])[-1].reshape(expected.shape)
    if expected.dtype.kind == "i":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def compiled():
    """Every lowerable pair, compiled into one module: name -> (module, output name)."""
    specs, feeds, expect = [], {}, {}
    for prog, sch in CASES:
        f, arrays, expected = make(prog, sch)
        if isinstance(f, CodegenError):
            continue
        k = len(specs)
        specs.append((f, [(a.shape, "float32") for a in arrays],
                      (expected.shape, "int64" if expected.dtype.kind == "i" else "float32")))
        for j, a in enumerate(arrays):
            feeds[f"k{k}_in{j}"] = a
        expect[(prog, sch.__name__)] = (f"k{k}_out", expected)
    mod = build_kernels(specs, name="schedules")
    outs = mod.run(feeds)
    return {key: (outs[name], exp) for key, (name, exp) in expect.items()}


@pytest.mark.parametrize("prog,sch", CASES, ids=IDS)
def test_schedule_compiled(compiled, prog, sch):
    if (prog, sch.__name__) in EXPECTED_ERRORS:
        pytest.skip("lowering rejects this schedule")
    got, expected = compiled[(prog, sch.__name__)]
    if expected.dtype.kind == "i":
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_schedule_steps_are_recorded():
    A = te.placeholder((13, 37), "float32", "A")
    B = te.placeholder((37,), "float32", "B")
    s = create_schedule(_ew2d(A, B))
    i, j = s.root.leaves
    jo, ji = s.root.split(j, 8)
    s.root.vectorize(ji)
    s.root.parallel(s.root.fuse(i, jo))
    assert s.describe().splitlines() == ["ew.split(i1, 8)", "ew.vectorized(i1i)", "ew.fuse(i0, i1o)",
                                         "ew.parallel(i0_i1o)"]


def test_bad_primitives_raise_codegen_errors():
    A = te.placeholder((13, 37), "float32", "A")
    B = te.placeholder((37,), "float32", "B")
    s = create_schedule(_ew2d(A, B))
    i, j = s.root.leaves
    jo, ji = s.root.split(j, 8)
    with pytest.raises(CodegenError):
        s.root.split(j, 4)                      # no longer a leaf
    with pytest.raises(CodegenError):
        s.root.fuse(i, ji)                      # not adjacent
    with pytest.raises(CodegenError):
        s.root.vectorize(j)
    mm = _matmul(A, te.placeholder((37, 5), "float32", "C"))
    s2 = create_schedule(mm)
    red = [st for st in s2.stages.values() if st.is_reduction][0]
    with pytest.raises(CodegenError):
        red.compute_inline()
    with pytest.raises(CodegenError):
        red.compute_at(red, None)


def _producer_consumer():
    A = te.placeholder((13, 37), "float32", "A")
    B = te.placeholder((37,), "float32", "B")
    p = te.compute(A.shape, lambda i, j: te.call("exp", A[i, j]) + B[j], name="prod")
    c = te.compute(A.shape, lambda i, j: p[i, j] * p[i, j] - A[i, j], name="cons")
    a = RNG.standard_normal((13, 37)).astype(np.float32)
    b = RNG.standard_normal(37).astype(np.float32)
    return A, B, p, c, a, b, (np.exp(a) + b) ** 2 - a


@pytest.mark.parametrize("where", ["top", "i", "jo", "ji", "jo_vec"])
def test_compute_at_of_an_elementwise_stage(where):
    """An elementwise producer computed into a local buffer at a loop of its consumer instead
    of being inlined (Halide's compute_at) gives the same result at every loop."""
    A, B, p, c, a, b, want = _producer_consumer()
    s = create_schedule(c)
    i, j = s.root.leaves
    jo, ji = s.root.split(j, LANES)
    if where == "jo_vec":
        s.root.vectorize(ji)
    at = {"top": None, "i": i, "jo": jo, "ji": ji, "jo_vec": jo}[where]
    s[p].compute_at(s.root, at)
    f = optimize(lower(s, f"pc_{where}", [A, B, s.output]), LANES)
    got = run_kernel(f, [a, b, np.zeros(13 * 37)])[-1].reshape(13, 37)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    mod = build_kernels([(f, [((13, 37), "float32"), ((37,), "float32")], ((13, 37), "float32"))],
                        name=f"pc_{where}")
    np.testing.assert_allclose(mod.run({"k0_in0": a, "k0_in1": b})["k0_out"], want, rtol=1e-5, atol=1e-5)


def test_stale_attach_point_is_a_clean_error():
    A, B, p, c, a, b, want = _producer_consumer()
    s = create_schedule(c)
    i, j = s.root.leaves
    s[p].compute_at(s.root, j)
    s.root.split(j, 4)                  # j is no longer a loop
    with pytest.raises(CodegenError, match="no longer a loop"):
        lower(s, "stale", [A, B, s.output])


def test_inlining_the_output_is_a_clean_error():
    A, B, p, c, a, b, want = _producer_consumer()
    s = create_schedule(c)
    s.root.compute_inline()
    with pytest.raises(CodegenError, match="cannot be inlined"):
        lower(s, "inl", [A, B, s.output])


def test_attached_stage_read_at_a_shifted_index_is_a_clean_error():
    A = te.placeholder((13, 37), "float32", "A")
    p = te.compute(A.shape, lambda i, j: A[i, j] * te.const(2.0, "float32"), name="p")
    c = te.compute((13, 36), lambda i, j: p[i, j + 1] - p[i, j], name="c")
    s = create_schedule(c)
    s[p].compute_at(s.root, s.root.leaves[0])
    with pytest.raises(CodegenError):
        lower(s, "shift", [A, s.output])


# ---------------------------------------------------------------------------------------------
# random schedules: any sequence of primitives either lowers to a correct, memory-safe kernel
# or is rejected with a CodegenError

FUZZ_SEEDS = range(80)


def random_schedule(seed: int):
    rng = np.random.default_rng(seed)
    prog = str(rng.choice(list(PROGRAMS)))
    shapes, build, ref = PROGRAMS[prog]
    ins = [te.placeholder(sh, "float32", f"in{k}") for k, sh in enumerate(shapes)]
    s = create_schedule(build(*ins))
    steps = []
    stages = [s.root] + _red(s)
    for _ in range(int(rng.integers(1, 7))):
        st = stages[int(rng.integers(len(stages)))] if rng.random() < 0.7 else s.root
        leaves = list(st.leaves)
        kind = str(rng.choice(["split", "split", "fuse", "reorder", "vectorize", "unroll", "parallel", "compute_at"]))
        try:
            if kind == "split":
                v = leaves[int(rng.integers(len(leaves)))]
                f = int(rng.choice([1, 2, 3, 4, 8, 16, 64]))
                st.split(v, f)
                steps.append(f"{st.tensor.name}.split({v.name}, {f})")
            elif kind == "fuse" and len(leaves) > 1:
                k = int(rng.integers(len(leaves) - 1))
                st.fuse(leaves[k], leaves[k + 1])
                steps.append(f"{st.tensor.name}.fuse({leaves[k].name}, {leaves[k + 1].name})")
            elif kind == "reorder" and len(leaves) > 1:
                perm = [leaves[int(p)] for p in rng.permutation(len(leaves))]
                st.reorder(*perm)
                steps.append(f"{st.tensor.name}.reorder({', '.join(v.name for v in perm)})")
            elif kind in ("vectorize", "unroll", "parallel"):
                v = leaves[int(rng.integers(len(leaves)))]
                getattr(st, kind)(v)
                steps.append(f"{st.tensor.name}.{kind}({v.name})")
            elif kind == "compute_at" and st is not s.root:
                rl = s.root.leaves
                k = int(rng.integers(-1, len(rl)))
                st.compute_at(s.root, rl[k] if k >= 0 else None)
                steps.append(f"{st.tensor.name}.compute_at({rl[k].name if k >= 0 else None})")
        except CodegenError:
            pass
    arrays = [RNG.standard_normal(sh).astype(np.float32) for sh in shapes]
    if prog == "rowsum":
        arrays = [np.abs(a) + 0.5 for a in arrays]
    return prog, ins, s, steps, arrays, ref(*arrays)


@pytest.fixture(scope="module")
def fuzz_kernels():
    out = {}
    for seed in FUZZ_SEEDS:
        prog, ins, s, steps, arrays, expected = random_schedule(seed)
        try:
            f = optimize(lower(s, f"fuzz{seed}", ins + [s.output]), LANES)
        except CodegenError as e:
            f = e
        out[seed] = (prog, steps, f, arrays, expected)
    return out


@pytest.fixture(scope="module")
def fuzz_compiled(fuzz_kernels):
    specs, feeds, names = [], {}, {}
    for seed, (prog, steps, f, arrays, expected) in fuzz_kernels.items():
        if isinstance(f, CodegenError):
            continue
        k = len(specs)
        specs.append((f, [(a.shape, "float32") for a in arrays],
                      (expected.shape, "int64" if expected.dtype.kind == "i" else "float32")))
        for j, a in enumerate(arrays):
            feeds[f"k{k}_in{j}"] = a
        names[seed] = f"k{k}_out"
    outs = build_kernels(specs, name="fuzz").run(feeds)
    return {seed: outs[n] for seed, n in names.items()}


def _assert_same(got, expected, what):
    if expected.dtype.kind == "i":
        np.testing.assert_array_equal(got, expected, err_msg=what)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=what)


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_random_schedule(seed, fuzz_kernels, fuzz_compiled):
    prog, steps, f, arrays, expected = fuzz_kernels[seed]
    what = f"{prog}: {'; '.join(steps)}"
    if isinstance(f, CodegenError):
        return      # rejected cleanly
    out = np.zeros(expected.size)
    _assert_same(run_kernel(f, arrays + [out])[-1].reshape(expected.shape), expected, what)
    _assert_same(fuzz_compiled[seed], expected, what)

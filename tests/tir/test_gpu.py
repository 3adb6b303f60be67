"""GPU kernels in the loop IR: the check pass (``ember.tir.gpu.check_kernel``) and the checking
interpreter's GPU mode (threads of a block up to each barrier, races found as they happen)."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import CodegenError
from ember.tir.expr import Const, Load, Var, binop
from ember.tir.gpu import DeviceLimits, check_kernel, index_bits, optimize
from ember.tir.stmt import Allocate, Barrier, Buffer, For, IfThenElse, PrimFunc, Seq, Store

from .interp import KernelFault, run_kernel

ROWS, COLS, T = 3, 37, 8


def _row_sum(barrier_after_store: bool = True, barrier_in_tree: bool = True, divergent_barrier: bool = False):
    """out[r] = sum(x[r, :]): one block per row, T threads each summing a strided part into shared
    memory, then a tree over the T partial sums (one thread adds two per level)."""
    x = Buffer("x", "float32", ROWS * COLS, const=True)
    out = Buffer("out", "float32", ROWS)
    part = Buffer("part", "float32", T, "shared")
    acc = Buffer("acc", "float32", 1, "local")
    r, t, k = Var("r"), Var("t"), Var("k")
    chunks = -(-COLS // T)
    col = binop("add", binop("mul", k, T), t)
    body = [Store(acc, Const(0), Const(0.0, "float32")),
            For(k, chunks, "serial", IfThenElse(binop("lt", col, COLS),
                Store(acc, Const(0), binop("add", Load(acc, Const(0)),
                                           Load(x, binop("add", binop("mul", r, COLS), col)))))),
            Store(part, t, Load(acc, Const(0)))]
    if barrier_after_store:
        body.append(Barrier())
    half = T // 2
    while half >= 1:
        add = Store(part, t, binop("add", Load(part, t), Load(part, binop("add", t, half))))
        body.append(IfThenElse(binop("lt", t, half), Seq([add, Barrier()]) if divergent_barrier else add))
        if barrier_in_tree and not divergent_barrier:
            body.append(Barrier())
        half //= 2
    body.append(IfThenElse(binop("eq", t, 0), Store(out, r, Load(part, Const(0)))))
    kernel = For(r, ROWS, "blockIdx.x", Allocate(part, For(t, T, "threadIdx.x", Allocate(acc, Seq(body)))))
    return PrimFunc("row_sum", [x, out], kernel)


def _data():
    return np.random.default_rng(0).standard_normal((ROWS, COLS)).astype(np.float32)


def test_tree_reduction_runs_and_checks():
    f = _row_sum()
    launch = check_kernel(f)
    assert launch.grid == (ROWS, 1, 1) and launch.block == (T, 1, 1)
    x = _data()
    out = run_kernel(f, [x, np.zeros(ROWS, np.float32)])[-1]
    np.testing.assert_allclose(out, x.sum(axis=1), rtol=1e-5)


def test_missing_barrier_is_a_race():
    f = _row_sum(barrier_after_store=False)
    with pytest.raises(CodegenError, match="race"):
        check_kernel(f)
    with pytest.raises(KernelFault, match="race|uninitialized"):
        run_kernel(f, [_data(), np.zeros(ROWS, np.float32)])


def test_missing_barrier_in_the_tree_is_a_race():
    f = _row_sum(barrier_in_tree=False)
    with pytest.raises(CodegenError, match="race"):
        check_kernel(f)
    with pytest.raises(KernelFault, match="race|uninitialized"):
        run_kernel(f, [_data(), np.zeros(ROWS, np.float32)])


def test_barrier_under_divergent_condition():
    f = _row_sum(divergent_barrier=True)
    with pytest.raises(CodegenError, match="barrier under a condition"):
        check_kernel(f)
    with pytest.raises(KernelFault, match="barrier"):
        run_kernel(f, [_data(), np.zeros(ROWS, np.float32)])


def test_limits():
    f = _row_sum()
    with pytest.raises(CodegenError, match="threads per block"):
        check_kernel(f, DeviceLimits(max_threads=4))
    with pytest.raises(CodegenError, match="shared memory"):
        check_kernel(f, DeviceLimits(max_shared_bytes=16))
    with pytest.raises(CodegenError, match="blocks along x"):
        check_kernel(f, DeviceLimits(max_grid=(2, 1, 1)))


def test_global_write_race_and_shape_errors():
    out = Buffer("out", "float32", 4)
    b, t = Var("b"), Var("t")
    # every thread of a block stores the block's element: found by the interpreter
    f = PrimFunc("race", [out], For(b, 4, "blockIdx.x", For(t, 2, "threadIdx.x", Store(out, b, Const(1.0, "float32")))))
    check_kernel(f)         # (global memory: the static check looks at shared buffers only)
    with pytest.raises(KernelFault, match="two threads"):
        run_kernel(f, [np.zeros(4, np.float32)])
    # a body outside any thread
    g = PrimFunc("nothreads", [out], For(b, 4, "blockIdx.x", Store(out, b, Const(1.0, "float32"))))
    with pytest.raises(CodegenError, match="threadIdx"):
        check_kernel(g)
    # optimize() puts such a kernel in one thread of one block, and keeps unit thread loops
    i = Var("i")
    h = optimize(PrimFunc("one", [out], For(i, 4, "serial", Store(out, i, Const(0.0, "float32")))))
    assert check_kernel(h).block == (1, 1, 1)
    # a thread loop nested in a serial loop
    bad = PrimFunc("nested", [out], For(b, 4, "blockIdx.x", For(t, 1, "threadIdx.x",
                   For(Var("i"), 2, "serial", For(Var("u"), 2, "threadIdx.y", Store(out, b, Const(1.0, "float32")))))))
    with pytest.raises(CodegenError, match="not at the top"):
        check_kernel(bad)


def test_index_bits():
    assert index_bits(_row_sum()) == 32
    big = Buffer("big", "float32", 1 << 31)
    t = Var("t")
    f = PrimFunc("big", [big], For(t, 1, "threadIdx.x", Store(big, t, Const(0.0, "float32"))))
    assert index_bits(f) == 64


def test_block_only_kernel_gets_one_thread_per_block():
    out = Buffer("out", "float32", 4)
    b = Var("b")
    f = optimize(PrimFunc("blocks", [out], For(b, 4, "blockIdx.x", Store(out, b, Const(1.0, "float32")))))
    launch = check_kernel(f)
    assert launch.grid == (4, 1, 1) and launch.block == (1, 1, 1)
    np.testing.assert_array_equal(run_kernel(f, [np.zeros(4, np.float32)])[0], np.ones(4))

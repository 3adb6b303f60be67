"""The checking interpreter catches what it promises to catch (so its silence means something)."""

from __future__ import annotations

import numpy as np
import pytest

from ember.tir.expr import Broadcast, Const, Load, Ramp, Select, Var, binop
from ember.tir.stmt import Allocate, Buffer, For, PrimFunc, Seq, Store
from ember.te.tensor import IterVar

from .interp import KernelFault, run_kernel


def _loop(name, extent, body_fn, kind="serial"):
    v = IterVar(name, "int64", extent=extent)
    return For(v, extent, kind, body_fn(v))


def test_copy_runs():
    a, out = Buffer("a", "float32", 8, const=True), Buffer("out", "float32", 8)
    f = PrimFunc("copy", [a, out], _loop("i", 8, lambda i: Store(out, i, Load(a, i))))
    _, got = run_kernel(f, [np.arange(8.0), np.zeros(8)])
    np.testing.assert_array_equal(got, np.arange(8.0))


def test_out_of_bounds_load_and_store():
    a, out = Buffer("a", "float32", 8, const=True), Buffer("out", "float32", 8)
    f = PrimFunc("k", [a, out], _loop("i", 8, lambda i: Store(out, i, Load(a, binop("add", i, Const(1))))))
    with pytest.raises(KernelFault, match="out of bounds"):
        run_kernel(f, [np.zeros(8), np.zeros(8)])
    f = PrimFunc("k", [a, out], _loop("i", 9, lambda i: Store(out, i, Load(a, Const(0)))))
    with pytest.raises(KernelFault, match="out of bounds"):
        run_kernel(f, [np.zeros(8), np.zeros(8)])


def test_vector_lanes_are_checked():
    a, out = Buffer("a", "float32", 10, const=True), Buffer("out", "float32", 12)
    f = PrimFunc("k", [a, out], Seq([Store(out, Ramp(Const(0), 1, 4), Load(a, Ramp(Const(8), 1, 4), lanes=4)),
                                     Store(out, Ramp(Const(4), 1, 8), Broadcast(Const(0.0, "float32"), 8))]))
    with pytest.raises(KernelFault, match="out of bounds"):
        run_kernel(f, [np.zeros(10), np.zeros(12)])


def test_vector_select_branches_may_read_out_of_bounds_lanes():
    a, out = Buffer("a", "float32", 4, const=True), Buffer("out", "float32", 8)
    ramp = Ramp(Const(0), 1, 8)
    cond = binop("lt", ramp, Broadcast(Const(4), 8))
    f = PrimFunc("k", [a, out], Store(out, ramp, Select(cond, Load(a, ramp, lanes=8),
                                                           Broadcast(Const(0.0, "float32"), 8))))
    _, got = run_kernel(f, [np.arange(4.0), np.zeros(8)])
    np.testing.assert_array_equal(got, [0, 1, 2, 3, 0, 0, 0, 0])


def test_scalar_select_is_lazy():
    a, out = Buffer("a", "float32", 4, const=True), Buffer("out", "float32", 6)
    f = PrimFunc("k", [a, out], _loop("i", 6, lambda i: Store(out, i, Select(
        binop("lt", i, Const(4)), Load(a, i), Const(-1.0, "float32")))))
    _, got = run_kernel(f, [np.arange(4.0), np.zeros(6)])
    np.testing.assert_array_equal(got, [0, 1, 2, 3, -1, -1])


def test_uninitialized_local_read():
    out = Buffer("out", "float32", 4)
    acc = Buffer("acc", "float32", 4, "local")
    body = Allocate(acc, Seq([Store(acc, Const(0), Const(1.0, "float32")),
                              _loop("i", 4, lambda i: Store(out, i, Load(acc, i)))]))
    with pytest.raises(KernelFault, match="uninitialized"):
        run_kernel(PrimFunc("k", [out], body), [np.zeros(4)])


def test_parallel_races():
    out = Buffer("out", "float32", 4)
    f = PrimFunc("k", [out], _loop("i", 4, lambda i: Store(out, binop("div", i, Const(2)), Const(1.0, "float32")),
                                   kind="parallel"))
    with pytest.raises(KernelFault, match="data race"):
        run_kernel(f, [np.zeros(4)], check_coverage=False)
    acc = Buffer("acc", "float32", 1, "local")
    f = PrimFunc("k", [out], Allocate(acc, _loop("i", 4, lambda i: Seq([
        Store(acc, Const(0), Const(1.0, "float32")), Store(out, i, Load(acc, Const(0)))]), kind="parallel")))
    with pytest.raises(KernelFault, match="data race"):
        run_kernel(f, [np.zeros(4)])


def test_unwritten_output():
    out = Buffer("out", "float32", 5)
    f = PrimFunc("k", [out], _loop("i", 4, lambda i: Store(out, i, Const(1.0, "float32"))))
    with pytest.raises(KernelFault, match="never written"):
        run_kernel(f, [np.zeros(5)])


def test_variable_outside_its_loop():
    out = Buffer("out", "float32", 1)
    v = Var("v")
    with pytest.raises(KernelFault, match="outside its loop"):
        run_kernel(PrimFunc("k", [out], Store(out, Const(0), binop("add", Const(0.0, "float32"),
                                                                  Load(out, v)))), [np.zeros(1)])


def test_index_checks_wrap_once_and_record_failures():
    """IndexCheck: negative indices count from the end once; outside [-n, n) the kernel goes on
    with index 0 (so it stays inside the data) and the failure is recorded, not a fault."""
    from ember.tir.expr import IndexCheck

    data, idx, out = Buffer("d", "float32", 5, const=True), Buffer("i", "int64", 6, const=True), Buffer("o", "float32", 6)
    f = PrimFunc("k", [data, idx, out], _loop("j", 6, lambda j: Store(
        out, j, Load(data, IndexCheck(Load(idx, j), Const(5), "axis 0 of the data")))))
    failed = []
    _, _, got = run_kernel(f, [np.arange(5.0), np.array([0, 4, -1, -5, 5, -6]), np.zeros(6)], failed_checks=failed)
    np.testing.assert_array_equal(got, [0, 4, 4, 0, 0, 0])
    assert [(v, n) for _, v, n in failed] == [(5, 5), (-6, 5)]

"""Kernels over symbolic dimensions: loop extents and buffer sizes are expressions of size
variables (kernel arguments), splits keep correct tails, and every kernel agrees with the
reference interpreter at several sizes from a single compile."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.driver.kernels import group_kernel
from ember.graph.builder import GraphBuilder
from ember.graph.interpreter import run_graph
from ember.graph.types import TensorType
from ember.passes import fuse
from ember.symbolic import symbol
from ember.target import resolve
from ember.tir.expr import SizeVar
from ember.tir.printer import print_func
from ember.tir.stmt import For

N, M, K = symbol("n"), symbol("m"), symbol("k")
BOUNDS = {"n": 37, "m": 23, "k": 19}
SIZES = [{"n": 1, "m": 1, "k": 1}, {"n": 8, "m": 16, "k": 8}, {"n": 37, "m": 23, "k": 19},
         {"n": 9, "m": 3, "k": 17}, {"n": 0, "m": 5, "k": 2}]


def f32(*shape):
    return TensorType(shape, "float32")


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def build(ops, inputs):
    """A graph of ``inputs`` (name -> type) and ``ops(builder, values) -> outputs``."""
    b = GraphBuilder("symk")
    vals = {n: b.input(n, t) for n, t in inputs.items()}
    g = b.finish(list(ops(b, vals)))
    g.bounds = {k: v for k, v in BOUNDS.items() if k in g.symbols()}
    return g


CASES = {
    "broadcast_arith": (lambda b, v: [b.op("mul", [b.op("add", [v["x"], v["row"]]), v["col"]])],
                        {"x": f32(N, M), "row": f32(1, M), "col": f32(N, 1)}),
    "matmul_tiles": (lambda b, v: [b.op("relu", [b.op("matmul", [v["a"], v["w"]])])],
                     {"a": f32(2, N, 16), "w": f32(16, 24)}),
    "matmul_symbolic_inner_and_cols": (lambda b, v: [b.op("matmul", [v["a"], v["c"]])],
                                       {"a": f32(N, K), "c": f32(K, M)}),
    "batched_matmul": (lambda b, v: [b.op("matmul", [v["q"], v["kt"]])],
                       {"q": f32(N, 3, M, 8), "kt": f32(N, 3, 8, M)}),
    "softmax_and_layer_norm": (lambda b, v: [b.op("softmax", [v["x"]], axis=-1),
                                             b.op("layer_norm", [v["y"], v["g"], v["h"]], axis=-1)],
                               {"x": f32(N, M), "y": f32(N, M, 32), "g": f32(32), "h": f32(32)}),
    "reductions": (lambda b, v: [b.op("reduce_mean", [v["x"]], axes=(1,), keepdims=False),
                                 b.op("reduce_max", [v["x"]], axes=(0, 2)),
                                 b.op("argmax", [v["x"]], axis=1, keepdims=False)],
                   {"x": f32(N, M, 5)}),
    "reshape_merge_split": (lambda b, v: [b.op("reshape", [b.op("transpose", [v["x"]], perm=(1, 0, 2))],
                                                     shape=(M * N, 6)),
                                          b.op("reshape", [v["x"]], shape=(N, M, 2, 3))],
                            {"x": f32(N, M, 6)}),
    "concat_slice_pad": (lambda b, v: [b.op("concat", [v["x"], v["y"], v["x"]], axis=1),
                                       b.op("slice", [v["x"]], starts=(0, 0), ends=(N, M), steps=(1, 1)),
                                       b.op("pad", [v["x"]], pads=(1, 0, 2, 3), value=1.5)],
                         {"x": f32(N, M), "y": f32(N, 4)}),
    "gather_arange_where": (lambda b, v: [b.op("gather", [v["table"], v["ids"]]),
                                          b.op("where", [b.op("less", [b.op("cast", [b.op("arange", [], length=M, start=0,
                                                                                            delta=1, dtype="int64")],
                                                                            to="float32"), v["lim"]]),
                                                         v["x"], v["lim"]])],
                            {"table": f32(50, 8), "ids": TensorType((N, M), "int64"), "x": f32(N, M), "lim": f32(N, 1)}),
    "conv_symbolic_image": (lambda b, v: [b.op("conv2d", [v["img"], v["w"]], pads=(1, 1, 1, 1), strides=(1, 1))],
                            {"img": f32(1, 3, N, M), "w": f32(8, 3, 3, 3)}),
}


def feeds_for(g, sizes, seed):
    out = {}
    for k, v in enumerate(g.inputs):
        shape = v.type.concrete(sizes)
        if v.dtype == "int64":
            out[v.name] = np.random.default_rng(seed + k).integers(0, 50, shape)
        else:
            out[v.name] = rand(shape, seed + k)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_symbolic_kernels_match_the_reference(case):
    ops, inputs = CASES[case]
    g = build(ops, inputs)
    module = ember.compile(g, cflags=("-O1",))
    used = set(g.symbols())
    for k, sizes in enumerate(SIZES):
        if case == "reductions" and sizes["n"] == 0:
            continue    # max and argmax over an empty axis have no value
        feeds = feeds_for(g, sizes, k)
        want = run_graph(g, feeds)
        got = list(module.run(feeds).values())
        for a, w in zip(got, want):
            assert a.shape == w.shape, (case, sizes)
            np.testing.assert_allclose(a, w, rtol=2e-5, atol=2e-5, err_msg=f"{case} at {sizes}")
    assert set(module.symbols) == used


def loops(stmt, out):
    if isinstance(stmt, For):
        out.append(stmt)
        loops(stmt.body, out)
    for attr in ("body", "then", "other"):
        if not isinstance(stmt, For) and getattr(stmt, attr, None) is not None:
            loops(getattr(stmt, attr), out)
    for s in getattr(stmt, "stmts", ()):
        loops(s, out)
    return out


def test_kernels_take_size_variables_and_split_with_tails():
    g = build(CASES["matmul_tiles"][0], CASES["matmul_tiles"][1])
    from ember.passes import optimize, pack_weights
    g2 = pack_weights.run(optimize(g, 3), 8)
    (grp,) = fuse(g2)
    f = group_kernel(grp, resolve("cpu"), bounds=BOUNDS)
    assert [v.name for v in f.attrs["size_vars"]] == ["n"] and isinstance(f.attrs["size_vars"][0], SizeVar)
    text = print_func(f)
    # the rows of the register tile run over n: whole tiles, then a tail of n % rows
    extents = [repr(l.extent) for l in loops(f.body, [])]
    assert any("div" in e and "n" in e for e in extents), extents
    assert any("mod" in e and "n" in e for e in extents), extents
    assert "n" in repr(f.params[0].size)
    assert text.count("local matmul_acc") == 2     # the whole row tiles, and the tail

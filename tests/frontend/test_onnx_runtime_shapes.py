"""Operands read at run time that decide the output's shape: the axes of the reductions.  Each
model is compiled once with the operand as a graph input and run with several values, by the
reference interpreter (on the translated graph) and by the artifact, against onnxruntime."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ember
from ember.errors import DataShapeError, IndexOutOfRangeError
from ember.frontend import from_onnx
from ember.graph import run_graph
from onnx_harness import assert_same, run_onnxruntime

RNG = np.random.default_rng(11)


def model(nodes, inputs, opset=18):
    """``inputs``: (name, ONNX dtype, dims) per graph input; one output ``y`` of unknown shape."""
    g = helper.make_graph(nodes, "runtime_shapes", [helper.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                          [onnx.ValueInfoProto(name="y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(m, feeds_list, rtol=1e-5, atol=1e-6):
    """One translation and one compile; every feed through both, against onnxruntime."""
    g = from_onnx(m)
    mod = ember.compile(m, cflags=("-O1",))
    names = [i.name for i in m.graph.input]
    for feeds in feeds_list:
        want = run_onnxruntime(m, feeds)
        assert_same([np.asarray(a) for a in run_graph(g, [feeds[n] for n in names])], want, rtol, atol)
        assert_same(list(mod.run(feeds).values()), want, rtol, atol)
    return mod


# ---- reductions with run-time axes ---------------------------------------------------------------

REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def _axes_values(rank: int, k: int):
    """Every choice of ``k`` distinct axes, some counted from the back."""
    out = []
    for axes in itertools.permutations(range(rank), k):
        out.append([a - rank if (a + len(out)) % 2 else a for a in axes])
    return out


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_at_run_time(op, keepdims):
    shape = [3, 4, 5]
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)],
              [("x", TP.FLOAT, shape), ("axes", TP.INT64, [2])])
    x = RNG.uniform(0.5, 2.0, shape).astype(np.float32)        # positive: log-sums are defined
    mod = check(m, [{"x": x, "axes": np.array(a, np.int64)} for a in _axes_values(3, 2)])
    assert mod.symbols                                       # one artifact, the sizes bound at run time


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("k", [1, 3])
def test_reduce_axes_count_and_open_shape(keepdims, k):
    # open dimensions of the input, and one or all of its axes named
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=keepdims)],
              [("x", TP.FLOAT, ["n", 4, "w"]), ("axes", TP.INT64, [k])], opset=13)
    feeds = []
    for shape in ([2, 4, 3], [1, 4, 6], [5, 4, 1]):
        for axes in _axes_values(3, k)[:4]:
            feeds.append({"x": RNG.standard_normal(shape).astype(np.float32), "axes": np.array(axes, np.int64)})
    check(m, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,dtype", [("ReduceMax", np.int32), ("ReduceMin", np.int64), ("ReduceMean", np.int32),
                                      ("ReduceSum", np.int64), ("ReduceMax", np.bool_)])
def test_reduce_axes_at_run_time_integers(op, dtype):
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)], [("x", tp, [4, 6]), ("axes", TP.INT64, [1])],
              opset=20)                                       # (ReduceMax of bool from opset 20)
    x = RNG.integers(-20, 20, (4, 6)).astype(dtype)
    check(m, [{"x": x, "axes": np.array([a], np.int64)} for a in (0, 1, -1, -2)])


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceLogSumExp"])
def test_reduce_run_time_axes_over_an_empty_axis(op):
    # the axis named is empty at run time: the combiner's identity, as onnxruntime gives
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)],
              [("x", TP.FLOAT, [3, "n"]), ("axes", TP.INT64, [1])])
    check(m, [{"x": np.zeros((3, 0), np.float32), "axes": np.array([1], np.int64)},
              {"x": RNG.standard_normal((3, 2)).astype(np.float32), "axes": np.array([1], np.int64)}])


@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_empty_axes_input(noop):
    # an axes input of no elements: reduce everything, or nothing with noop_with_empty_axes
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0, noop_with_empty_axes=noop)],
              [("x", TP.FLOAT, [2, 3]), ("axes", TP.INT64, [0])])
    g = from_onnx(m)
    assert not any(n.op == "bind_dims" for n in g.nodes)
    check(m, [{"x": RNG.standard_normal((2, 3)).astype(np.float32), "axes": np.zeros(0, np.int64)}])


def test_reduce_bad_run_time_axes_are_errors_of_the_run():
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
              [("x", TP.FLOAT, [2, 3, 4]), ("axes", TP.INT64, [2])])
    mod = ember.compile(m, cflags=("-O1",))
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(IndexOutOfRangeError, match="axes of this ReduceSum"):
        mod(x, np.array([0, 3], np.int64))
    with pytest.raises(IndexOutOfRangeError):
        mod(x, np.array([-4, 1], np.int64))
    with pytest.raises(DataShapeError):
        mod(x, np.array([1, -2], np.int64))                # the same axis twice
    np.testing.assert_allclose(mod(x, np.array([2, 0], np.int64)), x.sum(axis=(0, 2)), rtol=1e-5)


def test_reduce_more_axes_than_dims_is_refused_by_name():
    m = model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])],
              [("x", TP.FLOAT, [2, 3]), ("axes", TP.INT64, [3])])
    with pytest.raises(ember.errors.InvalidModelError, match="ReduceMean.*more axes"):
        from_onnx(m)

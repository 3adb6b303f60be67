"""If and Loop whose condition and trip count only the run decides: compiled once, run by the
artifact with both branches, zero iterations, conditions that stop early and nested regions,
against the reference interpreter and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ember
from ember.errors import UnsupportedOpError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph

F = TensorProto.FLOAT
I64 = TensorProto.INT64
B = TensorProto.BOOL


def _model(nodes, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _check(model, feeds_list, module=None):
    """Compile once; run every feed against onnxruntime and the reference interpreter."""
    graph = from_onnx(model)
    module = module or ember.compile(model, cache=False, cflags=("-O1",))
    for feeds in feeds_list:
        want = _ort(model, feeds)
        ref = run_graph(graph, feeds)
        got = list(module.run(feeds).values())
        for w, r, g in zip(want, ref, got):
            np.testing.assert_allclose(r, w, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    return graph, module


def _vi(name, t, shape):
    return helper.make_tensor_value_info(name, t, shape)


def if_model():
    """y = x * 2 + b if sum(x) > 0 else x - b; z = (sum of the result)."""
    b = helper.make_tensor("b", F, [4], [1.0, 2.0, 3.0, 4.0])
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("t", F, [], [2.0])),
         helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "b"], ["ty"])],
        "then", [], [_vi("ty", F, [2, 4])])
    other = helper.make_graph([helper.make_node("Sub", ["x", "b"], ["ey"])], "else", [], [_vi("ey", F, [2, 4])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", F, [], [0.0])),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
             helper.make_node("Relu", ["y"], ["r"])]
    g = helper.make_graph(nodes, "m", [_vi("x", F, [2, 4])], [_vi("r", F, [2, 4])], initializer=[b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_if_both_branches_one_artifact():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    graph, _ = _check(if_model(), [{"x": x - 2}, {"x": -x}, {"x": x}])
    assert [n.op for n in graph.nodes if n.op == "if"] == ["if"]


def loop_model(with_cond=True, nested_if=False):
    """acc = x; for i < M while cond: acc = acc * 0.5 + i (or, nested: + i if i is even else - 1);
    cond = sum(acc) < limit; outputs acc and the iteration count."""
    body_nodes = [
        helper.make_node("Constant", [], ["half"], value=helper.make_tensor("h", F, [], [0.5])),
        helper.make_node("Mul", ["acc_in", "half"], ["scaled"]),
        helper.make_node("Cast", ["i"], ["fi"], to=F),
    ]
    if nested_if:
        two = helper.make_tensor("two", I64, [], [2])
        zero = helper.make_tensor("zero", I64, [], [0])
        then = helper.make_graph([helper.make_node("Add", ["scaled", "fi"], ["t_out"])], "t", [],
                                 [_vi("t_out", F, [3])])
        other = helper.make_graph([helper.make_node("Constant", [], ["one"], value=helper.make_tensor(
            "o", F, [], [1.0])), helper.make_node("Sub", ["scaled", "one"], ["e_out"])], "e", [],
            [_vi("e_out", F, [3])])
        body_nodes += [helper.make_node("Constant", [], ["c2"], value=two),
                       helper.make_node("Constant", [], ["c0"], value=zero),
                       helper.make_node("Mod", ["i", "c2"], ["r"]),
                       helper.make_node("Equal", ["r", "c0"], ["even"]),
                       helper.make_node("If", ["even"], ["acc_out"], then_branch=then, else_branch=other)]
    else:
        body_nodes.append(helper.make_node("Add", ["scaled", "fi"], ["acc_out"]))
    body_nodes += [helper.make_node("ReduceSum", ["acc_out"], ["s"], keepdims=0),
                   helper.make_node("Less", ["s", "limit"], ["cond_out"]),
                   helper.make_node("Add", ["count_in", "one64"], ["count_out"])]
    body = helper.make_graph(body_nodes, "body",
                             [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc_in", F, [3]), _vi("count_in", I64, [])],
                             [_vi("cond_out", B, []), _vi("acc_out", F, [3]), _vi("count_out", I64, [])])
    one = helper.make_tensor("one64", I64, [], [1])
    zero = helper.make_tensor("count0", I64, [], [0])
    inputs = [_vi("M", I64, []), _vi("x", F, [3]), _vi("limit", F, [])]
    if with_cond:
        inputs.append(_vi("c", B, []))
    loop = helper.make_node("Loop", ["M", "c" if with_cond else "", "x", "count0"], ["acc", "count"], body=body)
    g = helper.make_graph([loop], "m", inputs, [_vi("acc", F, [3]), _vi("count", I64, [])],
                          initializer=[one, zero])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _loop_feeds(with_cond=True):
    x = np.array([1.0, 2.0, 3.0], np.float32)
    cases = [(5, 100.0, True), (0, 100.0, True), (50, 20.0, True), (7, 100.0, False), (1000, 1e9, True)]
    out = []
    for m, lim, c in cases:
        f = {"M": np.array(m, np.int64), "x": x, "limit": np.array(lim, np.float32)}
        if with_cond:
            f["c"] = np.array(c)
        out.append(f)
    return out


def test_loop_run_time_trip_count_and_condition():
    graph, _ = _check(loop_model(), _loop_feeds())
    assert any(n.op == "loop" for n in graph.nodes)


def test_loop_without_condition_input():
    _check(loop_model(with_cond=False), _loop_feeds(with_cond=False))


def test_if_nested_in_loop():
    graph, _ = _check(loop_model(nested_if=True), _loop_feeds())
    (lp,) = [n for n in graph.nodes if n.op == "loop"]
    assert any(n.op == "if" for n in lp.attrs["body"].nodes)

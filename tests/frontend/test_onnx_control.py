"""If and Loop whose condition and trip count only the run decides: compiled once, run by the
artifact with both branches, zero iterations, conditions that stop early and nested regions,
against the reference interpreter and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ember
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


def loop_model(with_cond=True, nested_if=False, with_m=True):
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
    inputs = ([_vi("M", I64, [])] if with_m else []) + [_vi("x", F, [3]), _vi("limit", F, [])]
    if with_cond:
        inputs.append(_vi("c", B, []))
    loop = helper.make_node("Loop", ["M" if with_m else "", "c" if with_cond else "", "x", "count0"], ["acc", "count"],
                            body=body)
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


def test_while_loop_without_trip_count():
    feeds = [{k: v for k, v in f.items() if k != "M"} for f in _loop_feeds()]
    _check(loop_model(with_m=False), feeds[2:4] + [{**feeds[0], "limit": np.array(50.0, np.float32)}])


def test_if_nested_in_loop():
    graph, _ = _check(loop_model(nested_if=True), _loop_feeds())
    (lp,) = [n for n in graph.nodes if n.op == "loop"]
    assert any(n.op == "if" for n in lp.attrs["body"].nodes)


def dynamic_loop_model():
    """x: float32[n, 3]; loop M times: acc = acc * x + 1 (a symbolic shape in the body); If on
    sum(acc) > 0 afterwards picks acc or -acc."""
    body = helper.make_graph(
        [helper.make_node("Mul", ["acc_in", "x"], ["p"]),
         helper.make_node("Constant", [], ["one"], value=helper.make_tensor("o", F, [], [1.0])),
         helper.make_node("Add", ["p", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc_in", F, ["n", 3])],
        [_vi("cond_out", B, []), _vi("acc_out", F, ["n", 3])])
    then = helper.make_graph([helper.make_node("Identity", ["acc"], ["t"])], "t", [], [_vi("t", F, ["n", 3])])
    other = helper.make_graph([helper.make_node("Neg", ["acc"], ["e"])], "e", [], [_vi("e", F, ["n", 3])])
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["acc"], body=body),
             helper.make_node("ReduceSum", ["acc"], ["s"], keepdims=0),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", F, [], [0.0])),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    g = helper.make_graph(nodes, "m", [_vi("M", I64, []), _vi("x", F, ["n", 3])], [_vi("y", F, ["n", 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_regions_with_symbolic_shapes():
    rng = np.random.default_rng(0)
    feeds = [{"M": np.array(m, np.int64), "x": rng.uniform(-1, 1, (n, 3)).astype(np.float32)}
             for m, n in ((3, 2), (0, 5), (4, 100), (2, 1))]
    feeds.append({"M": np.array(3, np.int64), "x": -np.ones((4, 3), np.float32)})
    _check(dynamic_loop_model(), feeds)


def scan_output_model():
    """A Loop over the length of x (a symbolic size without a bound) with a scan output: the
    cumulative sums of x's rows."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["row"], axis=0),
         helper.make_node("Add", ["acc_in", "row"], ["acc_out"]),
         helper.make_node("Identity", ["acc_out"], ["scan"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("acc_in", F, [4])],
        [_vi("cond_out", B, []), _vi("acc_out", F, [4]), _vi("scan", F, [4])])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Constant", [], ["idx"], value=helper.make_tensor("i0", I64, [], [0])),
             helper.make_node("Gather", ["shape", "idx"], ["len"], axis=0),
             helper.make_node("Loop", ["len", "", "zeros"], ["total", "rows"], body=body)]
    zeros = helper.make_tensor("zeros", F, [4], [0.0] * 4)
    g = helper.make_graph(nodes, "m", [_vi("x", F, ["t", 4])], [_vi("total", F, [4]), _vi("rows", F, ["t", 4])],
                          initializer=[zeros])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_loop_scan_output_over_a_symbolic_length():
    rng = np.random.default_rng(1)
    graph, module = _check(scan_output_model(), [{"x": rng.standard_normal((t, 4)).astype(np.float32)}
                                                 for t in (5, 0, 200, 1)])
    (lp,) = [n for n in graph.nodes if n.op == "loop"]
    assert str(lp.attrs["length"]) == "t"
    assert "t" not in graph.bounds          # no limit: a run-time loop needs none


def test_artifact_saved_and_loaded_runs_regions(tmp_path):
    model = loop_model(nested_if=True)
    module = ember.compile(model, cache=False, cflags=("-O1",))
    path = tmp_path / "loop.so"
    module.save(path)
    loaded = ember.load(path)
    _check(model, _loop_feeds(), module=loaded)


def counting_loop_model(with_cond=True):
    """Range's function body: a Loop over a trip count and condition read from inputs, whose
    body passes the condition on, with a scan output (the values before each step)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["prev", "delta"], ["cur"]),
         helper.make_node("Identity", ["prev"], ["row"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("prev", F, [3])],
        [_vi("cond_out", B, []), _vi("cur", F, [3]), _vi("row", F, [3])])
    inputs = [_vi("M", I64, [])] + ([_vi("c", B, [])] if with_cond else []) + [_vi("start", F, [3]),
                                                                                _vi("delta", F, [3])]
    nodes = [helper.make_node("Loop", ["M", "c" if with_cond else "", "start"], ["last", "rows"], body=body)]
    g = helper.make_graph(nodes, "m", inputs, [_vi("last", F, [3]), _vi("rows", F, [None, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("with_cond", [True, False])
def test_loop_scan_outputs_over_a_run_time_trip_count(with_cond):
    """The scan outputs' length is the trip count read at run time (max(M, 0) where the
    condition holds on entry, else 0), bound as a data symbol before the loop: one artifact
    for every count, the rows in a run-time block that grows and shrinks."""
    rng = np.random.default_rng(3)
    feeds = []
    for m, c in ((5, True), (0, True), (40, True), (-3, True), (7, False), (2, True)):
        f = {"M": np.array(m, np.int64), "start": rng.standard_normal(3).astype(np.float32),
             "delta": rng.standard_normal(3).astype(np.float32)}
        if with_cond:
            f["c"] = np.array(c)
        elif not c:
            continue
        feeds.append(f)
    graph, module = _check(counting_loop_model(with_cond), feeds)
    (lp,) = [n for n in graph.nodes if n.op == "loop"]
    assert lp.inputs[0].producer.op == "bind_dims"
    assert not isinstance(lp.attrs["length"], int) and str(lp.attrs["length"]) not in graph.bounds


def early_stop_model(with_m=True):
    """A loop that its body's condition stops (i < stop), with scan outputs (i as float, and
    the carried value's running product)."""
    body = helper.make_graph(
        [helper.make_node("Less", ["i", "stop"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["scan"], to=F),
         helper.make_node("Mul", ["v_in", "v_in"], ["v_out"]),
         helper.make_node("Identity", ["v_out"], ["scan2"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("v_in", F, [2])],
        [_vi("cond_out", B, []), _vi("v_out", F, [2]), _vi("scan", F, []), _vi("scan2", F, [2])])
    nodes = [helper.make_node("Loop", ["M", "", "v"] if with_m else ["", "c", "v"], ["v_final", "rows", "rows2"],
                              body=body)]
    g = helper.make_graph(nodes, "m", [_vi("M", I64, []) if with_m else _vi("c", B, []), _vi("stop", I64, []),
                                       _vi("v", F, [2])],
                          [_vi("v_final", F, [2]), _vi("rows", F, [None]), _vi("rows2", F, [None, 2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_scan_outputs_of_a_loop_its_body_stops():
    """A loop that a run-time condition may stop early: the scan outputs get the trip count's
    rows (a data symbol bound before the loop), the loop gives the iterations it ran, bound
    after it, and the outputs are their first rows; one artifact for every count."""
    v = np.array([1.01, 0.99], np.float32)
    feeds = [{"M": np.array(m, np.int64), "stop": np.array(s, np.int64), "v": v}
             for m, s in ((10, 3), (2, 5), (0, 4), (6, 0), (30, 12), (4, -1), (5, 7))]
    graph, module = _check(early_stop_model(), feeds)
    (lp,) = [n for n in graph.nodes if n.op == "loop"]
    assert lp.attrs["counted"] and lp.inputs[0].producer.op == "bind_dims"


def test_scan_outputs_of_a_loop_without_a_trip_count_are_refused():
    """A loop without a trip count that its body stops has scan outputs of no bound before it
    runs: refused by name."""
    with pytest.raises(ember.errors.EmberError, match="scan outputs of a loop without a trip count"):
        from_onnx(early_stop_model(with_m=False))


def test_long_scan_runs_as_a_loop():
    """A Scan of 50 steps (reversed input, reversed output on axis 1) runs as a loop of the
    artifact instead of 50 inlined copies of its body."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Tanh", ["s_out"], ["y_t"])],
        "body", [_vi("s_in", F, [2]), _vi("x_t", F, [2])], [_vi("s_out", F, [2]), _vi("y_t", F, [2])])
    node = helper.make_node("Scan", ["s", "x"], ["s_final", "y"], body=body, num_scan_inputs=1,
                            scan_input_directions=[1], scan_output_axes=[1], scan_output_directions=[1])
    g = helper.make_graph([node], "m", [_vi("s", F, [2]), _vi("x", F, [50, 2])],
                          [_vi("s_final", F, [2]), _vi("y", F, [2, 50])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])
    rng = np.random.default_rng(2)
    graph, _ = _check(model, [{"s": rng.standard_normal(2).astype(np.float32),
                               "x": rng.standard_normal((50, 2)).astype(np.float32) * 0.1}])
    assert [n.op for n in graph.nodes].count("loop") == 1 and len(graph.nodes) < 10


def test_if_between_convolutions():
    """Convolutions around and inside the branches (the outer ones in the blocked layout at opt
    level 3, converted back at the region's operands)."""
    rng = np.random.default_rng(3)
    w = helper.make_tensor("w", F, [8, 3, 3, 3], rng.standard_normal(8 * 27).astype(np.float32).tolist())
    w2 = helper.make_tensor("w2", F, [8, 8, 3, 3], (rng.standard_normal(8 * 72) * 0.2).astype(np.float32).tolist())
    then = helper.make_graph([helper.make_node("Conv", ["a", "w2"], ["t"], pads=[1, 1, 1, 1])], "t", [],
                             [_vi("t", F, [1, 8, 8, 8])])
    other = helper.make_graph([helper.make_node("Relu", ["a"], ["e"])], "e", [], [_vi("e", F, [1, 8, 8, 8])])
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
             helper.make_node("Conv", ["y", "w2"], ["z"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "m", [_vi("x", F, [1, 3, 8, 8]), _vi("c", B, [])], [_vi("z", F, [1, 8, 8, 8])],
                          initializer=[w, w2])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    graph = from_onnx(model)
    module = ember.compile(model, cache=False)
    for c in (True, False):
        feeds = {"x": x, "c": np.array(c)}
        want = _ort(model, feeds)[0]
        np.testing.assert_allclose(run_graph(graph, feeds)[0], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(module.run(feeds)["z"], want, rtol=1e-4, atol=1e-4)


def structured_if_model():
    """An If on a run-time condition whose branches give a sequence (one tensor each, other
    values), an optional tensor (empty in then_branch) and a tensor after them."""
    x = helper.make_tensor("xv", F, [3], [1.0, 2.0, 3.0])
    then = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["ta"]), helper.make_node("SequenceConstruct", ["ta"], ["ts"]),
         helper.make_node("Optional", [], ["to"], type=helper.make_tensor_type_proto(F, [3])),
         helper.make_node("Add", ["a", "a"], ["tt"])],
        "then", [], [helper.make_tensor_sequence_value_info("ts", F, [3]),
                     helper.make_value_info("to", helper.make_optional_type_proto(
                         helper.make_tensor_type_proto(F, [3]))), _vi("tt", F, [3])])
    other = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=x), helper.make_node("SequenceConstruct", ["c"], ["es"]),
         helper.make_node("Mul", ["a", "c"], ["m"]), helper.make_node("Optional", ["m"], ["eo"]),
         helper.make_node("Sub", ["a", "c"], ["et"])],
        "else", [], [helper.make_tensor_sequence_value_info("es", F, [3]),
                     helper.make_value_info("eo", helper.make_optional_type_proto(
                         helper.make_tensor_type_proto(F, [3]))), _vi("et", F, [3])])
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [3]))
    nodes = [helper.make_node("If", ["c"], ["s", "o", "t"], then_branch=then, else_branch=other),
             helper.make_node("OptionalHasElement", ["o"], ["has"])]
    g = helper.make_graph(nodes, "m", [_vi("c", B, []), _vi("a", F, [3])],
                          [helper.make_tensor_sequence_value_info("s", F, [3]), helper.make_value_info("o", opt),
                           _vi("t", F, [3]), _vi("has", B, [])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_if_with_sequence_and_optional_outputs_at_run_time():
    """Sequences and optionals out of a run-time If: the sequence's items and the optional's
    presence flag and value are outputs of the if node; one module for both conditions."""
    import ember.onnx.backend as backend

    model = structured_if_model()
    graph = from_onnx(model)
    assert [n.op for n in graph.nodes].count("if") == 1
    rep = backend.prepare(model, specialize=False)
    a = np.array([0.5, -1.0, 2.0], np.float32)
    c = np.array([1.0, 2.0, 3.0], np.float32)
    for cond in (True, False, True):
        s, o, t, has = rep.run([np.array(cond), a])
        assert len(s) == 1 and bool(has) == (not cond)
        np.testing.assert_array_equal(s[0], -a if cond else c)
        np.testing.assert_array_equal(t, a + a if cond else a - c)
        if cond:
            assert o is None
        else:
            np.testing.assert_array_equal(o, a * c)
        ref = run_graph(graph, {"c": np.array(cond), "a": a})
        np.testing.assert_array_equal(ref[0], -a if cond else c)


def test_if_branches_of_other_structures_are_refused():
    """Sequences of different lengths from the two branches of a run-time If: refused by name."""
    then = helper.make_graph([helper.make_node("SequenceConstruct", ["a"], ["ts"])], "then", [],
                             [helper.make_tensor_sequence_value_info("ts", F, [3])])
    other = helper.make_graph([helper.make_node("SequenceConstruct", ["a", "a"], ["es"])], "else", [],
                              [helper.make_tensor_sequence_value_info("es", F, [3])])
    nodes = [helper.make_node("If", ["c"], ["s"], then_branch=then, else_branch=other),
             helper.make_node("SequenceLength", ["s"], ["n"])]
    g = helper.make_graph(nodes, "m", [_vi("c", B, []), _vi("a", F, [3])], [_vi("n", I64, [])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ember.errors.EmberError, match="differs in structure"):
        from_onnx(model)


def window_loop_model(shift=0):
    """test_loop11's form: y += x[i + shift : i + shift + 1] per iteration (x constant, 5
    long), the sums as a scan output; trip count and condition are inputs."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Constant", [], ["x"], value=helper.make_tensor("xv", F, [5], [1, 2, 3, 4, 5])),
         helper.make_node("Constant", [], ["shift"], value=helper.make_tensor("sv", I64, [1], [shift])),
         helper.make_node("Constant", [], ["one"], value=helper.make_tensor("ov", I64, [1], [1])),
         helper.make_node("Add", ["i", "shift"], ["start"]),
         helper.make_node("Add", ["start", "one"], ["end"]),
         helper.make_node("Slice", ["x", "start", "end"], ["part"]),
         helper.make_node("Add", ["y_in", "part"], ["y_out"]),
         helper.make_node("Identity", ["y_out"], ["scan"])],
        "body", [_vi("i", I64, []), _vi("cond_in", B, []), _vi("y_in", F, [1])],
        [_vi("cond_out", B, []), _vi("y_out", F, [1]), _vi("scan", F, [1])])
    nodes = [helper.make_node("Loop", ["M", "c", "y"], ["y_final", "rows"], body=body)]
    g = helper.make_graph(nodes, "m", [_vi("M", I64, []), _vi("c", B, []), _vi("y", F, [1])],
                          [_vi("y_final", F, [1]), _vi("rows", F, [None, 1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shift, good, bad", [(0, (5, 0, 3, 1), 6), (-4, (3, 2), 4)])
def test_loop_body_slices_by_the_iteration_number(shift, good, bad):
    """A body slicing x[i:i+1] by its run-time iteration number: a window of one element read
    at that start (no data symbol in the body); a start that ONNX's clamping would shorten (past
    the end, or -1 whose end is 0) is an error of the run, not a wrong result."""
    model = window_loop_model(shift)
    feeds = [{"M": np.array(m, np.int64), "c": np.array(True), "y": np.array([0.5], np.float32)} for m in good]
    feeds.append({"M": np.array(9, np.int64), "c": np.array(False), "y": np.array([2.0], np.float32)})
    graph, module = _check(model, feeds)
    assert not any(n.op == "bind_dims" for lp in graph.nodes if lp.op == "loop" for n in lp.attrs["body"].nodes)
    with pytest.raises(ember.errors.IndexOutOfRangeError, match="start of a slice of 1 element"):
        module.run({"M": np.array(bad, np.int64), "c": np.array(True), "y": np.array([0.5], np.float32)})

"""ONNX models with symbolic dimensions: the frontend keeps them symbolic and folds the shape
arithmetic; the graph (reference interpreter) and the compiled artifact agree with onnxruntime
at several sizes from one compile."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import ember
from ember.errors import InputError, InvalidModelError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from ember.symbolic import symbol

ort = pytest.importorskip("onnxruntime")
B, S = symbol("batch"), symbol("seq")


def model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "dyn", inputs, outputs, initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def check(m, feeds_list, bounds=None, compiled=True):
    """The graph and (once compiled) the artifact agree with onnxruntime on every feed."""
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    g = from_onnx(m, bounds=bounds)
    mod = ember.compile(m, bounds=bounds, cflags=("-O1",)) if compiled else None
    for feeds in feeds_list:
        want = sess.run(None, feeds)
        for got in [run_graph(g, feeds)] + ([list(mod.run(feeds).values())] if mod else []):
            for a, w in zip(got, want):
                assert a.shape == w.shape
                np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
    return g, mod


def rand(*shape):
    return np.random.default_rng(sum(shape) + len(shape)).standard_normal(shape).astype(np.float32)


def attention_like():
    """x [batch, seq, 8] -> split into 2 heads of 4 with Shape/Gather/Concat/Reshape, scores,
    softmax, merged back with a -1 reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        const("i0", np.array(0)), const("i1", np.array(1)), const("ax0", np.array([0])),
        helper.make_node("Gather", ["shp", "i0"], ["nb"], axis=0),
        helper.make_node("Gather", ["shp", "i1"], ["ns"], axis=0),
        helper.make_node("Unsqueeze", ["nb", "ax0"], ["ub"]),
        helper.make_node("Unsqueeze", ["ns", "ax0"], ["us"]),
        const("heads", np.array([2, -1])),
        helper.make_node("Concat", ["ub", "us", "heads"], ["shape4"], axis=0),
        helper.make_node("Reshape", ["x", "shape4"], ["x4"]),
        helper.make_node("Transpose", ["x4"], ["q"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["x4"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "q"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]),
        const("minus1", np.array([-1])),
        helper.make_node("Concat", ["ub", "us", "minus1"], ["shape3"], axis=0),
        helper.make_node("Reshape", ["ctxt", "shape3"], ["merged"]),
        helper.make_node("MatMul", ["merged", "w"], ["proj"]),
        helper.make_node("Add", ["proj", "x"], ["y"]),
        helper.make_node("ReduceMean", ["y"], ["pooled"], axes=[1], keepdims=0),
    ]
    w = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32) * 0.3
    return model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq", 8])],
                 [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", "seq", 8]),
                  helper.make_tensor_value_info("pooled", TP.FLOAT, ["batch", 8])], [("w", w)])


def test_shape_arithmetic_folds_into_symbolic_shapes():
    m = attention_like()
    g, mod = check(m, [{"x": rand(1, 1, 8)}, {"x": rand(2, 5, 8)}, {"x": rand(3, 17, 8)}], bounds={"batch": 4, "seq": 32})
    ops = g.op_histogram()
    assert "gather" not in ops and "concat" not in ops and "arange" not in ops, ops
    reshapes = [n.attrs["shape"] for n in g.nodes if n.op == "reshape"]
    assert (B, S, 2, 4) in reshapes and (B, S, 8) in reshapes
    assert g.outputs[0].type.shape == (B, S, 8) and g.outputs[1].type.shape == (B, 8)
    assert mod.symbols == {"batch": 4, "seq": 32} and mod.limits == {}
    # the bounds are planning sizes: larger inputs grow the arena, the same artifact runs them
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    for x in [rand(1, 33, 8), rand(6, 70, 8), rand(2, 3, 8)]:
        for got, want in zip(mod.run({"x": x}).values(), sess.run(None, {"x": x})):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_symbol_names_from_shapes_and_defaults():
    m = attention_like()
    g = from_onnx(m, shapes={"x": ("n", "len", 8)})
    assert g.inputs[0].type.shape == (symbol("n"), symbol("len"), 8)
    assert g.outputs[1].type.shape == (symbol("n"), 8)
    assert from_onnx(m, shapes={"x": (2, 3, 8)}).outputs[0].type.shape == (2, 3, 8)
    with pytest.raises(InvalidModelError, match="identifiers"):
        from_onnx(m, shapes={"x": ("n m", 3, 8)})
    with pytest.raises(InvalidModelError, match="fixes it to 8"):
        from_onnx(m, shapes={"x": ("n", "len", 9)})


def test_range_constant_of_shape_expand_and_sizes_as_data():
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        const("i1", np.array(1)), const("zero", np.array(0, np.int64)), const("one", np.array(1, np.int64)),
        helper.make_node("Gather", ["shp", "i1"], ["ns"], axis=0),
        helper.make_node("Range", ["zero", "ns", "one"], ["pos"]),                 # [seq]
        helper.make_node("Cast", ["pos"], ["posf"], to=TP.FLOAT),
        helper.make_node("ConstantOfShape", ["shp"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("Add", ["x", "posf"], ["a"]),
        helper.make_node("Add", ["a", "ones"], ["b"]),
        helper.make_node("Mul", ["ids", "ns"], ["scaled"]),                         # a size used as data
        helper.make_node("Expand", ["row", "shp"], ["wide"]),
        helper.make_node("Mul", ["b", "wide"], ["y"]),
    ]
    m = model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq"]),
                      helper.make_tensor_value_info("ids", TP.INT64, ["batch", "seq"]),
                      helper.make_tensor_value_info("row", TP.FLOAT, [1, "seq"])],
              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", "seq"]),
               helper.make_tensor_value_info("scaled", TP.INT64, ["batch", "seq"])])
    feeds = [{"x": rand(b, s), "ids": np.arange(b * s, dtype=np.int64).reshape(b, s), "row": rand(1, s)}
             for b, s in ((1, 1), (2, 6), (3, 11))]
    g, _ = check(m, feeds)
    ops = g.op_histogram()
    assert ops.get("arange", 0) >= 2 and "broadcast_to" in ops, ops


def test_slice_of_a_table_by_a_symbol_bounds_it():
    table = np.arange(32, dtype=np.int64).reshape(1, 32)
    emb = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        const("i1", np.array(1)), const("ax0", np.array([0])), const("start", np.array([0])),
        const("axis1", np.array([1])),
        helper.make_node("Gather", ["shp", "i1"], ["ns"], axis=0),
        helper.make_node("Unsqueeze", ["ns", "ax0"], ["end"]),
        helper.make_node("Slice", ["table", "start", "end", "axis1"], ["pos"]),        # [1, seq]
        helper.make_node("Gather", ["emb", "pos"], ["pe"]),                            # [1, seq, 4]
        helper.make_node("Add", ["x", "pe"], ["y"]),
    ]
    m = model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq", 4])],
              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", "seq", 4])],
              [("table", table), ("emb", emb)])
    g, mod = check(m, [{"x": rand(2, 3, 4)}, {"x": rand(1, 32, 4)}])
    assert g.bounds == {"seq": 32}
    assert mod.symbols["seq"] == 32
    assert from_onnx(m, bounds={"seq": 16}).bounds == {"seq": 16}
    with pytest.raises(InvalidModelError, match=r"Slice node .*lets seq reach 64; declare seq <= 32"):
        from_onnx(m, bounds={"seq": 64})


def test_flatten_and_gather_elements_over_symbolic_shapes():
    nodes = [
        helper.make_node("Flatten", ["mask"], ["flat"], axis=2),                        # [batch*seq, 1]
        helper.make_node("Gather", ["flat", "idx"], ["picked"], axis=0),
        helper.make_node("GatherElements", ["x", "gidx"], ["ge"], axis=1),
    ]
    m = model(nodes, [helper.make_tensor_value_info("mask", TP.FLOAT, ["batch", "seq"]),
                      helper.make_tensor_value_info("idx", TP.INT64, ["n"]),
                      helper.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq"]),
                      helper.make_tensor_value_info("gidx", TP.INT64, ["batch", "seq"])],
              [helper.make_tensor_value_info("picked", TP.FLOAT, ["n", 1]),
               helper.make_tensor_value_info("ge", TP.FLOAT, ["batch", "seq"])])
    feeds = []
    for b, s in ((1, 1), (2, 5), (3, 8)):
        rng = np.random.default_rng(b * s)
        feeds.append({"mask": rand(b, s), "idx": rng.integers(0, b * s, 7), "x": rand(b, s),
                      "gidx": rng.integers(-s, s, (b, s))})
    check(m, feeds)


def test_shapes_the_frontend_cannot_fold_are_errors_naming_the_node():
    nodes = [helper.make_node("Shape", ["x"], ["y"])]
    m = model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3])],
              [helper.make_tensor_value_info("y", TP.INT64, [2])])
    with pytest.raises(InvalidModelError, match="shape computed from symbolic"):
        from_onnx(m)
    nodes = [helper.make_node("Shape", ["x"], ["shp"]), const("i0", np.array(0)),
             helper.make_node("Gather", ["shp", "i0"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["nn"]),
             const("one", np.array([1])),
             helper.make_node("Concat", ["nn", "one"], ["sizes"], axis=0),          # [batch, 1]: one too many
             helper.make_node("Split", ["x", "sizes"], ["y", "z"], axis=0)]
    m = model(nodes, [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3])],
              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", 3]),
               helper.make_tensor_value_info("z", TP.FLOAT, ["batch", 3])], [("ax", np.array([0]))])
    with pytest.raises(InvalidModelError) as info:
        from_onnx(m)
    assert "Split" in str(info.value) and "batch" in str(info.value)


def test_matmul_over_planned_sizes_keeps_vector_loads(tmp_path):
    """Sizes without a limit range over [0, UNBOUNDED] in the index analysis: loops over them are
    still known non-negative, so a packed matmul over [batch, seq] reads its weights as vectors
    (a scalar loop per lane there made BERT 18x slower)."""
    w = np.random.default_rng(1).standard_normal((16, 256)).astype(np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])],
              [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq", 16])],
              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", "seq", 256])], [("w", w)])
    mod = ember.compile(m, bounds={"batch": 2, "seq": 32}, dump=tmp_path, cflags=("-O1",))
    assert mod.limits == {}
    (kernel,) = [p.read_text() for p in tmp_path.glob("*kernel*MatMul*tir.txt")]
    assert "w_packed[ramp(" in kernel and "for simd" not in kernel, kernel[:3000]
    x = rand(3, 50, 16)
    np.testing.assert_allclose(mod(x), x @ w, rtol=1e-5, atol=1e-5)

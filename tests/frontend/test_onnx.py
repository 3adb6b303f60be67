"""The ONNX frontend as a whole: loading, errors, graph inputs and outputs, names, folding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from ember.errors import InvalidModelError, ModelLoadError, OpSchemaError, UnsupportedOpError
from ember.frontend import from_onnx
from ember.frontend.onnx_ops import supported_ops
from ember.graph import run_graph
from onnx_harness import check_model, make_model, rand, run_onnxruntime

f32 = "float32"


def tiny_model():
    x = rand(2, 3)
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu1"),
             helper.make_node("Add", ["r", "w"], ["y"], name="add1")]
    return make_model(nodes, {"x": x}, ["y"], {"w": rand(3)}), x


# ---- loading ------------------------------------------------------------------------------

def test_path_bytes_and_modelproto_agree(tmp_path):
    model, x = tiny_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    want = run_onnxruntime(model, {"x": x})[0]
    for src in (model, str(path), path, model.SerializeToString()):
        np.testing.assert_allclose(run_graph(from_onnx(src), {"x": x})[0], want, rtol=1e-6)


def test_corrupt_missing_and_empty_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe\x00\x01" * 3)
    with pytest.raises(ModelLoadError):
        from_onnx(bad)
    with pytest.raises(ModelLoadError, match="no such model file"):
        from_onnx(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not an ONNX model"):
        from_onnx(empty)
    model, _ = tiny_model()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(model.SerializeToString()[:-7])
    with pytest.raises(ModelLoadError):
        from_onnx(truncated)
    with pytest.raises(ModelLoadError):
        from_onnx(12345)


def test_external_data(tmp_path):
    x = rand(2, 64)
    w = rand(64, 64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    model = make_model(nodes, {"x": x}, ["y"], {"w": w})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    got = run_graph(from_onnx(path), {"x": x})[0]
    np.testing.assert_allclose(got, x @ w, rtol=1e-5, atol=1e-5)
    # a ModelProto whose external data was not loaded cannot be translated on its own
    unloaded = onnx.load(path, load_external_data=False)
    with pytest.raises(ModelLoadError, match="external"):
        from_onnx(unloaded)


# ---- unsupported ops ----------------------------------------------------------------------

def test_unsupported_ops_are_listed_all_at_once_with_counts():
    x = rand(2, 3)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Multinomial", ["a"], ["b"], name="multinomial_1"),
        helper.make_node("FusedThing", ["a"], ["c"], name="fused_1", domain="com.example"),
        helper.make_node("FusedThing", ["c"], ["d"], name="fused_2", domain="com.example"),
        helper.make_node("MaxRoiPool", ["d", "x"], ["e"], name="", pooled_shape=[1, 1]),
        helper.make_node("Reshape", ["x", "x"], ["f"], name="would_fail_later"),
    ]
    model = make_model(nodes, {"x": x}, ["b", "e", "f"], extra_opsets=[("com.example", 1)])
    with pytest.raises(UnsupportedOpError) as info:
        from_onnx(model)
    err = info.value
    assert err.unsupported == {"Multinomial": ["multinomial_1"], "com.example:FusedThing": ["fused_1", "fused_2"],
                               "MaxRoiPool": ["MaxRoiPool_4"]}
    msg = str(err)
    assert "com.example:FusedThing x2" in msg and "Multinomial x1" in msg and "4 node(s) of 3 unsupported" in msg


def test_unsupported_feature_of_a_supported_op():
    x = rand(1, 2, 3, 3, 3, 3)
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool4d", kernel_shape=[2, 2, 2, 2])
    with pytest.raises(UnsupportedOpError, match="4-D"):
        from_onnx(make_model([node], {"x": x}, ["y"]))
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"], name="drop")
    model = make_model([node], {"x": x}, ["y"], {"r": np.array(0.5, f32), "t": np.array(True)}, opset=13)
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        from_onnx(model)


def test_supported_ops_include_the_core_families():
    ops = set(supported_ops())
    for op in ["Conv", "Gemm", "MatMul", "Softmax", "LayerNormalization", "Resize", "Slice", "GatherElements",
               "Einsum", "ReduceMean", "Where", "Expand"]:
        assert op in ops


# ---- graph inputs and shapes --------------------------------------------------------------

def symbolic_model():
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                          ["batch", 3, None])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_symbolic_dims_stay_symbolic_unless_pinned():
    model = symbolic_model()
    g = from_onnx(model)       # a dim_param names its symbol; an unnamed dimension gets one
    assert g.inputs[0].shape == ("batch", 3, "x_2")
    assert g.outputs[0].type == g.inputs[0].type
    g = from_onnx(model, shapes={"x": (4, 3, 5)})
    assert g.inputs[0].shape == (4, 3, 5)
    with pytest.raises(InvalidModelError, match="fixes it to 3"):
        from_onnx(model, shapes={"x": (4, 2, 5)})
    with pytest.raises(InvalidModelError, match="rank"):
        from_onnx(model, shapes={"x": (4, 3)})
    with pytest.raises(InvalidModelError, match="not graph inputs"):
        from_onnx(model, shapes={"x": (4, 3, 5), "nope": (1,)})


def test_initializer_that_is_also_an_input():
    # before IR 4 it is a constant; from IR 4 on an input whose default the caller may override
    x = rand(2, 3)
    w = rand(3)
    node = helper.make_node("Mul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3]),
                                            helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w")])
    old = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    g = from_onnx(old)
    assert [v.name for v in g.inputs] == ["x"] and not g.defaults
    np.testing.assert_allclose(run_graph(g, {"x": x})[0], x * w)
    g = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert [v.name for v in g.inputs] == ["x", "w"] and list(g.defaults) == ["w"]
    np.testing.assert_allclose(run_graph(g, {"x": x})[0], x * w)
    w2 = rand(3)
    np.testing.assert_allclose(run_graph(g, {"x": x, "w": w2})[0], x * w2)


def test_dynamic_operand_is_reported_with_node_and_op():
    # (a Reshape's shape and a reduction's axes are taken at run time; DFT's dft_length is
    # still needed at compile time)
    node = helper.make_node("DFT", ["x", "size"], ["y"], name="dft_dyn", axis=1)
    model = make_model([node], {"x": rand(1, 8, 1), "size": np.array(8, "int64")}, ["y"])
    with pytest.raises(InvalidModelError) as info:
        from_onnx(model)
    assert info.value.node == "dft_dyn" and info.value.op == "DFT" and "constant" in str(info.value)


def test_type_errors_name_the_node():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="bad_add")
    model = make_model([node], {"a": rand(2, 3), "b": rand(2, 3, dtype="int32", hi=5)}, ["y"])
    with pytest.raises(OpSchemaError, match=r"input 1 \('B'\) is tensor\(int32\) but input 0 is tensor\(float\)") as info:
        from_onnx(model)
    assert info.value.node == "bad_add"


# ---- names --------------------------------------------------------------------------------

def test_names_of_inputs_outputs_and_nodes():
    x = rand(2, 3)
    nodes = [helper.make_node("Relu", ["input.1"], ["hidden"], name="/layer/Relu"),
             helper.make_node("Exp", ["hidden"], ["logits:0"]),
             helper.make_node("Identity", ["input.1"], ["same_as_input"]),
             helper.make_node("Constant", [], ["const_out"], value=numpy_helper.from_array(np.ones(2, f32)))]
    model = make_model(nodes, {"input.1": x}, ["logits:0", "same_as_input", "const_out", "hidden"])
    g = from_onnx(model)
    assert [v.name for v in g.inputs] == ["input.1"]
    # an output that is an input goes out under its own name, as onnxruntime gives it
    assert [v.name for v in g.outputs] == ["logits:0", "same_as_input", "const_out", "hidden"]
    assert g.outputs[2].is_const
    assert [n.name for n in g.nodes] == ["/layer/Relu", "Exp_1", "same_as_input"]
    names = [v.name for v in g.values()]
    assert len(names) == len(set(names))
    got = run_graph(g, {"input.1": x})
    np.testing.assert_allclose(got[0], np.exp(np.maximum(x, 0)), rtol=1e-6)
    np.testing.assert_array_equal(got[1], x)


def test_nodes_out_of_order_and_local_functions():
    x = rand(2, 3)
    nodes = [helper.make_node("Exp", ["h"], ["y"], name="second"),
             helper.make_node("Relu", ["x"], ["h"], name="first")]
    model = make_model(nodes, {"x": x}, ["y"])
    np.testing.assert_allclose(run_graph(from_onnx(model), {"x": x})[0], np.exp(np.maximum(x, 0)), rtol=1e-6)

    fn = helper.make_function("custom", "AddRelu", ["a", "b"], ["c"],
                              [helper.make_node("Add", ["a", "b"], ["t"]), helper.make_node("Relu", ["t"], ["c"])],
                              [helper.make_opsetid("", 17)])
    node = helper.make_node("AddRelu", ["x", "x"], ["y"], domain="custom", name="call")
    model = make_model([node], {"x": x}, ["y"], extra_opsets=[("custom", 1)])
    model.functions.append(fn)
    np.testing.assert_allclose(run_graph(from_onnx(model), {"x": x})[0], np.maximum(2 * x, 0), rtol=1e-6)


# ---- folding shape computations ------------------------------------------------------------

def test_shape_chains_fold_to_constants():
    # BERT's Shape -> Gather -> Unsqueeze -> Concat -> Reshape: only the final reshape remains
    x = rand(2, 8, 12)
    i64 = lambda v: numpy_helper.from_array(np.array(v, "int64"))  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=i64(0)),
        helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
        helper.make_node("Constant", [], ["ax"], value=i64([0])),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"]),
        helper.make_node("Constant", [], ["rest"], value=i64([-1, 4, 3])),
        helper.make_node("Concat", ["b1", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"], name="final_reshape"),
        helper.make_node("ConstantOfShape", ["b1"], ["z"], value=numpy_helper.from_array(np.array([2.0], f32))),
        helper.make_node("Mul", ["y", "z2"], ["out"]),
        helper.make_node("Reshape", ["z", "zshape"], ["z2"]),
    ]
    model = make_model(nodes, {"x": x}, ["out"], {"zshape": np.array([2, 1, 1, 1], "int64")})
    g = from_onnx(model)
    assert g.op_histogram() == {"mul": 1, "reshape": 1}
    check_model(model, {"x": x})


def test_functions_of_the_onnx_schema_expand():
    # Attention (opset 23) has no translation of its own: its ONNX function body is translated
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 6, 8), rand(1, 2, 6, 8)
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn", is_causal=1)
    model = make_model([node], {"q": q, "k": k, "v": v}, ["y"], opset=23)
    g = from_onnx(model)
    assert all(n.name.startswith("attn/") for n in g.nodes)
    check_model(model, {"q": q, "k": k, "v": v}, atol=1e-5)


def test_if_with_a_constant_condition_inlines_the_taken_branch():
    x = rand(2, 3)
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", onnx.TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ReduceSum", ["s"], ["n"], keepdims=0),
             helper.make_node("Greater", ["n", "limit"], ["c"]),
             helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    for limit, want in ((1, np.maximum(x, 0)), (100, -x)):
        model = make_model(nodes, {"x": x}, ["y"], {"limit": np.array(limit, "int64")})
        g = from_onnx(model)
        assert len(g.nodes) == 1 and g.nodes[0].name.startswith("branch/")
        np.testing.assert_allclose(run_graph(g, {"x": x})[0], want)


def test_function_bodies_with_nested_subgraphs_and_rotary_embedding():
    theta = np.array([[[1.0, 0.1, 0.0], [-0.2, 0.9, 0.3]]], f32).repeat(2, axis=0)
    node = helper.make_node("AffineGrid", ["theta", "size"], ["grid"], align_corners=1)
    model = make_model([node], {"theta": theta}, ["grid"], {"size": np.array([2, 3, 4, 5], "int64")}, opset=20)
    check_model(model, {"theta": theta}, atol=1e-6)
    x = rand(1, 2, 4, 8)
    pos = np.array([[0, 1, 2, 3]], "int64")
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])
    model = make_model([node], {"x": x}, ["y"], {"cos": rand(8, 4), "sin": rand(8, 4), "pos": pos}, opset=23)
    check_model(model, {"x": x}, atol=1e-6)


@pytest.mark.parametrize("dtype", ["int4", "uint4", "int2", "uint2", "float4_e2m1fn", "float8_e4m3fn",
                                   "float8_e8m0fnu", "bfloat16"])
@pytest.mark.parametrize("raw", [True, False])
def test_packed_initializers_are_unpacked(dtype, raw):
    """ONNX packs int4, uint4 and float4 two to a byte and int2, uint2 four to a byte (low bits
    first, in raw_data or in int32_data); the graph holds one element a byte, as ml_dtypes."""
    from ember.graph.types import np_dtype

    tp = {"int4": onnx.TensorProto.INT4, "uint4": onnx.TensorProto.UINT4, "int2": onnx.TensorProto.INT2,
          "uint2": onnx.TensorProto.UINT2, "float4_e2m1fn": onnx.TensorProto.FLOAT4E2M1,
          "float8_e4m3fn": onnx.TensorProto.FLOAT8E4M3FN, "float8_e8m0fnu": onnx.TensorProto.FLOAT8E8M0,
          "bfloat16": onnx.TensorProto.BFLOAT16}[dtype]
    values = {"int4": [-8, 7, -1, 0, 3], "uint4": [15, 0, 9, 1, 2], "int2": [-2, 1, -1, 0, 1],
              "uint2": [3, 0, 2, 1, 3], "float4_e2m1fn": [-6.0, 0.5, 1.5, -0.0, 3.0],
              "float8_e4m3fn": [448.0, -0.5, 0.015625, -3.0, 0.0], "float8_e8m0fnu": [1.0, 0.25, 2.0 ** 100, 4.0, 0.5],
              "bfloat16": [1.5, -2.0, 3e38, 0.1, -0.0]}[dtype]
    want = np.array(values, np.float64).astype(np_dtype(dtype)).reshape(5, 1)
    if raw:
        t = numpy_helper.from_array(want, "w")
        packed = {"int4": 3, "uint4": 3, "float4_e2m1fn": 3, "int2": 2, "uint2": 2}
        assert len(t.raw_data) == packed.get(dtype, 5 * want.dtype.itemsize)
    else:
        t = helper.make_tensor("w", tp, [5, 1], values if dtype != "float8_e8m0fnu" else want.astype(np.float32))
        assert not t.raw_data
    const = helper.make_tensor("k", tp, [5, 1], values if dtype != "float8_e8m0fnu" else want.astype(np.float32))
    nodes = [helper.make_node("Identity", ["w"], ["y"]), helper.make_node("Constant", [], ["z"], value=const)]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", tp, [5, 1]),
                                              helper.make_tensor_value_info("z", tp, [5, 1])], initializer=[t])
    # Identity takes float8_e8m0 from opset 24 and the 2-bit types from opset 25 on
    opset = {"float8_e8m0fnu": 24, "int2": 25, "uint2": 25}.get(dtype, 23)
    g = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    for out in run_graph(g, {}):
        assert out.dtype == want.dtype and out.shape == (5, 1)
        assert out.tobytes() == want.tobytes()

"""The ONNX backend: models compiled once, models specialized per value of their compile-time
operands, sequences and optionals at the boundary, and clean errors for what Ember cannot hold."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP, helper

import ember.onnx.backend as backend
from ember.errors import EmberError, FrontendError
from ember.frontend import from_onnx
from ember.frontend.onnx import OperandNotConstantError
from onnx_models import check, make_model, onnxruntime_outputs, rand


def test_static_model_compiles_once():
    x = rand(2, 3)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": x}, ["y"])
    rep = backend.prepare(model)
    assert isinstance(rep, backend.EmberRep)
    np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x, 0))


def dft_model(**kw):
    """DFT, whose dft_length (input 'size') is still needed at compile time: a real signal of 8
    samples along axis 1, transformed at the length fed (cut or padded with zeros)."""
    x = rand(1, 8, 1)
    return x, make_model([helper.make_node("DFT", ["x", "size"], ["y"], name="c", axis=1)],
                         {"x": x, "size": np.array(8, "int64")}, ["y"],
                         initializers=kw.get("initializers", {}), opset=17)


def test_run_time_mode_compiles_once_and_does_not_specialize(monkeypatch):
    x = rand(2, 6)
    # a reduction's axes are read at run time: one module for every value
    model = make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])],
                       {"x": x, "axes": np.array([1], "int64")}, ["y"])
    rep = backend.prepare(model, specialize=False)
    assert isinstance(rep, backend.EmberRep)
    for axis in (0, 1):
        np.testing.assert_allclose(rep.run([x, np.array([axis], "int64")])[0], x.sum(axis, keepdims=True), rtol=1e-6)
    # an operand still needed at compile time is refused in run-time mode, not specialized
    _, dft = dft_model()
    with pytest.raises(OperandNotConstantError):
        backend.prepare(dft, specialize=False)
    monkeypatch.setenv(backend.SPECIALIZE_ENV, "0")
    with pytest.raises(OperandNotConstantError):
        backend.prepare(dft)
    # a symbolic input shape stays symbolic: one module runs every size
    relu = make_model([helper.make_node("Relu", ["x"], ["y"])], {}, ["y"],
                      input_infos=[helper.make_tensor_value_info("x", TP.FLOAT, ["n", 3])])
    rep = backend.prepare(relu)
    assert isinstance(rep, backend.EmberRep) and rep.module.is_dynamic
    for n in (1, 4):
        v = rand(n, 3)
        np.testing.assert_array_equal(rep.run([v])[0], np.maximum(v, 0))


def test_an_input_with_a_default_is_fed_or_left_to_its_default():
    # IR >= 4: the initializer "size" is the default of the graph input of that name
    x, model = dft_model(initializers={"size": np.array(8, "int64")})
    rep = backend.prepare(model)
    assert isinstance(rep, backend.SpecializingRep) and rep.input_names == ["x"]
    want = onnxruntime_outputs(model, {"x": x, "size": np.array(8, "int64")})[0]
    np.testing.assert_allclose(rep.run([x])[0], want, rtol=1e-5, atol=1e-5)
    # a length of 6 cuts the signal
    cut = onnxruntime_outputs(model, {"x": x, "size": np.array(6, "int64")})[0]
    np.testing.assert_allclose(rep.run({"x": x, "size": np.array(6, "int64")})[0], cut, rtol=1e-5, atol=1e-5)
    # every input at run time: the size cannot be one (onnxruntime takes it)
    with pytest.raises(OperandNotConstantError):
        backend.prepare(model, specialize=False)
    # a reduction's axes with a default are one: fed or left to the default
    model = make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"])], {"x": rand(2, 6), "axes": np.array([1], "int64")},
                       ["y"], initializers={"axes": np.array([1], "int64")})
    x = rand(2, 6)
    rep = backend.prepare(model, specialize=False)
    assert rep.module.default_inputs == ["axes"]
    np.testing.assert_allclose(rep.run([x])[0], x.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(rep.run({"x": x, "axes": np.array([0], "int64")})[0], x.sum(0, keepdims=True), rtol=1e-6)
    # a Reshape's shape with a default is one: the data decides the output's shape
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"])], {"x": x, "shape": np.array([3, 4], "int64")},
                       ["y"], initializers={"shape": np.array([3, 4], "int64")})
    rep = backend.prepare(model, specialize=False)
    assert rep.module.default_inputs == ["shape"]
    np.testing.assert_array_equal(rep.run([x])[0], x.reshape(3, 4))
    np.testing.assert_array_equal(rep.run({"x": x, "shape": np.array([6, -1], "int64")})[0], x.reshape(6, 2))
    b = rand(6)
    model = make_model([helper.make_node("Neg", ["b"], ["c"]), helper.make_node("Add", ["x", "c"], ["z"])],
                       {"x": x, "b": rand(6)}, ["z"], initializers={"b": np.ones(6, "float32")})
    rep = backend.prepare(model, specialize=False)
    assert rep.module.default_inputs == ["b"]
    np.testing.assert_array_equal(rep.run([x])[0], x - 1)
    np.testing.assert_array_equal(rep.run({"x": x, "b": b})[0], x - b)


def test_operand_not_constant_names_the_graph_inputs():
    # size <- Cast <- Add(s, t): both inputs feed the operand (DFT's dft_length is still
    # needed at compile time)
    nodes = [helper.make_node("Add", ["s", "t"], ["u"]),
             helper.make_node("Cast", ["u"], ["size"], to=TP.INT64),
             helper.make_node("DFT", ["x", "size"], ["y"], name="r", axis=1)]
    model = make_model(nodes, {"x": rand(1, 8, 1), "s": np.array(4, "int32"), "t": np.array(4, "int32")},
                       ["y"], opset=17)
    with pytest.raises(OperandNotConstantError) as info:
        from_onnx(model)
    err = info.value
    assert err.inputs == ("s", "t") and err.node == "r" and err.op == "DFT"
    assert "'s', 't'" in str(err)


def test_run_time_operand_is_specialized_per_value():
    x, model = dft_model()
    rep = backend.prepare(model)
    assert isinstance(rep, backend.SpecializingRep) and rep.fixed == ["size"]
    for size in (8, 6):
        feeds = {"x": x, "size": np.array(size, "int64")}
        np.testing.assert_allclose(rep.run(feeds)[0], onnxruntime_outputs(model, feeds)[0], rtol=1e-5, atol=1e-5)
    # the same operand values reuse the module compiled for them
    first = rep.module_for({"x": x, "size": np.array(8, "int64")})
    assert rep.module_for({"x": x + 1, "size": np.array(8, "int64")}) is first
    assert len(rep._modules) == 2


def test_specialization_discovers_operands_in_stages():
    # the Loop's trip count is an input and its body sums the first i + 1 rows (a slice whose
    # length is the iteration number's, which only an unrolled loop has at compile time); the
    # DFT after it takes its length from another input, found only once the loop is unrolled
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Unsqueeze", ["i", "zero"], ["i1"]),
         helper.make_node("Add", ["i1", "one64"], ["i2"]),
         helper.make_node("Slice", ["one", "zero", "i2", "zero"], ["rows"]),
         helper.make_node("ReduceSum", ["rows", "zero"], ["row"], keepdims=1),
         helper.make_node("Add", ["acc_in", "row"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", TP.INT64, []), helper.make_tensor_value_info("cond_in", TP.BOOL, []),
         helper.make_tensor_value_info("acc_in", TP.FLOAT, [1, 4, 9])],
        [helper.make_tensor_value_info("cond_out", TP.BOOL, []),
         helper.make_tensor_value_info("acc_out", TP.FLOAT, [1, 4, 9])],
        initializer=[onnx.numpy_helper.from_array(np.ones((4, 4, 9), "float32"), "one"),
                     onnx.numpy_helper.from_array(np.array([0], "int64"), "zero"),
                     onnx.numpy_helper.from_array(np.array([1], "int64"), "one64")])
    nodes = [helper.make_node("Loop", ["n", "", "x"], ["y"], body=body),
             helper.make_node("Reshape", ["y", "signal"], ["s"]),
             helper.make_node("DFT", ["s", "size"], ["z"], axis=1)]
    x = rand(1, 4, 9)
    model = make_model(nodes, {"x": x, "n": np.array(3, "int64"), "size": np.array(36, "int64")}, ["z"],
                       initializers={"signal": np.array([1, 36, 1], "int64")}, opset=17)
    feeds = {"x": x, "n": np.array(3, "int64"), "size": np.array(36, "int64")}
    # (onnx's reference evaluator runs no iteration of a Loop without a condition input;
    # onnxruntime's transform of 36 samples is within 1e-4 of the exact one)
    rep = check(model, feeds, rtol=1e-4, atol=1e-3, expected=onnxruntime_outputs(model, feeds))
    assert sorted(rep.fixed) == ["n", "size"]


def test_data_dependent_shapes_are_computed_for_the_values_given():
    x = np.array([[1, 0, 3], [0, 0, 2]], "float32")
    model = make_model([helper.make_node("NonZero", ["x"], ["y"])], {"x": x}, ["y"])
    check(model, {"x": x})


def test_unrepresentable_dtypes_fail_at_prepare_naming_the_type():
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TP.FLOAT)], "g",
                              [helper.make_tensor_value_info("x", TP.FLOAT6E2M3, [3])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    with pytest.raises(FrontendError, match="FLOAT6E2M3"):
        backend.prepare(model)
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=TP.FLOAT6E3M2)], {"x": rand(3)}, ["y"],
                       opset=25)
    with pytest.raises(FrontendError, match="FLOAT6E3M2"):
        backend.prepare(model)


def test_narrow_and_bfloat16_values_cross_the_boundary():
    """float8, int4 and bfloat16 graph inputs and outputs, passed through untouched (a copy of
    their bytes) and converted, as ml_dtypes arrays."""
    import ml_dtypes

    x8 = np.array([0.5, -448, np.nan, 3], ml_dtypes.float8_e4m3fn)
    x4 = np.array([-8, 7, -1], ml_dtypes.int4)
    xb = np.array([1.5, -2.25, 1e30, np.inf], ml_dtypes.bfloat16)
    nodes = [helper.make_node("Identity", ["x8"], ["y8"]), helper.make_node("Identity", ["x4"], ["y4"]),
             helper.make_node("Identity", ["xb"], ["yb"]),
             helper.make_node("Cast", ["x8"], ["f8"], to=TP.FLOAT),
             helper.make_node("Cast", ["x4"], ["f4"], to=TP.FLOAT16),
             helper.make_node("Cast", ["xb"], ["fb"], to=TP.FLOAT8E5M2, saturate=0)]
    model = make_model(nodes, {"x8": x8, "x4": x4, "xb": xb}, ["y8", "y4", "yb", "f8", "f4", "fb"], opset=23)
    y8, y4, yb, f8, f4, fb = backend.prepare(model).run([x8, x4, xb])
    for got, want in ((y8, x8), (y4, x4), (yb, xb)):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    np.testing.assert_array_equal(f8, x8.astype(np.float32))
    np.testing.assert_array_equal(f4, np.array([-8, 7, -1], np.float16))
    assert fb.dtype == ml_dtypes.float8_e5m2
    np.testing.assert_array_equal(fb.astype(np.float32), [1.5, -2.0, np.inf, np.inf])


def _seq_info(name, elem=TP.FLOAT):
    return helper.make_tensor_sequence_value_info(name, elem, None)


def test_sequence_inputs_and_outputs():
    nodes = [helper.make_node("SequenceInsert", ["s", "t"], ["u"]),
             helper.make_node("SequenceLength", ["u"], ["n"])]
    a, b, t = rand(2, 3), rand(4), rand(1)
    model = make_model(nodes, {}, [], input_infos=[_seq_info("s"), helper.make_tensor_value_info("t", TP.FLOAT, [1])],
                       output_infos=[_seq_info("u"), helper.make_tensor_value_info("n", TP.INT64, [])])
    rep = backend.prepare(model)
    u, n = rep.run([[a, b], t])
    assert len(u) == 3 and int(n) == 3
    for got, want in zip(u, [a, b, t]):
        np.testing.assert_array_equal(got, want)
    u, n = rep.run([[], t])          # another structure: compiled again
    assert len(u) == 1 and int(n) == 1


def test_optional_inputs_and_outputs():
    opt = helper.make_tensor_type_proto(TP.FLOAT, None)
    opt_info = helper.make_value_info("o", helper.make_optional_type_proto(opt))
    nodes = [helper.make_node("OptionalHasElement", ["o"], ["has"]),
             helper.make_node("Identity", ["o"], ["same"])]
    model = make_model(nodes, {}, [], opset=18, input_infos=[opt_info],
                       output_infos=[helper.make_tensor_value_info("has", TP.BOOL, []),
                                     helper.make_value_info("same", helper.make_optional_type_proto(opt))])
    rep = backend.prepare(model)
    has, same = rep.run([None])
    assert not bool(has) and same is None
    x = rand(2, 2)
    has, same = rep.run([x])
    assert bool(has)
    np.testing.assert_array_equal(same, x)


def test_optional_tensor_inputs_in_run_time_mode():
    """Run-time mode takes an optional tensor input as the tensor and its presence flag: one
    module for the empty optional and values of every size; OptionalGetElement of an empty one
    is an error of the run."""
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, ["n", 3]))
    nodes = [helper.make_node("Identity", ["o"], ["same"]),
             helper.make_node("OptionalHasElement", ["o"], ["has"])]
    model = make_model(nodes, {}, [], opset=18, input_infos=[helper.make_value_info("o", opt)],
                       output_infos=[helper.make_value_info("same", opt),
                                     helper.make_tensor_value_info("has", TP.BOOL, [])])
    rep = backend.prepare(model, specialize=False)
    assert isinstance(rep, backend.EmberRep) and rep.module.input_names == ["o?", "o"]
    for x in (None, rand(2, 3), None, rand(5, 3)):
        same, has = rep.run([x])
        assert bool(has) == (x is not None)
        if x is None:
            assert same is None
        else:
            np.testing.assert_array_equal(same, x)
    get = make_model([helper.make_node("OptionalGetElement", ["o"], ["v"]), helper.make_node("Relu", ["v"], ["y"])],
                     {}, [], opset=18, input_infos=[helper.make_value_info("o", opt)],
                     output_infos=[helper.make_tensor_value_info("y", TP.FLOAT, ["n", 3])])
    rep = backend.prepare(get, specialize=False)
    x = rand(4, 3)
    np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x, 0))
    with pytest.raises(EmberError, match="the optional 'o', which is empty"):
        rep.run([None])
    np.testing.assert_array_equal(rep.run([x[:1]])[0], np.maximum(x[:1], 0))


def test_symbolic_input_shapes_are_pinned_from_the_values():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["batch", 3])])
    rep = backend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    for n in (1, 4):
        x = rand(n, 3)
        np.testing.assert_array_equal(rep.run([x])[0], np.maximum(x, 0))

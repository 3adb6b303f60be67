"""Operands that ONNX lets a model compute at run time and that change no shape (Trilu's k,
CumSum's, CumProd's and DFT's axis (a one-sided DFT's decides the shape: the length along it is
bound), Dropout's training_mode, Pad's constant_value): compiled once with the operand as a graph input, the artifact takes
its value at run time.  Each model is compiled once and run with several values against onnx's
reference evaluator and onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import ember
from ember.errors import IndexOutOfRangeError
from onnx_harness import assert_same, make_model, rand, run_onnx_reference, run_onnxruntime


def compiled_once(model):
    return ember.compile(model, cflags=("-O1",))


def check_values(model, module, feeds_list):
    for feeds in feeds_list:
        got = list(module.run(feeds).values())
        assert_same(got, run_onnx_reference(model, feeds))
        assert_same(got, run_onnxruntime(model, feeds))


@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_k_at_run_time(upper):
    x = rand(2, 4, 5)
    model = make_model([helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper)],
                       {"x": x, "k": np.array(0, "int64")}, ["y"], opset=14)
    module = compiled_once(model)
    check_values(model, module, [{"x": x, "k": np.array(k, "int64")} for k in (-7, -1, 0, 2, 6)])


@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
@pytest.mark.parametrize("attrs", [{}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}])
def test_cumulative_axis_at_run_time(op, attrs):
    x = rand(3, 4, 5, lo=0.5, hi=1.5)
    model = make_model([helper.make_node(op, ["x", "axis"], ["y"], **attrs)],
                       {"x": x, "axis": np.array(0, "int32")}, ["y"], opset=11 if op == "CumSum" else 26)
    module = compiled_once(model)
    feeds = [{"x": x, "axis": np.array(a, "int32")} for a in (0, 1, 2, -1, -3)]
    if op == "CumSum":
        check_values(model, module, feeds)
    else:       # onnxruntime may not know CumProd yet: the reference evaluator alone
        for f in feeds:
            assert_same(list(module.run(f).values()), run_onnx_reference(model, f))


@pytest.mark.parametrize("shape", [(2, 3), (4,)])
def test_cumsum_axis_out_of_range_is_an_error_of_the_run(shape):
    x = rand(*shape)
    model = make_model([helper.make_node("CumSum", ["x", "axis"], ["y"])],
                       {"x": x, "axis": np.array(0, "int64")}, ["y"], opset=14)
    module = compiled_once(model)
    r = len(shape)
    check_values(model, module, [{"x": x, "axis": np.array(a, "int64")} for a in (0, -1)])
    for bad in (r, -r - 1, 7):
        with pytest.raises(IndexOutOfRangeError, match="axis of this CumSum"):
            module.run({"x": x, "axis": np.array(bad, "int64")})


@pytest.mark.parametrize("inverse", [0, 1])
def test_dft_axis_at_run_time(inverse):
    x = rand(2, 6, 6, 2)
    model = make_model([helper.make_node("DFT", ["x", "", "axis"], ["y"], inverse=inverse)],
                       {"x": x, "axis": np.array(1, "int64")}, ["y"], opset=20)
    module = compiled_once(model)
    for a in (0, 1, 2, -2, -3):
        feeds = {"x": x, "axis": np.array(a, "int64")}
        assert_same(list(module.run(feeds).values()), run_onnx_reference(model, feeds), rtol=1e-4, atol=1e-5)
    for bad in (3, -1, -5):
        with pytest.raises(IndexOutOfRangeError):
            module.run({"x": x, "axis": np.array(bad, "int64")})


def test_one_sided_dft_axis_that_decides_the_shape_at_run_time():
    # the transformed axis's length differs per axis: the run's is bound (a data dimension)
    x = rand(1, 6, 8, 1)
    model = make_model([helper.make_node("DFT", ["x", "", "axis"], ["y"], onesided=1)],
                       {"x": x, "axis": np.array(1, "int64")}, ["y"], opset=20)
    module = compiled_once(model)
    for a in (0, 1, 2, -2):
        feeds = {"x": x, "axis": np.array(a, "int64")}
        assert_same(list(module.run(feeds).values()), run_onnx_reference(model, feeds), rtol=1e-4, atol=1e-5)
    # the inverse of a one-sided spectrum: along axis 0, of one element, it has no length (the
    # op is refused there), which only a run that names it finds
    x = rand(1, 6, 5, 2)
    model = make_model([helper.make_node("DFT", ["x", "", "axis"], ["y"], onesided=1, inverse=1)],
                       {"x": x, "axis": np.array(1, "int64")}, ["y"], opset=20)
    module = compiled_once(model)
    for a in (1, 2, -3):
        feeds = {"x": x, "axis": np.array(a, "int64")}
        assert_same(list(module.run(feeds).values()), run_onnx_reference(model, feeds), rtol=1e-4, atol=1e-5)
    for bad in (0, -4, 3):
        with pytest.raises(IndexOutOfRangeError, match="axis of this DFT.*refused along 0"):
            module.run({"x": x, "axis": np.array(bad, "int64")})


@pytest.mark.parametrize("ratio_given", [True, False])
def test_dropout_training_mode_at_run_time(ratio_given):
    x = rand(3, 4)
    names = ["x", "r", "t"] if ratio_given else ["x", "", "t"]
    inputs = {"x": x, "r": np.array(0.5, "float32"), "t": np.array(False)} if ratio_given else \
        {"x": x, "t": np.array(False)}
    model = make_model([helper.make_node("Dropout", names, ["y", "mask"])], inputs, ["y", "mask"], opset=13)
    module = compiled_once(model)
    runs = [{**inputs, "t": np.array(False)}]
    if ratio_given:
        runs.append({**inputs, "r": np.array(0.0, "float32"), "t": np.array(True)})
    check_values(model, module, runs)
    # random dropping is not something Ember runs: refused at run time, never a wrong result
    with pytest.raises(IndexOutOfRangeError, match="random dropping"):
        module.run({**inputs, "t": np.array(True)})


@pytest.mark.parametrize("pads", [[1, 2, 0, 1], [0, -1, 2, 1]])
def test_pad_constant_value_at_run_time(pads):
    x = rand(3, 4)
    model = make_model([helper.make_node("Pad", ["x", "pads", "v"], ["y"])], {"x": x, "v": np.array(0, "float32")},
                       ["y"], initializers={"pads": np.array(pads, "int64")}, opset=18)
    module = compiled_once(model)
    for v in (0.0, -2.5, 7.0):
        feeds = {"x": x, "v": np.array(v, "float32")}
        got = list(module.run(feeds).values())
        assert_same(got, run_onnxruntime(model, feeds))
        if min(pads) >= 0:          # (onnx's reference evaluator pads by numpy: no negative pads)
            assert_same(got, run_onnx_reference(model, feeds))

"""The corpus's comparison with onnxruntime (check.py) on small hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

from .check import relative_error

ort = pytest.importorskip("onnxruntime")


def test_probability_map_near_zero_is_measured_against_its_range():
    # PP-OCRv4's detector ends in Conv -> Sigmoid; at random inputs every probability is below
    # 1e-4, where onnxruntime's Sigmoid is off by up to 1e-7 absolute (it gives 0 from -18 on):
    # relative to the largest value that is 1e-3, relative to the range [0, 1] it is 1e-7
    import ember

    w = np.full((1, 2, 3, 3), 0.5, np.float32)
    b = np.array([-19.0], np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 2, "h", "w"])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, 1, "h", "w"])],
                          [helper.make_tensor("w", TP.FLOAT, w.shape, w.ravel()),
                           helper.make_tensor("b", TP.FLOAT, b.shape, b)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((1, 2, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ember.compile(m).run({"x": x})["y"]
    # Ember's Sigmoid is accurate in relative terms there, onnxruntime's is not
    pre = ember.compile(helper.make_model(helper.make_graph(nodes[:1], "g", g.input, [
        helper.make_tensor_value_info("c", TP.FLOAT, [1, 1, "h", "w"])], g.initializer),
        opset_imports=[helper.make_opsetid("", 17)])).run({"x": x})["c"]
    exact = 1 / (1 + np.exp(-pre.astype(np.float64)))
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    assert np.abs(want).max() < 1e-4 and relative_error(got, want) > 1e-4
    assert relative_error(got, want, scale=1.0) < 1e-6

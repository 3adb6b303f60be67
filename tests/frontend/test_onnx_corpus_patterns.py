"""Patterns taken from the real models of the corpus (tests/corpus), each as a tiny hand-built
model over symbolic dimensions: compiled once, the graph and the artifact checked against
onnxruntime at several sizes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

from test_onnx_dynamic import check, rand
from test_onnx_dynamic_ops import model, vi

pytest.importorskip("onnxruntime")


def test_slice_end_past_any_possible_size_of_an_open_axis():
    # jax2tf writes 1e9 for "to the end" (magika): no tensor within the limits reaches it
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"])]
    m = model(nodes, [vi("x", ["batch", 64, 64, "n"])], [vi("z", ["b2", 64, 64, "n2"])],
              [("starts", np.array([0, 0, 1], np.int64)), ("ends", np.array([10**9] * 3, np.int64)),
               ("axes", np.array([0, 1, 3], np.int64))])
    check(m, [{"x": rand(b, 64, 64, n)} for b, n in ((1, 3), (2, 9), (5, 2))])


@pytest.mark.parametrize("dtype", [TP.INT64, TP.FLOAT])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_along_an_unbounded_axis(dtype, exclusive, reverse):
    # position ids from the attention mask (RoBERTa): cumsum along the open sequence, which has
    # no bound to unroll its doubling steps to (a loop of the artifact)
    nodes = [helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)]
    m = model(nodes, [vi("x", ["batch", "seq"], dtype)], [vi("y", ["batch", "seq"], dtype)],
              [("axis", np.array(1, np.int64))])
    make = (lambda b, s: np.random.default_rng(s).integers(-3, 4, (b, s))) if dtype == TP.INT64 else rand
    check(m, [{"x": make(b, s)} for b, s in ((1, 1), (2, 5), (3, 8), (1, 33))])

"""TFLite's fixed-point primitives (``ember.frontend.tflite_fixed_point``) against the real
functions they approximate, on both backends (numpy, and graph ops run by the reference
interpreter)."""

from __future__ import annotations

import numpy as np

from ember.frontend import tflite_fixed_point as fp
from ember.graph.builder import GraphBuilder
from ember.graph.interpreter import run_graph
from ember.graph.types import TensorType


def test_exp_on_negative_values_is_exp_in_q0_31():
    a = -np.concatenate([np.arange(0, 1 << 20, 997), np.arange(1 << 20, 31 << 26, 1 << 17)]).astype(np.int64)
    got = fp.exp_on_negative_values(a)
    want = np.exp(a / float(1 << 26)) * (1 << 31)
    assert got.dtype == np.int64 and got.max() <= fp.INT32_MAX and got.min() >= 0
    assert got[0] == fp.INT32_MAX                        # exp(0) saturates to 1.0
    assert np.abs(got - want).max() < 2e-6 * (1 << 31)


class _Ctx:
    """The little of an OpContext that GraphOps needs."""

    def __init__(self, b):
        self.b = b

    def const(self, a):
        return self.b.const(np.asarray(a))

    def add(self, op, inputs, **attrs):
        return self.b.op(op, inputs, "fp", **attrs)


def test_reciprocal_on_both_backends():
    """GetReciprocal of Q12.19 sums from 1 to 500: scale * 2**-over is 1 / x within 2**-26
    relative (three Newton-Raphson steps), and the graph form equals the numpy form."""
    x = np.unique(np.round(np.geomspace(1, 500, 300) * (1 << 19))).astype(np.int64)
    scale, over = fp.reciprocal(fp.NumpyOps(), x, 12)
    real = scale / float(1 << 31) * 2.0 ** -over.astype(np.float64)
    np.testing.assert_allclose(real, (1 << 19) / x, rtol=2 ** -26)
    b = GraphBuilder("reciprocal")
    v = b.input("x", TensorType((x.size,), "int64"))
    s, o = fp.reciprocal(fp.GraphOps(_Ctx(b)), v, 12)
    gs, go = run_graph(b.finish([s, o]), [x])
    np.testing.assert_array_equal(gs, scale)
    np.testing.assert_array_equal(go, over)


def test_multiply_by_quantized_multiplier_64_rounds_once():
    """The 64-bit form: a 16-bit multiplier, rounding half up (floor of x m + half)."""
    m, shift = fp.quantize_multiplier(0.3)
    x = np.arange(-5000, 5000, 7, dtype=np.int64) * 1013
    got = fp.multiply_by_quantized_multiplier_64(fp.NumpyOps(), x, m, shift)
    reduced = (m + (1 << 15)) >> 16
    np.testing.assert_array_equal(got, np.floor(x * reduced / 2.0 ** (15 - shift) + 0.5).astype(np.int64))
    assert np.abs(got - x * 0.3).max() <= 1 + np.abs(x).max() * 2 ** -15

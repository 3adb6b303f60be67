"""bfloat16 in the C backend: stored as 16 bits, computed in float32 inside a kernel, rounded to
nearest even when stored; compared with the reference interpreter, which rounds after every op
(hence a tolerance of two bfloat16 units in the last place)."""

from __future__ import annotations

import ml_dtypes
import numpy as np

import ember
from ember.graph import GraphBuilder, TensorType, run_graph

from ops.harness import Batch

BF = "bfloat16"


def test_bfloat16_ops():
    batch = Batch("bf16_ops")

    def elementwise(c):
        x, y = c.input((5, 33), BF, low=-3, high=3), c.input((33,), BF, low=0.5, high=2)
        z = c.op("add", [c.op("mul", [x, y]), c.op("exp", [c.op("neg", [y])])])
        z = c.op("where", [c.op("greater", [x, z]), c.op("tanh", [z]), c.op("maximum", [x, z])])
        return [z, c.op("div", [x, y]), c.op("relu", [c.op("sub", [x, c.const(np.array(0.3, ml_dtypes.bfloat16))])])]

    # x * y + exp(-y) may cancel: rounding the product (the reference) moves it by 2^-9 of x * y
    batch.case("elementwise chain", elementwise, atol=2 ** -5)
    batch.case("matmul", lambda c: c.op("matmul", [c.input((2, 7, 19), BF), c.input((2, 19, 21), BF)]))
    batch.case("matmul constant weights", lambda c: c.op("matmul", [
        c.input((6, 40), BF), c.const(np.random.default_rng(1).standard_normal((40, 24)).astype(ml_dtypes.bfloat16))]))
    for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod"):
        batch.case(op, lambda c, op=op: c.op(op, [c.input((4, 300), BF, low=0.9, high=1.1)], axes=(1,)))
    batch.case("argmax", lambda c: c.op("argmax", [c.input((4, 30), BF)], axis=1))
    batch.case("softmax", lambda c: c.op("softmax", [c.input((3, 50), BF, low=-5, high=5)], axis=1))
    batch.case("moves", lambda c: [
        c.op("transpose", [c.input((3, 4, 5), BF)], perm=(2, 0, 1)),
        c.op("concat", [c.input((2, 3), BF), c.input((2, 5), BF)], axis=1),
        c.op("pad", [c.input((3, 3), BF)], pads=(1, 0, 0, 2), value=-1.5),
        c.op("gather", [c.input((6, 4), BF), c.const(np.array([5, 0, -1], np.int64))], axis=0)])
    batch.case("casts", lambda c: [
        c.op("cast", [c.input((50,), "float32", low=-1e4, high=1e4)], to=BF),
        c.op("cast", [c.input((50,), BF)], to="float32"),
        c.op("cast", [c.input((50,), BF, low=-300, high=300)], to="int32"),
        c.op("cast", [c.input((50,), "float16")], to=BF)], rtol=0, atol=0)
    batch.check()


def test_bfloat16_values_pass_through_exactly():
    """A graph input or constant that is also an output is copied with bfloat16's size; NaN
    payloads, infinities and -0 survive; a float32 kernel output rounds to nearest even."""
    b = GraphBuilder("bf16_io")
    x = b.input("x", TensorType((6,), BF))
    k = b.const(np.array([1.5, -0.0, np.inf, 3e38], ml_dtypes.bfloat16))
    f = b.input("f", TensorType((4,), "float32"))
    r = b.op("cast", [f], to=BF)
    mod = ember.compile(b.finish([x, k, r]), cflags=("-O1",))
    xs = np.array([0x7FC1, 0xFFFF, 0x8000, 0x0001, 0x7F80, 0x3F80], np.uint16).view(ml_dtypes.bfloat16)
    fs = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -20), 3.4028235e38], np.float32)
    out_x, out_k, out_r = mod.run({"x": xs, "f": fs}).values()
    assert out_x.dtype == ml_dtypes.bfloat16 and out_x.tobytes() == xs.tobytes()
    assert out_k.tobytes() == k.const.tobytes()
    assert out_r.view(np.uint16).tolist() == fs.astype(ml_dtypes.bfloat16).view(np.uint16).tolist()
    # raw bits are accepted too
    assert mod.run({"x": xs.view(np.uint16), "f": fs})["x"].tobytes() == xs.tobytes()
    assert run_graph(b.finish([r]), {"x": xs, "f": fs})[0].tobytes() == out_r.tobytes()

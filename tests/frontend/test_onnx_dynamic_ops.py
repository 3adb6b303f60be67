"""ONNX ops on symbolic dimensions: one compile per model, the graph (reference interpreter) and
the artifact checked against onnxruntime at several sizes (the ``check`` helper of
test_onnx_dynamic), and the dimensions an op must know at compile time refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ember
from ember.errors import InvalidModelError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph

from test_onnx_dynamic import check, model, rand

pytest.importorskip("onnxruntime")


def vi(name, dims, dtype=TP.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def weights(*shape, seed=0, scale=0.4):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---- recurrences: a symbolic batch, and a sequence length unrolled to its bound ------------

@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrence_over_open_sequence_and_batch(op, gates):
    h, i = 5, 3
    w, r, b = weights(2, gates * h, i, seed=1), weights(2, gates * h, h, seed=2), weights(2, 2 * gates * h, seed=3)
    node = helper.make_node(op, ["x", "w", "r", "b"], ["y", "yh"] + (["yc"] if op == "LSTM" else []),
                            hidden_size=h, direction="bidirectional")
    outs = [vi("y", ["seq", 2, "batch", h]), vi("yh", [2, "batch", h])] + ([vi("yc", [2, "batch", h])] if op == "LSTM" else [])
    m = model([node], [vi("x", ["seq", "batch", i])], outs, [("w", w), ("r", r), ("b", b)])
    check(m, [{"x": rand(s, n, i)} for s, n in ((1, 1), (4, 3), (7, 2))], bounds={"seq": 7, "batch": 4})


def test_lstm_speaker_encoder_open_frames_with_lengths():
    # batch-first frames [batch, frames, 8] through a two-layer LSTM (as PyTorch exports it), the
    # last hidden state projected
    h, i = 6, 8
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "w1", "r1", "b1", "lens"], ["y1", "h1"], hidden_size=h),
        helper.make_node("Squeeze", ["y1", "ax1"], ["y1s"]),
        helper.make_node("LSTM", ["y1s", "w2", "r2", "b2"], ["", "h2"], hidden_size=h),
        helper.make_node("MatMul", ["h2", "proj"], ["e"]),
    ]
    m = model(nodes, [vi("x", ["batch", "frames", i]), vi("lens", ["batch"], TP.INT32)],
              [vi("e", [1, "batch", 4]), vi("h1", [1, "batch", h])],
              [("w1", weights(1, 4 * h, i, seed=4)), ("r1", weights(1, 4 * h, h, seed=5)),
               ("b1", weights(1, 8 * h, seed=6)), ("w2", weights(1, 4 * h, h, seed=7)),
               ("r2", weights(1, 4 * h, h, seed=8)), ("b2", weights(1, 8 * h, seed=9)),
               ("proj", weights(h, 4, seed=10)), ("ax1", np.array([1]))])
    feeds = [{"x": rand(n, f, i), "lens": np.minimum(np.arange(n, dtype=np.int32) + 2, f)}
             for n, f in ((1, 3), (2, 9), (3, 12))]
    check(m, feeds, bounds={"frames": 12, "batch": 3})


def test_recurrence_batch_first_layout_over_open_sizes():
    # layout=1 (onnxruntime has no kernel for it): the graph against the same LSTM spelled
    # seq-first with transposes, and the artifact against the graph
    h, i = 4, 3
    w, r = weights(1, 4 * h, i, seed=11), weights(1, 4 * h, h, seed=12)
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y", "yh"], hidden_size=h, layout=1)],
              [vi("x", ["batch", "seq", i])], [vi("y", ["batch", "seq", 1, h]), vi("yh", ["batch", 1, h])],
              [("w", w), ("r", r)])
    seq_first = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
                       helper.make_node("LSTM", ["xt", "w", "r"], ["yt", "yht"], hidden_size=h),
                       helper.make_node("Transpose", ["yt"], ["y"], perm=[2, 0, 1, 3]),
                       helper.make_node("Transpose", ["yht"], ["yh"], perm=[1, 0, 2])],
                      [vi("x", ["batch", "seq", i])], [vi("y", ["batch", "seq", 1, h]), vi("yh", ["batch", 1, h])],
                      [("w", w), ("r", r)])
    bounds = {"seq": 6, "batch": 3}
    g = from_onnx(m, bounds=bounds)
    mod = ember.compile(m, bounds=bounds, cflags=("-O1",))
    for n, s in ((1, 1), (3, 6), (2, 4)):
        feeds = {"x": rand(n, s, i)}
        want = run_graph(from_onnx(seq_first, bounds=bounds), feeds)
        for got in (run_graph(g, feeds), list(mod.run(feeds).values())):
            for a, b in zip(got, want):
                assert a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_recurrence_needs_a_bound_for_an_open_length():
    h = 2
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=h)
    m = model([node], [vi("x", ["seq", 1, 2])], [vi("y", ["seq", 1, 1, h])],
              [("w", weights(1, 4 * h, 2)), ("r", weights(1, 4 * h, h))])
    with pytest.raises(InvalidModelError, match=r"LSTM.*sequence length seq .*bounds="):
        from_onnx(m)

"""ONNX ops on symbolic dimensions: one compile per model, the graph (reference interpreter) and
the artifact checked against onnxruntime at several sizes (the ``check`` helper of
test_onnx_dynamic), and the dimensions an op must know at compile time refused by name."""

from __future__ import annotations

import ctypes

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

from test_onnx_dynamic import check, rand

pytest.importorskip("onnxruntime")


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "dyn", inputs, outputs, initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 21 else 10
    onnx.checker.check_model(m)
    return m


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


@pytest.mark.parametrize("op,gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrence_over_an_unbounded_sequence_runs_as_a_loop(op, gates):
    h, i = 5, 3
    w, r, b = weights(2, gates * h, i, seed=1), weights(2, gates * h, h, seed=2), weights(2, 2 * gates * h, seed=3)
    node = helper.make_node(op, ["x", "w", "r", "b", "lens"], ["y", "yh"] + (["yc"] if op == "LSTM" else []),
                            hidden_size=h, direction="bidirectional")
    outs = [vi("y", ["seq", 2, "batch", h]), vi("yh", [2, "batch", h])] + ([vi("yc", [2, "batch", h])] if op == "LSTM" else [])
    m = model([node], [vi("x", ["seq", "batch", i]), vi("lens", ["batch"], TP.INT32)], outs,
              [("w", w), ("r", r), ("b", b)])
    g, _ = check(m, [{"x": rand(s, n, i), "lens": np.minimum(np.arange(n, dtype=np.int32) + s - 1, s)}
                     for s, n in ((1, 1), (4, 3), (30, 2), (100, 5))])
    assert [n.op for n in g.nodes].count("loop") == 2 and "seq" not in g.bounds


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
    # no bound on the frames: the recurrences run as loops of the artifact
    check(m, feeds + [{"x": rand(2, 200, i), "lens": np.array([200, 150], np.int32)}])


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


def test_recurrence_needs_no_bound_for_an_open_length():
    h = 2
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=h)
    m = model([node], [vi("x", ["seq", 1, 2])], [vi("y", ["seq", 1, 1, h])],
              [("w", weights(1, 4 * h, 2)), ("r", weights(1, 4 * h, h))])
    g = from_onnx(m)
    assert "loop" in {n.op for n in g.nodes} and not g.bounds


# ---- spectral -----------------------------------------------------------------------------

def test_stft_over_an_open_signal_length():
    # an audio front end: STFT of [batch, samples, 1] with a Hann window, then magnitudes
    fl, step = 16, 4
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(fl) / fl)).astype(np.float32)
    nodes = [helper.make_node("STFT", ["x", "step", "win", "fl"], ["spec"]),
             helper.make_node("Mul", ["spec", "spec"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "last"], ["power"], keepdims=0),
             # PyTorch exports a real signal as [batch, samples]
             helper.make_node("Squeeze", ["x", "last"], ["x2"]),
             helper.make_node("STFT", ["x2", "step", "win", "fl"], ["spec2"])]
    m = model(nodes, [vi("x", ["batch", "samples", 1])], [vi("spec", ["batch", "frames", 9, 2]),
                                                          vi("power", ["batch", "frames", 9]),
                                                          vi("spec2", ["batch", "frames", 9, 2])],
              [("step", np.array(step, np.int64)), ("win", window), ("fl", np.array(fl, np.int64)),
               ("last", np.array([-1]))])
    g, mod = check(m, [{"x": rand(n, s, 1)} for n, s in ((1, 16), (2, 37), (3, 64))], bounds={"samples": 64})
    assert g.outputs[0].type.shape[1] == (symbol("samples") - fl) // step + 1
    with pytest.raises(InputError, match=r"dimension 1 .* of output 'spec' -3: they are too small"):
        mod.run({"x": rand(1, 3, 1)})
    # from C too
    lib = ctypes.CDLL(str(mod.path), mode=ctypes.RTLD_LOCAL)
    lib.ember_last_error.restype = ctypes.c_char_p
    Dims = ctypes.POINTER(ctypes.c_int64)
    xs, out = (ctypes.c_int64 * 3)(2, 37, 1), (ctypes.c_int64 * 4)()
    shapes = (Dims * 1)(ctypes.cast(xs, Dims))
    assert lib.ember_output_shape(shapes, 0, out) == 0 and list(out) == [2, 6, 9, 2]
    xs[1] = 3
    assert lib.ember_output_shape(shapes, 0, out) == -1
    assert b"of output 'spec' -3: they are too small" in lib.ember_last_error()


def test_dft_over_symbolic_outer_axes():
    nodes = [helper.make_node("DFT", ["x", "", "axis"], ["y"]),
             helper.make_node("DFT", ["x", "", "axis"], ["z"], inverse=1)]
    m = model(nodes, [vi("x", ["batch", "seq", 8, 2])], [vi("y", ["batch", "seq", 8, 2]), vi("z", ["batch", "seq", 8, 2])],
              [("axis", np.array(2, np.int64))], opset=20)
    check(m, [{"x": rand(n, s, 8, 2)} for n, s in ((1, 1), (2, 3), (3, 5))])
    m = model([helper.make_node("DFT", ["x", "", "axis"], ["y"])], [vi("x", ["batch", "seq", 2])],
              [vi("y", ["batch", "seq", 2])], [("axis", np.array(1, np.int64))], opset=20)
    with pytest.raises(InvalidModelError, match=r"DFT.*symbolic length seq.*shapes="):
        from_onnx(m)


# ---- indexing -----------------------------------------------------------------------------

def ints(seed, lo, hi, shape, dtype=np.int64):
    return np.random.default_rng(seed).integers(lo, hi, shape).astype(dtype)


def test_gather_nd_over_symbolic_data_and_indices():
    nodes = [helper.make_node("GatherND", ["x", "i1"], ["y1"], batch_dims=1),
             helper.make_node("GatherND", ["x", "i0"], ["y0"])]
    m = model(nodes, [vi("x", ["batch", "seq", 4]), vi("i1", ["batch", "k", 1], TP.INT64), vi("i0", ["n", 2], TP.INT64)],
              [vi("y1", ["batch", "k", 4]), vi("y0", ["n", 4])])
    feeds = []
    for b, s, k in ((1, 1, 1), (2, 5, 3), (3, 7, 2)):
        i0 = np.stack([ints(b, -b, b, 6), ints(s, -s, s, 6)], axis=1)
        feeds.append({"x": rand(b, s, 4), "i1": ints(k, -s, s, (b, k, 1)), "i0": i0})
    check(m, feeds)


def test_scatter_nd_and_compress_with_constant_indices_over_symbolic_tails():
    nodes = [helper.make_node("ScatterND", ["x", "idx", "u"], ["y"]),
             helper.make_node("Compress", ["x", "cond"], ["c"], axis=0)]
    m = model(nodes, [vi("x", [4, "seq"]), vi("u", [2, "seq"])], [vi("y", [4, "seq"]), vi("c", [2, "seq"])],
              [("idx", np.array([[3], [-4]])), ("cond", np.array([True, False, False, True]))])
    check(m, [{"x": rand(4, s), "u": rand(2, s) + 5} for s in (1, 6, 9)])
    # the indexed axis symbolic too: the box the indices reach is scattered into
    m = model([helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], reduction="mul")],
              [vi("x", ["batch", "seq"]), vi("u", [3, "seq"])], [vi("y", ["batch", "seq"])],
              [("idx", np.array([[2], [0], [2]]))], opset=18)
    check(m, [{"x": rand(b, s), "u": rand(3, s)} for b, s in ((3, 1), (4, 5), (6, 2))])
    m = model([helper.make_node("ScatterND", ["x", "idx", "u"], ["y"])], [vi("x", ["batch", 3]), vi("u", [1, 3])],
              [vi("y", ["batch", 3])], [("idx", np.array([[-1]]))])
    with pytest.raises(InvalidModelError, match=r"ScatterND.*dimension 0 of 'x' .*batch.*count from its end"):
        from_onnx(m)
    m = model([helper.make_node("ScatterElements", ["x", "idx", "u"], ["y"], axis=1, reduction="add")],
              [vi("x", ["batch", "seq"]), vi("u", [2, 3])], [vi("y", ["batch", "seq"])],
              [("idx", np.array([[2, 0, 2], [1, 1, 0]]))], opset=18)
    check(m, [{"x": rand(b, s), "u": rand(2, 3) + 4} for b, s in ((2, 3), (3, 3), (4, 7))])
    m = model([helper.make_node("ScatterElements", ["x", "idx", "u"], ["y"], axis=1)], [vi("x", [1, "seq"]), vi("u", [1, 1])],
              [vi("y", [1, "seq"])], [("idx", np.array([[-1]]))])
    with pytest.raises(InvalidModelError, match=r"ScatterElements.*dimension 1 of 'x' .*seq.*count from its end"):
        from_onnx(m)


def test_eye_like_reverse_sequence_and_col2im_over_symbolic_dims():
    nodes = [helper.make_node("EyeLike", ["x"], ["eye"], k=1),
             helper.make_node("ReverseSequence", ["t", "lens"], ["rev"], time_axis=0, batch_axis=1),
             helper.make_node("Col2Im", ["cols", "image", "block"], ["img"], strides=[1, 2])]
    m = model(nodes, [vi("x", ["rows", "cols"]), vi("t", ["seq", "batch", 3]), vi("lens", ["batch"], TP.INT64),
                      vi("cols", ["batch", 8, 6])],
              [vi("eye", ["rows", "cols"]), vi("rev", ["seq", "batch", 3]), vi("img", ["batch", 2, 4, 4])],
              [("image", np.array([4, 4])), ("block", np.array([2, 2]))], opset=18)
    feeds = [{"x": rand(r, c), "t": rand(s, b, 3), "lens": ints(s, 0, s + 1, b), "cols": rand(b, 8, 6)}
             for r, c, s, b in ((1, 1, 1, 1), (3, 5, 4, 2), (6, 2, 7, 3))]
    check(m, feeds)


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_into_symbolic_caches(mode):
    node = helper.make_node("TensorScatter", ["past", "upd", "w"], ["present"], mode=mode)
    m = model([node], [vi("past", ["batch", 2, "cache", 4]), vi("upd", ["batch", 2, "new", 4]), vi("w", ["batch"], TP.INT64)],
              [vi("present", ["batch", 2, "cache", 4])], opset=24)
    feeds = []
    for b, c, n in ((1, 4, 1), (2, 6, 3), (3, 8, 8)):
        w = ints(c, 0, c - n + 1, b) if mode == "linear" else ints(c, 0, c, b)
        feeds.append({"past": rand(b, 2, c, 4), "upd": rand(b, 2, n, 4) + 3, "w": w})
    check(m, feeds)


# ---- reductions and prefix sums -------------------------------------------------------------

def test_topk_cumsum_and_integer_mean_over_symbolic_axes():
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
             helper.make_node("TopK", ["x", "k"], ["vs", "is"], axis=0, largest=0),
             helper.make_node("CumSum", ["x", "ax1"], ["cs"]),
             helper.make_node("CumSum", ["x", "ax1"], ["cse"], exclusive=1, reverse=1),
             helper.make_node("ReduceMean", ["n", "ax1v"], ["mean"], keepdims=0)]
    m = model(nodes, [vi("x", ["batch", "seq"]), vi("n", ["batch", "seq"], TP.INT64)],
              [vi("v", ["batch", 3]), vi("i", ["batch", 3], TP.INT64), vi("vs", [3, "seq"]),
               vi("is", [3, "seq"], TP.INT64), vi("cs", ["batch", "seq"]), vi("cse", ["batch", "seq"]),
               vi("mean", ["batch"], TP.INT64)],
              [("k", np.array([3])), ("ax1", np.array(1)), ("ax1v", np.array([1]))], opset=18)
    feeds = []
    for b, s in ((3, 3), (4, 7), (5, 12)):
        x = rand(b, s)
        x[0, :2] = 0.5                                     # ties: the lower index first
        feeds.append({"x": x, "n": ints(s, -50, 50, (b, s))})
    check(m, feeds, bounds={"seq": 12})
    m = model([helper.make_node("CumSum", ["x", "ax1"], ["cs"])], [vi("x", ["batch", "seq"])],
              [vi("cs", ["batch", "seq"])], [("ax1", np.array(1))])
    g, _ = check(m, [{"x": rand(b, s)} for b, s in ((2, 1), (3, 20))])    # no bound: a loop of the artifact
    assert [n.op for n in g.nodes].count("loop") == 1


def test_einsum_over_symbolic_labels():
    nodes = [helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhqd,bhkd->bhqk"),
             helper.make_node("Einsum", ["q", "w"], ["p"], equation="...d,de->...e"),
             helper.make_node("Einsum", ["q"], ["t"], equation="bhqd->bd")]
    m = model(nodes, [vi("q", ["batch", 2, "seq", 4]), vi("k", ["batch", 2, "kv", 4])],
              [vi("s", ["batch", 2, "seq", "kv"]), vi("p", ["batch", 2, "seq", 3]), vi("t", ["batch", 4])],
              [("w", weights(4, 3))], opset=12)
    check(m, [{"q": rand(b, 2, s, 4), "k": rand(b, 2, kv, 4)} for b, s, kv in ((1, 1, 1), (2, 5, 3), (3, 2, 7))])
    m = model([helper.make_node("Einsum", ["x"], ["d"], equation="bii->bi"),
               helper.make_node("Einsum", ["x"], ["t"], equation="bii->b")], [vi("x", ["batch", "n", "n"])],
              [vi("d", ["batch", "n"]), vi("t", ["batch"])], opset=12)
    check(m, [{"x": rand(b, n, n)} for b, n in ((1, 1), (2, 3), (3, 6))])


# ---- control flow and sequences -------------------------------------------------------------

def test_scan_over_an_open_length_and_batch():
    f = TP.FLOAT
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Mul", ["s_out", "r_t"], ["y_t"]),
         helper.make_node("Tanh", ["s_out"], ["z_t"])],
        "body", [vi("s_in", ["batch", 3], f), vi("x_t", ["batch", 3], f), vi("r_t", ["batch", 3], f)],
        [vi("s_out", ["batch", 3], f), vi("y_t", ["batch", 3], f), vi("z_t", ["batch", 3], f)])
    node = helper.make_node("Scan", ["s", "x", "x"], ["s_final", "y", "z"], body=body, num_scan_inputs=2,
                            scan_input_axes=[1, 1], scan_input_directions=[0, 1], scan_output_axes=[1, 0],
                            scan_output_directions=[1, 0])
    m = model([node], [vi("s", ["batch", 3]), vi("x", ["batch", "seq", 3])],
              [vi("s_final", ["batch", 3]), vi("y", ["batch", "seq", 3]), vi("z", ["seq", "batch", 3])], opset=16)
    g, _ = check(m, [{"s": rand(b, 3), "x": rand(b, s, 3)} for b, s in ((1, 1), (2, 4), (3, 6))], bounds={"seq": 6})
    assert "loop" not in {n.op for n in g.nodes}        # a short bounded length: unrolled
    # without a bound the artifact runs the scan as a loop: any length
    g, _ = check(m, [{"s": rand(b, 3), "x": rand(b, s, 3)} for b, s in ((1, 1), (2, 40), (3, 100))])
    assert "loop" in {n.op for n in g.nodes} and "seq" not in g.bounds


def test_split_to_sequence_over_symbolic_outer_dims():
    nodes = [helper.make_node("SplitToSequence", ["x", "split"], ["parts"], axis=1),
             helper.make_node("SequenceAt", ["parts", "one"], ["second"]),
             helper.make_node("ConcatFromSequence", ["parts"], ["back"], axis=0, new_axis=1)]
    m = model(nodes, [vi("x", ["batch", 4, "seq"])],
              [vi("second", ["batch", 2, "seq"]), vi("back", [2, "batch", 2, "seq"])],
              [("split", np.array([2, 2])), ("one", np.array(1))])
    check(m, [{"x": rand(b, 4, s)} for b, s in ((1, 1), (2, 3), (3, 5))])
    m = model([helper.make_node("SplitToSequence", ["x"], ["parts"], axis=1),
               helper.make_node("SequenceAt", ["parts", "one"], ["y"])],
              [vi("x", [2, "seq"])], [vi("y", [2, 1])], [("one", np.array(1))])
    # pieces of 1 along the symbolic axis: a sequence whose length the run decides
    check(m, [{"x": rand(2, s)} for s in (2, 3, 5)])


# ---- classical ML and linear algebra --------------------------------------------------------

def ml_model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "dyn", inputs, outputs, initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
    m.ir_version = 10
    onnx.checker.check_model(m)
    return m


def test_ml_ops_over_a_symbolic_batch_and_length():
    ml = "ai.onnx.ml"
    tree = dict(nodes_featureids=[0, 2, 1], nodes_splits=numpy_helper.from_array(np.array([0.0, 0.5, -0.3], np.float32)),
                nodes_modes=numpy_helper.from_array(np.array([0, 3, 1], np.uint8)),
                nodes_truenodeids=[1, 0, 1], nodes_trueleafs=[0, 1, 1], nodes_falsenodeids=[2, 1, 2],
                nodes_falseleafs=[0, 1, 1], leaf_targetids=[0, 1, 0],
                leaf_weights=numpy_helper.from_array(np.array([1.5, -2.0, 0.25], np.float32)),
                tree_roots=[0], n_targets=2, aggregate_function=1)
    nodes = [helper.make_node("ArrayFeatureExtractor", ["x", "cols"], ["picked"], domain=ml),
             helper.make_node("TreeEnsemble", ["x"], ["score"], domain=ml, **tree),
             helper.make_node("TfIdfVectorizer", ["tok"], ["tf"], mode="TF", min_gram_length=1, max_gram_length=2,
                              max_skip_count=1, ngram_counts=[0, 3], ngram_indexes=[0, 1, 2, 3, 4],
                              pool_int64s=[2, 3, 5, 2, 3, 5, 5])]
    m = ml_model(nodes, [vi("x", ["batch", 4]), vi("tok", ["batch", "seq"], TP.INT64)],
                 [vi("picked", ["batch", 2]), vi("score", ["batch", 2]), vi("tf", ["batch", 5])],
                 [("cols", np.array([3, 1]))])
    feeds = [{"x": rand(b, 4), "tok": ints(s, 1, 6, (b, s))} for b, s in ((1, 1), (2, 3), (4, 9))]
    check(m, feeds)


def test_det_over_a_symbolic_batch():
    m = model([helper.make_node("Det", ["x"], ["d"])], [vi("x", ["batch", 2, 3, 3])], [vi("d", ["batch", 2])], opset=22)
    check(m, [{"x": rand(b, 2, 3, 3)} for b in (1, 2, 5)])
    m = model([helper.make_node("Det", ["x"], ["d"])], [vi("x", ["n", "n"])], [vi("d", [])], opset=22)
    with pytest.raises(InvalidModelError, match=r"Det.*symbolic size n.*unrolled"):
        from_onnx(m)


# ---- sampling -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,padding,align", [("linear", "zeros", 0), ("nearest", "border", 1),
                                                ("cubic", "reflection", 0), ("linear", "reflection", 1)])
def test_grid_sample_over_symbolic_images_and_grids(mode, padding, align):
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], mode=mode, padding_mode=padding, align_corners=align)
    m = model([node], [vi("x", ["batch", 2, "h", "w"]), vi("grid", ["batch", "oh", "ow", 2])],
              [vi("y", ["batch", 2, "oh", "ow"])], opset=20)
    feeds = [{"x": rand(b, 2, h, w), "grid": rand(b, oh, ow, 2) * 0.8}
             for b, h, w, oh, ow in ((1, 1, 2, 1, 1), (2, 4, 5, 3, 2), (3, 6, 3, 4, 5))]
    check(m, feeds)


def test_roi_align_over_symbolic_images_and_regions():
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], output_height=2, output_width=3, sampling_ratio=2,
                            spatial_scale=0.5, mode="avg")
    m = model([node], [vi("x", ["batch", 3, "h", "w"]), vi("rois", ["r", 4]), vi("bi", ["r"], TP.INT64)],
              [vi("y", ["r", 3, 2, 3])], opset=16)
    feeds = []
    for b, h, w, r in ((1, 2, 3, 1), (2, 5, 7, 3), (3, 8, 6, 4)):
        lo = np.abs(rand(r, 2)) * 3
        feeds.append({"x": rand(b, 3, h, w), "rois": np.concatenate([lo, lo + np.abs(rand(r, 2)) * 6 + 1], axis=1),
                      "bi": ints(r, 0, b, r)})
    check(m, feeds)


def test_deform_conv_over_symbolic_images():
    node = helper.make_node("DeformConv", ["x", "w", "off", "b", "mask"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            offset_group=2)
    m = model([node], [vi("x", ["batch", 4, "h", "w"]), vi("off", ["batch", 36, "h", "w"]),
                       vi("mask", ["batch", 18, "h", "w"])],
              [vi("y", ["batch", 3, "h", "w"])], [("w", weights(3, 4, 3, 3, seed=13)), ("b", weights(3, seed=14))],
              opset=19)
    feeds = [{"x": rand(b, 4, h, w), "off": rand(b, 36, h, w), "mask": np.abs(rand(b, 18, h, w))}
             for b, h, w in ((1, 1, 2), (2, 4, 3), (1, 5, 6))]
    check(m, feeds)



def test_loop_over_a_trip_count_from_a_symbolic_size():
    # for k in range(seq): acc = acc * 0.5 + x[:, k]; outputs acc and every k * acc
    f = TP.FLOAT
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Gather", ["x", "k"], ["col"], axis=1),
         helper.make_node("Mul", ["acc", "half"], ["scaled"]),
         helper.make_node("Add", ["scaled", "col"], ["acc_out"]),
         helper.make_node("Cast", ["k"], ["kf"], to=f),
         helper.make_node("Mul", ["acc_out", "kf"], ["y"])],
        "body", [vi("k", [], TP.INT64), vi("c_in", [], TP.BOOL), vi("acc", ["batch"], f)],
        [vi("c_out", [], TP.BOOL), vi("acc_out", ["batch"], f), vi("y", ["batch"], f)])
    nodes = [helper.make_node("Shape", ["x"], ["shp"], start=1, end=2),
             helper.make_node("Squeeze", ["shp"], ["m"]),
             helper.make_node("Loop", ["m", "", "acc0"], ["acc", "ys"], body=body)]
    m = model(nodes, [vi("x", ["batch", "seq"]), vi("acc0", ["batch"])], [vi("acc", ["batch"]), vi("ys", ["seq", "batch"])],
              [("half", np.array(0.5, np.float32))])
    g, _ = check(m, [{"x": rand(b, s), "acc0": rand(b)} for b, s in ((1, 1), (2, 4), (3, 7))], bounds={"seq": 8})
    assert "loop" not in {n.op for n in g.nodes}        # a short bounded count: unrolled
    # without a bound the artifact runs the loop (its scan output has seq rows): any length
    g, _ = check(m, [{"x": rand(b, s), "acc0": rand(b)} for b, s in ((1, 1), (2, 40), (3, 100))])
    assert "loop" in {n.op for n in g.nodes} and "seq" not in g.bounds


# ---- slices whose clamping depends on the symbols ------------------------------------------

def _slice(starts, ends, axes, steps, dims):
    inits = [(n, np.array(v, np.int64)) for n, v in (("s", starts), ("e", ends), ("a", axes), ("p", steps))]
    return model([helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"])], [vi("x", dims)], [vi("y", [f"o{k}" for k in range(len(dims))])],
                 inits, opset=13)


@pytest.mark.parametrize("starts, ends, axes, steps, dims, shapes", [
    # to INT32_MAX on an open axis (tf2onnx's "to the end"), from 0, 1 and from the end
    ([1], [2147483647], [1], [1], ["B", "T"], [(1, 5), (2, 1), (1, 9)]),
    # YOLOv5's Focus: every other row and column of an open image
    ([0, 1], [2147483647, 2147483647], [2, 3], [2, 2], ["B", 3, "H", "W"], [(1, 3, 4, 6), (2, 3, 5, 7), (1, 3, 1, 2)]),
    # a whole reversal, and a start counting from the end (checked at run time)
    ([-1], [-9223372036854775807], [1], [-1], ["B", "T"], [(1, 5), (2, 1), (1, 9)]),
    ([-3], [2147483647], [1], [1], ["B", "T"], [(1, 5), (2, 3), (1, 9)]),
    ([2], [-1], [1], [1], ["B", "T"], [(1, 5), (2, 3), (1, 9)]),
])
def test_slice_clamped_over_open_axes(starts, ends, axes, steps, dims, shapes):
    check(_slice(starts, ends, axes, steps, dims), [{"x": rand(*s)} for s in shapes])


def test_slice_past_an_open_axis_is_a_run_time_error():
    m = _slice([-3], [2147483647], [1], [1], ["B", "T"])
    with pytest.raises(InputError, match="needs T >= 3 for the start -3"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(1, 2)})
    with pytest.raises(InputError, match="needs T >= 3 for the start -3"):
        run_graph(from_onnx(m), {"x": rand(1, 2)})
    # the C shape function makes the same check (the C API has no Python in front of it)
    mod = ember.compile(m, cflags=("-O1",))
    lib = ctypes.CDLL(str(mod.path), mode=ctypes.RTLD_LOCAL)
    lib.ember_last_error.restype = ctypes.c_char_p
    Dims = ctypes.POINTER(ctypes.c_int64)
    xs, out = (ctypes.c_int64 * 2)(2, 7), (ctypes.c_int64 * 2)()
    shapes = (Dims * 1)(ctypes.cast(xs, Dims))
    assert lib.ember_output_shape(shapes, 0, out) == 0 and list(out) == [2, 3]
    xs[1] = 2
    assert lib.ember_output_shape(shapes, 0, out) == -1
    assert b"Slice node 'Slice_0' needs T >= 3 for the start -3" in lib.ember_last_error()


@pytest.mark.parametrize("op, attrs, dims, shapes", [
    ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, ["N", 8, "H", "W"], [(1, 8, 3, 5), (2, 8, 1, 1)]),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, ["N", 8, "H", "W"], [(1, 8, 3, 5), (2, 8, 4, 1)]),
    ("SpaceToDepth", {"blocksize": 2}, ["N", 3, "H", "W"], [(1, 3, 4, 6), (2, 3, 2, 2), (1, 3, 0, 8)]),
    ("Trilu", {"upper": 1}, ["B", "R", "C"], [(1, 3, 5), (2, 6, 2), (1, 1, 1)]),
    ("Trilu", {"upper": 0}, ["R", "C"], [(3, 5), (6, 2), (1, 1)]),
])
def test_block_rearrangements_and_triangles_over_open_dims(op, attrs, dims, shapes):
    inputs, inits = ["x"], []
    if op == "Trilu":
        inputs, inits = ["x", "k"], [("k", np.array(-1 if attrs["upper"] else 1, np.int64))]
    m = model([helper.make_node(op, inputs, ["y"], **attrs)], [vi("x", dims)],
              [vi("y", [f"o{k}" for k in range(len(dims))])], inits, opset=14)
    check(m, [{"x": rand(*s)} for s in shapes])
    if op == "SpaceToDepth":
        with pytest.raises(InputError, match="divisible by the blocksize 2"):
            ember.compile(m, cflags=("-O1",)).run({"x": rand(1, 3, 4, 5)})


def test_two_symbols_broadcast_against_each_other_when_equal():
    # an input with its own symbol for a dimension the other input has too (exported from two
    # separate dynamic axes): taken as equal, checked when the run binds them
    nodes = [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Where", ["c", "y", "a"], ["z"])]
    m = model(nodes, [vi("a", ["B", "S"]), vi("b", ["T"]), vi("c", [1, "U"], TP.BOOL)], [vi("z", ["B", "S"])])
    rng = np.random.default_rng(0)
    feeds = [{"a": rand(b, s), "b": rand(s), "c": rng.integers(0, 2, (1, s)).astype(bool)}
             for b, s in ((1, 3), (2, 1), (3, 8))]
    check(m, feeds)
    bad = dict(feeds[0], b=rand(1))
    with pytest.raises(InputError, match=r"Add node 'Add_0' needs dimension 1 of its operands to agree: T and S"):
        ember.compile(m, cflags=("-O1",)).run(bad)
    with pytest.raises(InputError, match="T and S broadcast against each other only when equal"):
        run_graph(from_onnx(m), bad)


def test_yolo_focus_concat_of_odd_and_even_halves():
    # x[..., ::2, ::2], x[..., 1::2, ::2], ... concatenated: (H + 1)//2 and H//2 rows meet, equal
    # for even sizes only (the run checks it)
    inits, nodes = [("ax", np.array([2, 3], np.int64)), ("two", np.array([2, 2], np.int64)),
                    ("end", np.array([2147483647] * 2, np.int64))], []
    for k, (r, c) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        inits.append((f"s{k}", np.array([r, c], np.int64)))
        nodes.append(helper.make_node("Slice", ["x", f"s{k}", "end", "ax", "two"], [f"q{k}"]))
    nodes.append(helper.make_node("Concat", [f"q{k}" for k in range(4)], ["y"], axis=1))
    m = model(nodes, [vi("x", ["N", 3, "H", "W"])], [vi("y", ["N", 12, "H2", "W2"])], inits)
    check(m, [{"x": rand(*s)} for s in ((1, 3, 4, 6), (2, 3, 8, 2), (1, 3, 2, 10))])
    with pytest.raises(InputError, match=r"Concat node 'Concat_4' needs dimension 2 of its operands to agree"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(1, 3, 5, 6)})


# ---- Reshape whose element count matches only for some sizes: a run-time check ---------------

def test_reshape_minus_one_by_a_sum_of_symbols():
    # [B, 4, P + S, 16] -> [-1, P + S, 16]: -1 is 4*B, an exact quotient by a sum (GPT-2's past)
    nodes = [helper.make_node("Concat", ["p", "s"], ["x"], axis=2),
             helper.make_node("Shape", ["x"], ["sx"], start=2, end=3),
             helper.make_node("Concat", ["m1", "sx", "c16"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    m = model(nodes, [vi("p", ["B", 4, "P", 16]), vi("s", ["B", 4, "S", 16])], [vi("y", ["N", "L", 16])],
              [("m1", np.array([-1], np.int64)), ("c16", np.array([16], np.int64))])
    assert from_onnx(m).outputs[0].type.shape[0] == 4 * symbol("B")
    check(m, [{"p": rand(b, 4, p, 16), "s": rand(b, 4, s, 16)} for b, p, s in ((1, 0, 1), (2, 3, 5), (3, 1, 2))])


def test_reshape_minus_one_whole_only_for_some_sizes_is_checked_at_run_time():
    # [N, 4] -> [-1, 8]: 4*N elements fill rows of 8 for even N only; the run refuses odd N
    m = model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [vi("x", ["N", 4])], [vi("y", ["M", 8])],
              [("shape", np.array([-1, 8], np.int64))])
    check(m, [{"x": rand(n, 4)} for n in (2, 4, 10)])
    with pytest.raises(InputError, match=r"Reshape node 'Reshape_0' needs the 4\*N elements of its input "
                                         r"to be a whole multiple of 8"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(3, 4)})


def test_reshape_of_a_size_that_is_one_at_run_time_is_checked():
    # [N, H] -> [N, 1]: equal element counts only when H is 1 (a pooled width in an OCR model)
    m = model([helper.make_node("Shape", ["x"], ["n"], start=0, end=1),
               helper.make_node("Concat", ["n", "one"], ["shape"], axis=0),
               helper.make_node("Reshape", ["x", "shape"], ["y"])],
              [vi("x", ["N", "H"])], [vi("y", ["N", 1])], [("one", np.array([1], np.int64))])
    check(m, [{"x": rand(n, 1)} for n in (1, 2, 5)])
    with pytest.raises(InputError, match=r"Reshape node 'Reshape_2' needs its input's H\*N elements to fill"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(2, 3)})


# ---- Range over a symbolic length that is negative for small sizes: a run-time check --------

def test_range_whose_length_is_negative_for_small_sizes_is_checked_at_run_time():
    nodes = [helper.make_node("Shape", ["x"], ["n"], start=0, end=1),
             helper.make_node("Squeeze", ["n"], ["ns"]),
             helper.make_node("Sub", ["ns", "three"], ["lim"]),
             helper.make_node("Range", ["zero", "lim", "one"], ["y"])]
    m = model(nodes, [vi("x", ["N"])], [vi("y", ["M"], TP.INT64)],
              [("zero", np.array(0, np.int64)), ("one", np.array(1, np.int64)), ("three", np.array(3, np.int64))])
    check(m, [{"x": rand(n)} for n in (3, 4, 9)])
    with pytest.raises(InputError, match=r"Range node 'Range_3' needs the range from 0 to N - 3 to have at least 0"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(2)})

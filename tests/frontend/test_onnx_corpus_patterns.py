"""Patterns taken from the real models of the corpus (tests/corpus), each as a tiny hand-built
model over symbolic dimensions: compiled once, the graph and the artifact checked against
onnxruntime at several sizes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ember
from ember.errors import DeclaredShapeWarning, EmberError, InputError
from ember.symbolic import symbol

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


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, TP.INT64, np.shape(value), np.asarray(value, np.int64).reshape(-1).tolist()))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_to_whole_windows_of_an_open_height_and_width(mode):
    # Swin pads its map to whole windows by (4 - h % 4) % 4 from the Shape of its input; the
    # padded map is then cut into windows (a reshape that needs the whole multiple of 4)
    nodes = [helper.make_node("Shape", ["x"], ["shp"]), _const("i1", 1), _const("i2", 2), _const("four", 4),
             _const("zero", [0]), _const("ax0", [0])]
    for k, axis in (("h", "i1"), ("w", "i2")):
        nodes += [helper.make_node("Gather", ["shp", axis], [f"{k}d"], axis=0),
                  helper.make_node("Mod", [f"{k}d", "four"], [f"{k}m"]),
                  helper.make_node("Sub", ["four", f"{k}m"], [f"{k}s"]),
                  helper.make_node("Mod", [f"{k}s", "four"], [f"{k}p"]),
                  helper.make_node("Unsqueeze", [f"{k}p", "ax0"], [f"{k}pu"])]
    nodes += [helper.make_node("Concat", ["zero", "zero", "zero", "zero", "zero", "hpu", "wpu", "zero"], ["pads"], axis=0),
              helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode),
              _const("win", [0, -1, 4, 3]),
              helper.make_node("Reshape", ["y", "win"], ["z"])]
    m = model(nodes, [vi("x", ["batch", "h", "w", 3])], [vi("y", ["batch", "h2", "w2", 3]), vi("z", ["batch", "n", 4, 3])])
    check(m, [{"x": rand(b, h, w, 3)} for b, h, w in ((1, 4, 8), (2, 5, 7), (1, 9, 3), (3, 6, 6))])


def _float_const(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TP.FLOAT, (), [value]))


def test_float_range_over_an_open_width():
    # YOLOv8's anchor grid: Range(0.0, float(width), 1.0) + 0.5, from the Shape of a feature map
    nodes = [helper.make_node("Shape", ["x"], ["shp"]), _const("i3", 3),
             helper.make_node("Gather", ["shp", "i3"], ["w"], axis=0),
             helper.make_node("Cast", ["w"], ["wf"], to=TP.FLOAT),
             _float_const("zero", 0.0), _float_const("one", 1.0), _float_const("half", 0.5),
             helper.make_node("Range", ["zero", "wf", "one"], ["r"]),
             helper.make_node("Add", ["r", "half"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    m = model(nodes, [vi("x", ["batch", 2, "h", "w"])], [vi("y", ["batch", 2, "h", "w"])])
    check(m, [{"x": rand(b, 2, h, w)} for b, h, w in ((1, 3, 5), (2, 4, 16), (1, 1, 1))])


def test_shape_arithmetic_in_float_rounds_to_a_dimension():
    # MobileViT: new width = int(ceil(width / 2.0) * 2.0), computed on float tensors
    nodes = [helper.make_node("Shape", ["x"], ["shp"]), _const("i1", 1), _const("ax0", [0]), _const("b1", [1]),
             helper.make_node("Gather", ["shp", "i1"], ["w"], axis=0),
             helper.make_node("Cast", ["w"], ["wf"], to=TP.FLOAT),
             _float_const("two", 2.0),
             helper.make_node("Div", ["wf", "two"], ["q"]),
             helper.make_node("Ceil", ["q"], ["qc"]),
             helper.make_node("Mul", ["qc", "two"], ["nf"]),
             helper.make_node("Cast", ["nf"], ["n"], to=TP.INT64),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["nu"]),
             helper.make_node("Concat", ["b1", "nu"], ["target"], axis=0),
             helper.make_node("ReduceMax", ["x"], ["col"], axes=[1], keepdims=1),
             helper.make_node("Expand", ["col", "target"], ["y"])]
    m = model(nodes, [vi("x", ["batch", "w"])], [vi("y", ["batch", "n"])], opset=13)
    g, _ = check(m, [{"x": rand(b, w)} for b, w in ((1, 3), (2, 8), (3, 1))])
    assert g.outputs[0].type.shape[1] == 2 * ((symbol("w") + 1) // 2)      # no run-time shape


def test_if_on_a_size_whose_branches_differ_in_rank():
    # Silero VAD: x.squeeze(-1) if x.shape[-1] == 1 else x, the last size computed from the
    # input's length: the branch of the sizes being equal, checked when the input binds them
    then = helper.make_graph([helper.make_node("Squeeze", ["h", "axl"], ["o"])], "then", [],
                             [vi("o", ["b", 3])])
    other = helper.make_graph([helper.make_node("Identity", ["h"], ["o2"])], "else", [], [vi("o2", ["b", 3, "n"])])
    nodes = [helper.make_node("MaxPool", ["x"], ["h"], kernel_shape=[4], strides=[4]),
             helper.make_node("Shape", ["h"], ["shp"]), _const("last", -1), _const("one", 1), _const("axl", [-1]),
             helper.make_node("Gather", ["shp", "last"], ["n"], axis=0),
             helper.make_node("Equal", ["n", "one"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    m = model(nodes, [vi("x", ["batch", 3, "t"])], [vi("y", ["batch", 3])])
    g, mod = check(m, [{"x": rand(b, 3, t)} for b, t in ((1, 4), (2, 7))])
    with pytest.raises(InputError, match="If"):
        mod.run({"x": rand(1, 3, 8)})


def test_squeeze_without_axes_after_a_recurrence_with_a_fixed_batch_state():
    # AECMOS: a GRU whose initial state has batch 1 fixes the input's open batch to 1 (checked),
    # so a Squeeze with no axes drops it, as onnxruntime does
    h, i = 4, 3
    w = (np.random.default_rng(1).standard_normal((1, 3 * h, i)) * 0.4).astype(np.float32)
    r = (np.random.default_rng(2).standard_normal((1, 3 * h, h)) * 0.4).astype(np.float32)
    h0 = (np.random.default_rng(3).standard_normal((1, 1, h)) * 0.4).astype(np.float32)
    nodes = [helper.make_node("GRU", ["x", "w", "r", "", "", "h0"], ["", "yh"], hidden_size=h),
             helper.make_node("Squeeze", ["yh"], ["y"])]
    m = model(nodes, [vi("x", ["seq", "batch", i])], [vi("y", [h])], [("w", w), ("r", r), ("h0", h0)], opset=11)
    _, mod = check(m, [{"x": rand(s, 1, i)} for s in (1, 5, 20)])
    with pytest.raises(InputError, match="initial state"):
        mod.run({"x": rand(3, 2, i)})


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_constant_pads_of_an_open_axis_in_index_modes(mode):
    # Silero VAD pads its signal by reflection before the STFT: constant pads, an open length
    nodes = [helper.make_node("Pad", ["x", "pads"], ["y"], mode=mode)]
    m = model(nodes, [vi("x", ["batch", "t"])], [vi("y", ["batch", "t2"])],
              [("pads", np.array([0, 3, 0, 2], np.int64))])
    check(m, [{"x": rand(b, t)} for b, t in ((1, 4), (2, 9), (3, 5))])


def test_output_declared_with_a_stale_shape_of_another_rank():
    # ddddocr: a CTC recognizer whose output, time-major [(w+1)//2, 1, C], is declared [1, seqlen]
    # by its export; onnxruntime ignores the declaration (with a warning) and so does Ember
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 2], strides=[1, 2], pads=[0, 0, 0, 1]),
             helper.make_node("Squeeze", ["p", "ax0"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t"], perm=[2, 0, 1])]
    m = model(nodes, [vi("x", [1, 1, 4, "w"])], [vi("t", [1, "seqlen"])], [("ax0", np.array([0], np.int64))])
    with pytest.warns(DeclaredShapeWarning, match=r"graph output 't' is declared of rank 2 \(\[1, seqlen\]\)"):
        g, _ = check(m, [{"x": rand(1, 1, 4, w)} for w in (1, 6, 9)])
    assert g.outputs[0].type.shape == ((symbol("w") + 1) // 2, 1, 4)


@pytest.mark.parametrize("inside_if", [False, True])
def test_recurrence_whose_state_has_a_batch_symbol_of_its_own(inside_if):
    # Silero VAD 6: the LSTM state is a graph input [2, state_batch, 128] next to the signal's
    # [batch, 512], its step inside an If on the sample rate: the two batches must agree, which
    # the run checks when the inputs bind them
    h, i = 4, 3
    w = (np.random.default_rng(1).standard_normal((1, 4 * h, i)) * 0.4).astype(np.float32)
    r = (np.random.default_rng(2).standard_normal((1, 4 * h, h)) * 0.4).astype(np.float32)

    def lstm(suffix, wname):
        return [helper.make_node("LSTM", ["x", wname, "r", "", "", "h0", "c0"], ["", "yh" + suffix, "yc" + suffix],
                                 hidden_size=h)]

    if inside_if:
        then = helper.make_graph(lstm("t", "w"), "then", [], [vi("yht", [1, "b", h]), vi("yct", [1, "b", h])])
        other = helper.make_graph(lstm("e", "w2"), "else", [], [vi("yhe", [1, "b", h]), vi("yce", [1, "b", h])])
        nodes = [helper.make_node("Equal", ["sr", "rate"], ["c"]),
                 helper.make_node("If", ["c"], ["yh", "yc"], then_branch=then, else_branch=other)]
        inputs = [vi("x", [1, "batch", i]), vi("h0", [1, "state_batch", h]), vi("c0", [1, "state_batch", h]),
                  vi("sr", [], TP.INT64)]
        inits = [("w", w), ("w2", w[:, ::-1].copy()), ("r", r), ("rate", np.array(16000, np.int64))]
    else:
        nodes = [helper.make_node("Identity", ["yht"], ["yh"]), helper.make_node("Identity", ["yct"], ["yc"])]
        nodes = lstm("t", "w") + nodes
        inputs = [vi("x", [1, "batch", i]), vi("h0", [1, "state_batch", h]), vi("c0", [1, "state_batch", h])]
        inits = [("w", w), ("r", r)]
    m = model(nodes, inputs, [vi("yh", [1, "b", h]), vi("yc", [1, "b", h])], inits, opset=14)
    feeds = [{"x": rand(1, b, i), "h0": rand(1, b, h) * 0.5, "c0": rand(1, b, h) * 0.3} for b in (1, 2, 3)]
    if inside_if:
        for k, f in enumerate(feeds):
            f["sr"] = np.array(16000 if k != 1 else 8000, np.int64)
    _, mod = check(m, feeds)
    # checked before the run, or inside the If when its branch runs
    with pytest.raises(InputError if not inside_if else EmberError, match="initial state"):
        mod.run({**feeds[1], "h0": rand(1, 3, h), "c0": rand(1, 3, h)})


def _squeeze_if_one(prefix, x, pool):
    # x [b, 3, t] pooled by POOL, then x.squeeze(-1) if x.shape[-1] == 1 else x: the branch of
    # the sizes being equal, which the run checks
    then = helper.make_graph([helper.make_node("Squeeze", [f"{prefix}h", "axl"], [f"{prefix}o"])], f"{prefix}then",
                             [], [vi(f"{prefix}o", ["b", 3])])
    other = helper.make_graph([helper.make_node("Identity", [f"{prefix}h"], [f"{prefix}o2"])], f"{prefix}else", [],
                              [vi(f"{prefix}o2", ["b", 3, "n"])])
    return [helper.make_node("MaxPool", [x], [f"{prefix}h"], kernel_shape=[pool], strides=[pool]),
            helper.make_node("Shape", [f"{prefix}h"], [f"{prefix}shp"]),
            helper.make_node("Gather", [f"{prefix}shp", "last"], [f"{prefix}n"], axis=0),
            helper.make_node("Equal", [f"{prefix}n", "one"], [f"{prefix}c"]),
            helper.make_node("If", [f"{prefix}c"], [f"{prefix}y"], then_branch=then, else_branch=other)]


def test_size_checks_of_a_branch_are_made_only_where_it_runs():
    # Silero VAD 6: one branch per sample rate (a run-time If on the input 'sr'); each squeezes
    # the frame axis, which is 1 only for the length of its own rate (256 samples at 8 kHz, 512
    # at 16 kHz): the other branch's check must not refuse the input
    eight = helper.make_graph(_squeeze_if_one("a", "x", 4), "eight", [], [vi("ay", ["b", 3])])
    sixteen = helper.make_graph(_squeeze_if_one("b", "x", 8), "sixteen", [], [vi("by", ["b", 3])])
    nodes = [_const("last", -1), _const("one", 1), _const("axl", [-1]), _const("rate", 8000),
             helper.make_node("Equal", ["sr", "rate"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=eight, else_branch=sixteen)]
    m = model(nodes, [vi("x", ["batch", 3, "t"]), vi("sr", [], TP.INT64)], [vi("y", ["batch", 3])])
    sr = lambda v: np.array(v, np.int64)   # noqa: E731
    _, mod = check(m, [{"x": rand(1, 3, 5), "sr": sr(8000)}, {"x": rand(2, 3, 12), "sr": sr(16000)},
                       {"x": rand(3, 3, 4), "sr": sr(8000)}, {"x": rand(1, 3, 15), "sr": sr(16000)}])
    # the branch taken makes its check when it runs (an error of the run, as onnxruntime's)
    with pytest.raises(EmberError, match=r"needs t//4 == 1.*it is 2"):
        mod.run({"x": rand(1, 3, 12), "sr": sr(8000)})


def test_squeeze_without_axes_of_an_open_batch_gives_a_rank_the_run_decides(tmp_path):
    # PLCMOS: score = 4 * sigmoid(squeeze(gemm [batch, 1])) + 1, declared of rank 0: ONNX drops
    # every axis of size 1, the batch too where it is 1 (onnxruntime gives () at batch 1, (2,)
    # at batch 2); the artifact computes [batch] and drops the batch where it is 1
    w = (np.random.default_rng(1).standard_normal((1, 4)) * 0.5).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
             helper.make_node("Squeeze", ["g"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["p"]),
             _float_const("four", 4.0), _float_const("one", 1.0),
             helper.make_node("Mul", ["p", "four"], ["m"]),
             helper.make_node("Add", ["m", "one"], ["y"])]
    m = model(nodes, [vi("x", ["batch", 4])], [vi("y", [])], [("w", w)], opset=11)
    g, mod = check(m, [{"x": rand(b, 4)} for b in (1, 2, 1, 5)])
    assert g.squeezes == {0: (0,)}
    assert mod.run({"x": rand(1, 4)})["y"].shape == () and mod.run({"x": rand(3, 4)})["y"].shape == (3,)
    loaded = ember.load(mod.save(tmp_path / "m.so"))       # the artifact alone: its metadata
    assert loaded.run({"x": rand(1, 4)})["y"].shape == () and loaded.run({"x": rand(3, 4)})["y"].shape == (3,)

"""Operands read at run time: the axes of the reductions, Resize's scales, sizes and roi, the
indices of ScatterND and ScatterElements (the first two decide the output's shape).  Each
model is compiled once with the operand as a graph input and run with several values, by the
reference interpreter (on the translated graph) and by the artifact, against onnxruntime."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ember
from ember.errors import DataShapeError, IndexOutOfRangeError, RuntimeLimitError
from ember.frontend import from_onnx
from ember.graph import run_graph
from onnx_harness import assert_same, run_onnx_reference, run_onnxruntime

RNG = np.random.default_rng(11)


def model(nodes, inputs, opset=18):
    """``inputs``: (name, ONNX dtype, dims) per graph input; one output ``y`` of unknown shape."""
    g = helper.make_graph(nodes, "runtime_shapes", [helper.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                          [onnx.ValueInfoProto(name="y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def check(m, feeds_list, rtol=1e-5, atol=1e-6, oracle=run_onnxruntime):
    """One translation and one compile; every feed through both, against onnxruntime (or
    ``oracle``)."""
    g = from_onnx(m)
    mod = ember.compile(m, cflags=("-O1",))
    names = [i.name for i in m.graph.input]
    for feeds in feeds_list:
        want = oracle(m, feeds)
        assert_same([np.asarray(a) for a in run_graph(g, [feeds[n] for n in names])], want, rtol, atol)
        assert_same(list(mod.run(feeds).values()), want, rtol, atol)
    return mod


# ---- reductions with run-time axes ---------------------------------------------------------------

REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


def _axes_values(rank: int, k: int):
    """Every choice of ``k`` distinct axes, some counted from the back."""
    out = []
    for axes in itertools.permutations(range(rank), k):
        out.append([a - rank if (a + len(out)) % 2 else a for a in axes])
    return out


@pytest.mark.parametrize("op", REDUCTIONS)
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_at_run_time(op, keepdims):
    shape = [3, 4, 5]
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)],
              [("x", TP.FLOAT, shape), ("axes", TP.INT64, [2])])
    x = RNG.uniform(0.5, 2.0, shape).astype(np.float32)        # positive: log-sums are defined
    mod = check(m, [{"x": x, "axes": np.array(a, np.int64)} for a in _axes_values(3, 2)])
    assert mod.symbols                                       # one artifact, the sizes bound at run time


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("k", [1, 3])
def test_reduce_axes_count_and_open_shape(keepdims, k):
    # open dimensions of the input, and one or all of its axes named
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=keepdims)],
              [("x", TP.FLOAT, ["n", 4, "w"]), ("axes", TP.INT64, [k])], opset=13)
    feeds = []
    for shape in ([2, 4, 3], [1, 4, 6], [5, 4, 1]):
        for axes in _axes_values(3, k)[:4]:
            feeds.append({"x": RNG.standard_normal(shape).astype(np.float32), "axes": np.array(axes, np.int64)})
    check(m, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,dtype", [("ReduceMax", np.int32), ("ReduceMin", np.int64), ("ReduceMean", np.int32),
                                      ("ReduceSum", np.int64), ("ReduceMax", np.bool_)])
def test_reduce_axes_at_run_time_integers(op, dtype):
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)], [("x", tp, [4, 6]), ("axes", TP.INT64, [1])],
              opset=20)                                       # (ReduceMax of bool from opset 20)
    x = RNG.integers(-20, 20, (4, 6)).astype(dtype)
    check(m, [{"x": x, "axes": np.array([a], np.int64)} for a in (0, 1, -1, -2)])


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceLogSumExp"])
def test_reduce_run_time_axes_over_an_empty_axis(op):
    # the axis named is empty at run time: the combiner's identity, as onnxruntime gives
    m = model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)],
              [("x", TP.FLOAT, [3, "n"]), ("axes", TP.INT64, [1])])
    check(m, [{"x": np.zeros((3, 0), np.float32), "axes": np.array([1], np.int64)},
              {"x": RNG.standard_normal((3, 2)).astype(np.float32), "axes": np.array([1], np.int64)}])


@pytest.mark.parametrize("noop", [0, 1])
def test_reduce_empty_axes_input(noop):
    # an axes input of no elements: reduce everything, or nothing with noop_with_empty_axes
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0, noop_with_empty_axes=noop)],
              [("x", TP.FLOAT, [2, 3]), ("axes", TP.INT64, [0])])
    g = from_onnx(m)
    assert not any(n.op == "bind_dims" for n in g.nodes)
    check(m, [{"x": RNG.standard_normal((2, 3)).astype(np.float32), "axes": np.zeros(0, np.int64)}])


def test_reduce_bad_run_time_axes_are_errors_of_the_run():
    m = model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
              [("x", TP.FLOAT, [2, 3, 4]), ("axes", TP.INT64, [2])])
    mod = ember.compile(m, cflags=("-O1",))
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(IndexOutOfRangeError, match="axes of this ReduceSum"):
        mod(x, np.array([0, 3], np.int64))
    with pytest.raises(IndexOutOfRangeError):
        mod(x, np.array([-4, 1], np.int64))
    with pytest.raises(DataShapeError):
        mod(x, np.array([1, -2], np.int64))                # the same axis twice
    np.testing.assert_allclose(mod(x, np.array([2, 0], np.int64)), x.sum(axis=(0, 2)), rtol=1e-5)


def test_reduce_more_axes_than_dims_is_refused_by_name():
    m = model([helper.make_node("ReduceMean", ["x", "axes"], ["y"])],
              [("x", TP.FLOAT, [2, 3]), ("axes", TP.INT64, [3])])
    with pytest.raises(ember.errors.InvalidModelError, match="ReduceMean.*more axes"):
        from_onnx(m)


# ---- Resize and Upsample with run-time scales, sizes and roi ---------------------------------------

def _resize_model(attrs, scales=True, roi=False, axes=None, opset=19, x_dims=(1, 2, 5, 6)):
    k = len(axes) if axes is not None else len(x_dims)
    if axes is not None:
        attrs = dict(attrs, axes=axes)
    ins = ["x", "roi" if roi else "", "scales" if scales else "", "" if scales else "sizes"]
    inputs = [("x", TP.FLOAT, list(x_dims))]
    if roi:
        inputs.append(("roi", TP.FLOAT, [2 * k]))
    inputs.append(("scales", TP.FLOAT, [k]) if scales else ("sizes", TP.INT64, [k]))
    return model([helper.make_node("Resize", [i for i in ins], ["y"], **attrs)], inputs, opset=opset)


@pytest.mark.parametrize("attrs", [
    {"mode": "nearest"},
    {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    {"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"},
    {"mode": "linear"},
    {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"},
    {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    {"mode": "cubic", "coordinate_transformation_mode": "align_corners"},
])
def test_resize_scales_at_run_time(attrs):
    m = _resize_model(attrs)
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    feeds = [{"x": x, "scales": np.array(s, np.float32)}
             for s in ([1, 1, 2, 2], [1, 1, 0.6, 1.5], [1, 1, 3, 0.5], [1, 1, 1, 1])]
    assert check(m, feeds, rtol=1e-4, atol=1e-5).symbols


@pytest.mark.parametrize("attrs", [
    {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "ceil"},
    {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"mode": "cubic"},
    {"mode": "nearest", "keep_aspect_ratio_policy": "not_larger"},
    {"mode": "nearest", "keep_aspect_ratio_policy": "not_smaller"},
])
def test_resize_sizes_at_run_time(attrs):
    m = _resize_model(attrs, scales=False, axes=[2, 3])
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    feeds = [{"x": x, "sizes": np.array(s, np.int64)} for s in ([10, 12], [3, 9], [5, 6], [1, 2])]
    check(m, feeds, rtol=1e-4, atol=1e-5)


def test_resize_open_input_and_run_time_scales():
    m = model([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
              [("x", TP.FLOAT, [1, 1, "h", "w"]), ("scales", TP.FLOAT, [4])])
    feeds = [{"x": RNG.standard_normal((1, 1) + hw).astype(np.float32), "scales": np.array(s, np.float32)}
             for hw, s in (((4, 4), [1, 1, 2, 0.5]), ((3, 7), [1, 1, 1.5, 2]), ((8, 2), [1, 1, 0.25, 3]))]
    check(m, feeds, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("extrapolation", [0.0, 10.0])
def test_resize_crop_and_resize_roi_at_run_time(extrapolation):
    m = _resize_model({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
                       "extrapolation_value": extrapolation}, scales=False, roi=True, axes=[2, 3])
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    feeds = [{"x": x, "roi": np.array(r, np.float32), "sizes": np.array(s, np.int64)}
             for r, s in (([0.4, 0.6, 0.6, 0.8], [3, 3]), ([0, 0, 1, 1], [7, 4]))]
    check(m, feeds, rtol=1e-4, atol=1e-5)
    # a roi reaching outside the input, where extrapolation_value fills in: onnxruntime
    # extrapolates its linear taps otherwise than the spec, so onnx's reference evaluator judges
    check(m, [{"x": x, "roi": np.array([-0.2, 0.1, 1.3, 0.9], np.float32), "sizes": np.array([4, 6], np.int64)}],
          rtol=1e-4, atol=1e-5, oracle=run_onnx_reference)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_resize_antialias_at_run_time(mode):
    m = _resize_model({"mode": mode, "antialias": 1}, axes=[2, 3])
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    feeds = [{"x": x, "scales": np.array(s, np.float32)} for s in ([0.6, 0.5], [0.25, 2.0], [1.0, 0.8])]
    check(m, feeds, rtol=1e-4, atol=1e-5)


def test_resize_run_time_operands_that_cannot_be_compiled_are_refused_by_name():
    # antialiasing needs as many taps as the smallest ratio gives: refused over a large axis
    m = _resize_model({"mode": "linear", "antialias": 1}, axes=[2, 3], x_dims=(1, 1, 100, 100))
    with pytest.raises(ember.errors.InvalidModelError, match="Resize.*antialias.*taps"):
        from_onnx(m)
    # a scale of 0 or less is an error of the run
    mod = ember.compile(_resize_model({"mode": "nearest"}), cflags=("-O1",))
    x = RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)
    with pytest.raises(DataShapeError):
        mod(x, np.array([1, 1, -2, 1], np.float32))
    # a scale past what memory holds is refused before anything is allocated; one past int64 too
    with pytest.raises(RuntimeLimitError):
        mod(x, np.array([1, 1, 800_000, 800_000], np.float32))
    for bad in (1e30, np.inf, np.nan):
        with pytest.raises(ember.errors.EmberError):
            mod(x, np.array([1, 1, bad, 1], np.float32))
    assert mod(x, np.array([1, 1, 2, 1], np.float32)).shape == (1, 2, 10, 6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_scales_at_run_time(mode):
    m = model([helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)],
              [("x", TP.FLOAT, [1, 1, 3, 4]), ("scales", TP.FLOAT, [4])], opset=9)
    x = RNG.standard_normal((1, 1, 3, 4)).astype(np.float32)
    check(m, [{"x": x, "scales": np.array(s, np.float32)} for s in ([1, 1, 2, 2], [1, 1, 3, 1.5], [1, 1, 1, 1])])


# ---- ScatterND and ScatterElements with run-time indices -------------------------------------------

@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_indices_at_run_time(reduction):
    m = model([helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)],
              [("x", TP.FLOAT, [4, 3, 2]), ("i", TP.INT64, [3, 2]), ("u", TP.FLOAT, [3, 2])])
    x = RNG.standard_normal((4, 3, 2)).astype(np.float32)
    u = RNG.standard_normal((3, 2)).astype(np.float32)
    # distinct targets (onnxruntime refuses repeated ones without a reduction), some counted from the end
    values = [[[0, 0], [3, 2], [1, 1]], [[-1, -1], [2, 0], [0, 2]], [[1, 0], [1, 1], [1, 2]]]
    if reduction != "none":
        values.append([[2, 1], [2, 1], [-2, -2]])
    check(m, [{"x": x, "i": np.array(v, np.int64), "u": u} for v in values])


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("reduction", ["none", "add", "max"])
def test_scatter_elements_indices_at_run_time(axis, reduction):
    m = model([helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=axis, reduction=reduction)],
              [("x", TP.FLOAT, [4, 5]), ("i", TP.INT64, [2, 3]), ("u", TP.FLOAT, [2, 3])])
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    u = RNG.standard_normal((2, 3)).astype(np.float32)
    n = 4 if axis == 0 else 5
    feeds = []
    for _ in range(3):
        # distinct along the axis where nothing combines them (onnxruntime's order is its own then)
        if reduction == "none":
            i = np.stack([RNG.permutation(n)[:2] for _ in range(3)], axis=1) if axis == 0 else \
                np.stack([RNG.permutation(n)[:3] for _ in range(2)])
        else:
            i = RNG.integers(-n, n, (2, 3))
        feeds.append({"x": x, "i": i.astype(np.int64), "u": u})
    check(m, feeds)


def test_scatter_opset_9_and_open_data():
    m = model([helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=1)],
              [("x", TP.FLOAT, ["n", 6]), ("i", TP.INT64, [2, 2]), ("u", TP.FLOAT, [2, 2])], opset=10)
    u = RNG.standard_normal((2, 2)).astype(np.float32)
    check(m, [{"x": RNG.standard_normal((n, 6)).astype(np.float32), "i": np.array(i, np.int64), "u": u}
              for n, i in ((2, [[0, 5], [-1, 2]]), (3, [[4, 1], [0, 3]]), (5, [[2, 3], [1, 0]]))])


def test_scatter_run_time_indices_out_of_range_are_errors_of_the_run():
    m = model([helper.make_node("ScatterND", ["x", "i", "u"], ["y"])],
              [("x", TP.FLOAT, [4, 3]), ("i", TP.INT64, [2, 1]), ("u", TP.FLOAT, [2, 3])])
    mod = ember.compile(m, cflags=("-O1",))
    x, u = np.zeros((4, 3), np.float32), np.ones((2, 3), np.float32)
    with pytest.raises(IndexOutOfRangeError, match="axis 0 of the ScatterND data"):
        mod(x, np.array([[1], [4]], np.int64), u)
    assert mod(x, np.array([[1], [-1]], np.int64), u).sum() == 6
    m = model([helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1)],
              [("x", TP.FLOAT, [2, 3]), ("i", TP.INT64, [1, 2]), ("u", TP.FLOAT, [1, 2])])
    mod = ember.compile(m, cflags=("-O1",))
    with pytest.raises(IndexOutOfRangeError, match="axis 1 of the ScatterElements data"):
        mod(np.zeros((2, 3), np.float32), np.array([[0, -4]], np.int64), np.ones((1, 2), np.float32))


# ---- Squeeze, Unsqueeze, Slice and Pad with run-time axes -------------------------------------------

def test_unsqueeze_axes_at_run_time():
    m = model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"])],
              [("x", TP.FLOAT, [3, "n"]), ("axes", TP.INT64, [2])], opset=13)
    feeds = [{"x": RNG.standard_normal((3, n)).astype(np.float32), "axes": np.array(a, np.int64)}
             for n, a in ((4, [0, 1]), (2, [3, -3]), (5, [2, 0]), (1, [-4, 1]))]
    assert check(m, feeds).symbols


def test_squeeze_axes_at_run_time():
    m = model([helper.make_node("Squeeze", ["x", "axes"], ["y"])],
              [("x", TP.FLOAT, [1, 3, 1, 1]), ("axes", TP.INT64, [2])], opset=13)
    x = RNG.standard_normal((1, 3, 1, 1)).astype(np.float32)
    mod = check(m, [{"x": x, "axes": np.array(a, np.int64)} for a in ([0, 2], [3, -4], [-1, -2])])
    with pytest.raises(DataShapeError):
        mod(x, np.array([0, 1], np.int64))                   # axis 1 has size 3
    with pytest.raises(DataShapeError):
        mod(x, np.array([2, -2], np.int64))                  # the same axis twice


def test_slice_axes_at_run_time():
    m = model([helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"])],
              [("x", TP.FLOAT, [4, 5, 6]), ("s", TP.INT64, [2]), ("e", TP.INT64, [2]), ("a", TP.INT64, [2]),
               ("p", TP.INT64, [2])], opset=13)
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    feeds = [{"x": x, "s": np.array(s, np.int64), "e": np.array(e, np.int64), "a": np.array(a, np.int64),
              "p": np.array(p, np.int64)}
             for s, e, a, p in (([0, 1], [3, 4], [0, 2], [1, 2]), ([-1, 0], [-5, 100], [-1, 1], [-2, 1]),
                                ([1, 2], [2, 5], [2, 0], [1, 1]))]
    check(m, feeds)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_axes_at_run_time(mode):
    m = model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode=mode)],
              [("x", TP.FLOAT, [3, 4]), ("pads", TP.INT64, [2]), ("axes", TP.INT64, [1])], opset=18)
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    check(m, [{"x": x, "pads": np.array(p, np.int64), "axes": np.array(a, np.int64)}
              for p, a in (([1, 2], [0]), ([2, 0], [-1]), ([0, -1], [1]))])


# ---- NonMaxSuppression of run-time boxes and scores -----------------------------------------------

def _boxes(b, n, center):
    lo = RNG.uniform(0, 10, (b, n, 2))
    size = RNG.uniform(0.5, 4, (b, n, 2))
    if center:
        return np.concatenate([lo + size / 2, size], axis=2).astype(np.float32)[..., [1, 0, 3, 2]]
    hi = lo + size
    flip = RNG.random((b, n, 1)) < 0.3          # some corners given the other way round
    return np.where(flip, np.concatenate([hi, lo], 2), np.concatenate([lo, hi], 2)).astype(np.float32)


@pytest.mark.parametrize("center", [0, 1])
def test_nms_at_run_time(center):
    m = model([helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "floor"], ["y"],
                                center_point_box=center)],
              [("boxes", TP.FLOAT, [2, 12, 4]), ("scores", TP.FLOAT, [2, 3, 12]), ("limit", TP.INT64, [1]),
               ("iou", TP.FLOAT, [1]), ("floor", TP.FLOAT, [1])], opset=11)
    feeds = []
    for limit, iou, floor in ((3, 0.5, 0.0), (100, 0.2, 0.4), (0, 0.5, 0.0), (12, 0.0, -1.0)):
        scores = RNG.random((2, 3, 12)).astype(np.float32)
        scores[0, 0, :4] = 0.5                                 # ties: the lower index first
        feeds.append({"boxes": _boxes(2, 12, center), "scores": scores, "limit": np.array([limit], np.int64),
                      "iou": np.array([iou], np.float32), "floor": np.array([floor], np.float32)})
    mod = check(m, feeds)
    assert mod.symbols


def test_nms_without_optional_operands_and_too_many_boxes():
    m = model([helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit"], ["y"])],
              [("boxes", TP.FLOAT, [1, 6, 4]), ("scores", TP.FLOAT, [1, 2, 6]), ("limit", TP.INT64, [])], opset=11)
    check(m, [{"boxes": _boxes(1, 6, 0), "scores": RNG.random((1, 2, 6)).astype(np.float32),
               "limit": np.array(k, np.int64)} for k in (0, 2, 6)])
    m = model([helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["y"])],
              [("boxes", TP.FLOAT, [1, 500, 4]), ("scores", TP.FLOAT, [1, 1, 500])], opset=11)
    with pytest.raises(ember.errors.InvalidModelError, match="NonMaxSuppression.*500 boxes"):
        from_onnx(m)


# ---- CenterCropPad to run-time sizes; sizes of data dimensions read back as values ----------------

def test_center_crop_pad_shape_at_run_time():
    m = model([helper.make_node("CenterCropPad", ["x", "shape"], ["y"], axes=[0, -1])],
              [("x", TP.FLOAT, [5, 3, "w"]), ("shape", TP.INT64, [2])])
    feeds = [{"x": RNG.standard_normal((5, 3, w)).astype(np.float32), "shape": np.array(s, np.int64)}
             for w, s in ((4, [3, 7]), (6, [8, 2]), (5, [5, 5]), (1, [0, 4]))]
    check(m, feeds, oracle=run_onnx_reference)


def test_a_shape_of_data_dimensions_read_as_values():
    # Shape of NonZero's result, computed with and read as data: ordered after the binding
    m = model([helper.make_node("NonZero", ["x"], ["nz"]),
               helper.make_node("Shape", ["nz"], ["s"]),
               helper.make_node("Cast", ["s"], ["f"], to=TP.FLOAT),
               helper.make_node("Mul", ["f", "k"], ["y"])],
              [("x", TP.FLOAT, [3, 4]), ("k", TP.FLOAT, [2])], opset=13)
    check(m, [{"x": (RNG.random((3, 4)) < p).astype(np.float32), "k": np.array([2, 3], np.float32)}
              for p in (0.0, 0.4, 1.0)])


# ---- Col2Im to a run-time image (and block) shape ------------------------------------------------

def test_col2im_image_and_block_shapes_at_run_time():
    # 12 columns of 2x3 blocks (strides 1 x 2, pads, dilations) fit images of several shapes
    m = model([helper.make_node("Col2Im", ["x", "image", "block"], ["y"], strides=[1, 2], pads=[1, 0, 0, 1],
                                dilations=[1, 2])],
              [("x", TP.FLOAT, [2, 12, 12]), ("image", TP.INT64, [2]), ("block", TP.INT64, [2])])
    x = RNG.standard_normal((2, 12, 12)).astype(np.float32)
    # (image 4 x 8 gives 4 x 3 blocks, 4 x 9 too; 2 x 14 gives 2 x 6; 12 x 5 gives 12 x 1; a 3x2
    # block of 2 channels: 2 x 6 blocks of an image 3 x 12)
    feeds = [{"x": x, "image": np.array(i, np.int64), "block": np.array(b, np.int64)}
             for i, b in (([4, 8], [2, 3]), ([4, 9], [2, 3]), ([2, 14], [2, 3]), ([12, 5], [2, 3]),
                          ([3, 12], [3, 2]))]
    mod = check(m, feeds, oracle=run_onnx_reference)
    # sizes whose block counts do not multiply to 12, a block that does not divide the channels
    for image, block in (([5, 8], [2, 3]), ([4, 8], [5, 1]), ([0, 8], [2, 3]), ([4, 8], [0, 3])):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "image": np.array(image, np.int64), "block": np.array(block, np.int64)})


# ---- STFT's frame_step and frame_length at run time -----------------------------------------------

@pytest.mark.parametrize("onesided", [1, 0])
def test_stft_frame_step_and_length_at_run_time(onesided):
    # the frame count (and a frame length the run gives, with its spectrum's length) bound
    m = model([helper.make_node("STFT", ["x", "step", "", "length"], ["y"], onesided=onesided)],
              [("x", TP.FLOAT, [2, 40, 2 - onesided]), ("step", TP.INT64, []), ("length", TP.INT64, [])], opset=17)
    x = RNG.standard_normal((2, 40, 2 - onesided)).astype(np.float32)
    feeds = [{"x": x, "step": np.array(s, np.int64), "length": np.array(f, np.int64)}
             for s, f in ((8, 16), (3, 7), (1, 40), (40, 1), (5, 12))]
    mod = check(m, feeds, rtol=1e-4, atol=1e-5, oracle=run_onnx_reference)
    for s, f in ((0, 16), (8, 41), (8, 0)):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "step": np.array(s, np.int64), "length": np.array(f, np.int64)})


def test_stft_frame_step_at_run_time_with_a_window():
    m = model([helper.make_node("STFT", ["x", "step", "w"], ["y"])],
              [("x", TP.FLOAT, [1, 64, 1]), ("step", TP.INT64, []), ("w", TP.FLOAT, [12])], opset=17)
    x = RNG.standard_normal((1, 64, 1)).astype(np.float32)
    w = np.hanning(12).astype(np.float32)
    check(m, [{"x": x, "step": np.array(s, np.int64), "w": w} for s in (4, 12, 53)], rtol=1e-4, atol=1e-5,
          oracle=run_onnx_reference)


# ---- MaxUnpool to a run-time output_shape ---------------------------------------------------------

def test_max_unpool_output_shape_at_run_time():
    m = model([helper.make_node("MaxUnpool", ["x", "i", "shape"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
              [("x", TP.FLOAT, [1, 2, 2, 3]), ("i", TP.INT64, [1, 2, 2, 3]), ("shape", TP.INT64, [4])], opset=11)
    x = RNG.standard_normal((1, 2, 2, 3)).astype(np.float32)
    # indices into each channel's unpooled 4 x 6 plane, offset by the channel's plane
    i = (RNG.integers(0, 24, (1, 2, 2, 3)) + np.arange(2).reshape(1, 2, 1, 1) * 24).astype(np.int64)
    check(m, [{"x": x, "i": i, "shape": np.array(s, np.int64)} for s in ([1, 2, 4, 6], [1, 2, 5, 6], [1, 2, 7, 9])],
          oracle=run_onnx_reference)
    mod = ember.compile(m, cflags=("-O1",))
    for bad in ([1, 2, 3, 6], [1, 3, 4, 6], [2, 2, 4, 6]):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "i": i, "shape": np.array(bad, np.int64)})


# ---- MelWeightMatrix of run-time scalars ----------------------------------------------------------

def test_mel_weight_matrix_at_run_time():
    names = ["mels", "dft", "rate", "lo", "hi"]
    m = model([helper.make_node("MelWeightMatrix", names, ["y"])],
              [("mels", TP.INT64, []), ("dft", TP.INT64, []), ("rate", TP.INT64, []), ("lo", TP.FLOAT, []),
               ("hi", TP.FLOAT, [])], opset=17)

    def feeds(mels, dft, rate, lo, hi):
        return {"mels": np.array(mels, np.int64), "dft": np.array(dft, np.int64), "rate": np.array(rate, np.int64),
                "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}

    mod = check(m, [feeds(8, 16, 8192, 0, 4096), feeds(20, 64, 16000, 20, 8000), feeds(3, 9, 100, 10, 50),
                    feeds(1, 1, 8, 0, 4)], oracle=run_onnx_reference)
    for bad in ((0, 16, 8192, 0, 4096), (8, 0, 8192, 0, 4096), (8, 16, 0, 0, 4096)):
        with pytest.raises(DataShapeError):
            mod.run(feeds(*bad))

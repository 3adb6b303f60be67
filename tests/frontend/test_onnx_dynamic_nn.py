"""Convolutions, pools, normalizations, resizing and the other image ops over open batch, height
and width: one compile per model, checked against onnxruntime at several sizes (the graph and the
compiled artifact, see ``test_onnx_dynamic.check``)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from ember.errors import FrontendError, InputError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from test_onnx_dynamic import check

pytest.importorskip("onnxruntime")
NCHW = ["N", 4, "H", "W"]
BOUNDS = {"N": 2, "H": 24, "W": 24}


def rand(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def one_node(op, attrs=None, inits=(), dims=NCHW, opset=17, n_out=1, out_type=TP.FLOAT):
    outs = ["y"] + [f"y{k}" for k in range(1, n_out)]
    node = helper.make_node(op, ["x"] + [n for n, _ in inits], outs, **(attrs or {}))
    g = helper.make_graph([node], "dyn", [helper.make_tensor_value_info("x", TP.FLOAT, dims)],
                          [helper.make_tensor_value_info(o, out_type if k == 0 else TP.BOOL, None)
                           for k, o in enumerate(outs)],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def feeds(*shapes):
    return [{"x": rand(*s)} for s in shapes]


IMAGES = feeds((1, 4, 9, 6), (2, 4, 14, 17), (1, 4, 24, 3))

CASES = {
    "conv": ("Conv", {"pads": [1, 1, 1, 1]}, [("w", rand(8, 4, 3, 3))]),
    "conv_stride2_bias": ("Conv", {"pads": [1, 0, 1, 2], "strides": [2, 2]}, [("w", rand(16, 4, 3, 3)), ("b", rand(16))]),
    "conv_1x1": ("Conv", {}, [("w", rand(32, 4, 1, 1))]),
    "conv_depthwise": ("Conv", {"pads": [1, 1, 1, 1], "group": 4}, [("w", rand(4, 1, 3, 3))]),
    "conv_same_stride1": ("Conv", {"auto_pad": "SAME_UPPER"}, [("w", rand(8, 4, 3, 3))]),
    "conv_transpose": ("ConvTranspose", {"strides": [2, 2], "pads": [1, 1, 1, 1]}, [("w", rand(4, 3, 3, 3))]),
    "conv_same_upper_stride2": ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [("w", rand(8, 4, 3, 3))]),
    "conv_same_lower_stride2_3": ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 3]},
                                  [("w", rand(8, 4, 3, 5)), ("b", rand(8))]),
    "conv_same_1x1_stride2": ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [("w", rand(8, 4, 1, 1))]),
    "max_pool_same_stride2": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, []),
    "avg_pool_same_stride2": ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}, []),
    "avg_pool_same_stride2_counting_pads": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                            "auto_pad": "SAME_UPPER", "count_include_pad": 1}, []),
    "max_pool": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, []),
    "avg_pool_ceil": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, []),
    "global_average_pool": ("GlobalAveragePool", {}, []),
    "lp_pool": ("LpPool", {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "p": 3}, []),
    "lp_pool_same_stride2": ("LpPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, []),
    "instance_norm": ("InstanceNormalization", {}, [("s", rand(4)), ("b", rand(4, seed=1))]),
    "lrn": ("LRN", {"size": 3}, []),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_image_op_over_open_batch_height_width(case):
    op, attrs, inits = CASES[case]
    check(one_node(op, attrs, inits), IMAGES, bounds=BOUNDS)


def test_group_norm_and_resize_by_whole_factors():
    check(one_node("GroupNormalization", {"num_groups": 2}, [("s", rand(4)), ("b", rand(4, seed=1))], opset=21),
          IMAGES, bounds=BOUNDS)
    for coord, nearest in [("half_pixel", "round_prefer_floor"), ("asymmetric", "floor")]:
        m = one_node("Resize", {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest},
                     [("roi", np.zeros(0, np.float32)), ("scales", np.array([1, 1, 3, 2], np.float32))], opset=13)
        check(m, IMAGES[:2], bounds=BOUNDS)


def test_same_padded_strided_branches_meet_over_open_sizes():
    # a TF-style downsampling block: a 3x3 and a 1x1 convolution, stride 2, SAME padding, added
    # (their output sizes must be the same expression); odd and even sizes pad differently
    nodes = [helper.make_node("Conv", ["x", "w3"], ["a"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Conv", ["x", "w1"], ["b"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TP.FLOAT, NCHW)],
                          [helper.make_tensor_value_info("y", TP.FLOAT, None)],
                          initializer=[numpy_helper.from_array(rand(8, 4, 3, 3), "w3"),
                                       numpy_helper.from_array(rand(8, 4, 1, 1, seed=1), "w1")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    check(m, IMAGES + feeds((1, 4, 1, 2)), bounds=BOUNDS)
    check(one_node("Conv", {"auto_pad": "SAME_UPPER", "strides": [2]}, [("w", rand(3, 4, 4))], dims=["N", 4, "T"]),
          feeds((1, 4, 9), (2, 4, 16), (1, 4, 1)), bounds={"N": 2, "T": 32})


def _split(attrs, dims, n_out, inits=(), opset=18):
    m = one_node("Split", attrs, inits, dims=dims, opset=opset, n_out=n_out)
    for o in m.graph.output:
        o.type.tensor_type.elem_type = TP.FLOAT
    return m


def test_split_along_an_open_axis():
    import ember

    # equal parts of an axis that is a multiple of the parts; num_outputs with ONNX's smaller
    # last part (its size checked at run time); sizes from Shape arithmetic
    check(_split({"axis": 1}, ["B", "S", 3], 2), feeds((1, 4, 3), (2, 10, 3), (1, 0, 3)))
    m = _split({"axis": 1, "num_outputs": 3}, ["B", "S", 2], 3)
    check(m, feeds((1, 7, 2), (2, 9, 2), (1, 4, 2), (3, 3, 2)))
    with pytest.raises(InputError, match="needs a last part of at least 0 elements"):
        ember.compile(m, cflags=("-O1",)).run({"x": rand(1, 1, 2)})
    even = _split({"axis": 0}, ["S", 3], 2)
    check(even, feeds((4, 3), (2, 3), (10, 3)))
    # an odd size is refused before anything runs, by the graph's checks (Module, the C shape
    # function and the reference interpreter alike)
    mod = ember.compile(even, cflags=("-O1",))
    for run in (lambda x: run_graph(from_onnx(even), {"x": x}), lambda x: mod.run({"x": x}),
                lambda x: mod.output_shapes([x.shape])):
        with pytest.raises(InputError, match=r"Split node 'Split_0' needs the size S of axis 0 divisible by 2 "
                                             r"\(equal parts\) \(S%2 == 0 fails: it is 1\)"):
            run(rand(5, 3))
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "one"], ["s"]),
             helper.make_node("Div", ["s", "three"], ["third"]),
             helper.make_node("Sub", ["s", "third"], ["rest"]),
             helper.make_node("Concat", ["third", "rest"], ["sizes"], axis=0),
             helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1)]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TP.FLOAT, ["B", "S", 2])],
                          [helper.make_tensor_value_info(o, TP.FLOAT, None) for o in "ab"],
                          initializer=[numpy_helper.from_array(np.array([1]), "one"),
                                       numpy_helper.from_array(np.array([3]), "three")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    check(m, feeds((1, 7, 2), (2, 1, 2), (1, 12, 2)))


def test_max_pool_indices_over_an_open_batch():
    m = one_node("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, dims=["N", 4, 9, 7],
                 n_out=2)
    m.graph.output[1].type.tensor_type.elem_type = TP.INT64
    check(m, feeds((1, 4, 9, 7), (3, 4, 9, 7)))


def test_center_crop_pad_over_open_sizes():
    # the run decides whether each axis is cropped or padded
    check(one_node("CenterCropPad", {"axes": [1, 2]}, [("s", np.array([5, 6], np.int64))], dims=["N", "H", "W"], opset=18),
          feeds((1, 3, 9), (2, 5, 6), (1, 8, 1), (1, 1, 7)))


def test_conv_1d_and_3d_over_open_lengths():
    check(one_node("Conv", {"pads": [1, 1]}, [("w", rand(3, 4, 3))], dims=["N", 4, "T"]),
          feeds((1, 4, 9), (2, 4, 17)), bounds={"N": 2, "T": 32})
    check(one_node("Conv", {"pads": [1] * 6}, [("w", rand(3, 4, 3, 3, 3))], dims=["N", 4, "D", "H", "W"]),
          feeds((1, 4, 4, 5, 6), (2, 4, 3, 3, 7)), bounds={"N": 2, "D": 8, "H": 8, "W": 8})


def test_split_tile_one_hot_and_dropout_mask_over_open_dims():
    split = one_node("Split", {"axis": 2, "num_outputs": 3}, dims=["B", "S", 12], opset=18, n_out=3)
    for o in split.graph.output:
        o.type.tensor_type.elem_type = TP.FLOAT
    check(split, feeds((1, 5, 12), (2, 3, 12)))
    check(one_node("Tile", {}, [("r", np.array([2, 1, 3], np.int64))], dims=["B", "S", 2]), feeds((1, 5, 2), (3, 2, 2)))
    check(one_node("Dropout", {}, dims=["B", "S"], opset=13, n_out=2), feeds((1, 5), (3, 2)))


def _scales(*s):
    return [("roi", np.zeros(0, np.float32)), ("scales", np.array(s, np.float32))]


# odd sizes, sizes of 1 and 2 (a scaled length_resized <= 1 takes the spec's constant coordinate)
RESIZE_IMAGES = feeds((1, 4, 1, 3), (2, 4, 7, 5), (1, 4, 2, 9))
RESIZE_CASES = [
    ("linear", "half_pixel", {}, (1, 1, 1.5, 0.6)),
    ("cubic", "half_pixel", {}, (1, 1, 2, 2)),
    ("cubic", "asymmetric", {"cubic_coeff_a": -0.5, "exclude_outside": 1}, (1, 1, 1.25, 0.8)),
    ("linear", "align_corners", {}, (1, 1, 2, 3)),
    ("linear", "pytorch_half_pixel", {"antialias": 1}, (1, 1, 0.5, 1.5)),
    ("cubic", "half_pixel", {"antialias": 1}, (1, 1, 0.6, 0.75)),
    ("nearest", "asymmetric", {"nearest_mode": "floor"}, (1, 1, 1.5, 0.75)),
    ("nearest", "half_pixel", {"nearest_mode": "round_prefer_ceil"}, (1, 1, 3, 0.5)),
]


@pytest.mark.parametrize("mode, coord, extra, scales", RESIZE_CASES)
def test_resize_by_any_scale_over_open_height_width(mode, coord, extra, scales):
    # one artifact: the coordinates, taps and weights are computed from the run's sizes
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, **extra}
    check(one_node("Resize", attrs, _scales(*scales), opset=19), RESIZE_IMAGES, bounds=BOUNDS)


def test_resize_to_the_size_of_another_tensor():
    # a decoder upsampling to its skip connection's size (sizes out of Shape -> Slice -> Concat),
    # linearly, and Upsample-9 by a fractional scale
    nodes = [helper.make_node("Shape", ["skip"], ["ss"]),
             helper.make_node("Slice", ["ss", "two", "four"], ["hw"]),
             helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Slice", ["xs", "zero", "two"], ["nc"]),
             helper.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0),
             helper.make_node("Resize", ["x", "", "", "sizes"], ["up"], mode="linear"),
             helper.make_node("Add", ["up", "skip"], ["y"])]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TP.FLOAT, NCHW),
                                         helper.make_tensor_value_info("skip", TP.FLOAT, ["N", 4, "H2", "W2"])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array([k]), n)
                                       for n, k in (("zero", 0), ("two", 2), ("four", 4))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    check(m, [{"x": rand(1, 4, 3, 5), "skip": rand(1, 4, 6, 10)}, {"x": rand(2, 4, 5, 1), "skip": rand(2, 4, 9, 4)},
              {"x": rand(1, 4, 7, 7), "skip": rand(1, 4, 1, 3)}])
    check(one_node("Upsample", {"mode": "linear"}, [("scales", np.array([1, 1, 1.5, 2.5], np.float32))], opset=9),
          RESIZE_IMAGES, bounds=BOUNDS)


@pytest.mark.parametrize("op, attrs, inits, opset, message", [
    ("Conv", {"auto_pad": "SAME_UPPER", "strides": [3, 3]}, [("w", rand(8, 4, 2, 2))], 17, "depends on H % 3"),
])
def test_what_needs_static_sizes_is_an_error_naming_the_dim(op, attrs, inits, opset, message):
    with pytest.raises(FrontendError, match=message):
        from_onnx(one_node(op, attrs, inits, opset=opset, n_out=attrs.get("num_outputs", 1)))


def test_register_tile_tails_of_every_size(tmp_path):
    """A blocked convolution over an open width: its register tile's tail gets one unrolled copy
    per possible size (``te.lower.MAX_TAIL_CASES``); every width from 1 to 17 is right."""
    import ember

    m = one_node("Conv", {"pads": [1, 1, 1, 1]}, [("w", rand(32, 4, 3, 3)), ("b", rand(32))], dims=[1, 4, 3, "W"])
    check(m, feeds(*[(1, 4, 3, w) for w in range(1, 18)]), bounds={"W": 16})
    ember.compile(m, bounds={"W": 16}, dump=tmp_path, cflags=("-O1",))
    conv = next(p for p in tmp_path.glob("*kernel*Conv*tir.txt") if "conv2d_nchwc" in p.read_text())
    text = conv.read_text()
    rows = int(text.split("split(i3, ")[1].split(")")[0])
    assert 1 < rows <= 9
    tails = [f"((W mod {rows}) eq {r})" for r in range(1, rows)]
    assert all(t in text for t in tails), text[:2000]

"""ONNX op translations against onnxruntime, one op family at a time."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import ember
from ember import from_onnx

from onnx_harness import (assert_same, check, check_model, make_model, rand, run_ember, run_onnx_reference,
                          run_onnxruntime)

f32 = "float32"


# ---- elementwise --------------------------------------------------------------------------

UNARY = ["Neg", "Abs", "Exp", "Tanh", "Sigmoid", "Relu", "Erf", "Floor", "Ceil", "Sign", "Sin", "Cos", "Tan",
         "Atan", "Sinh", "Cosh", "Asinh", "Softsign", "Softplus", "Elu", "Selu", "Celu", "HardSigmoid",
         "HardSwish", "LeakyRelu", "ThresholdedRelu", "Shrink", "Mish"]


@pytest.mark.parametrize("op", UNARY)
def test_unary(op):
    check(op, [rand(2, 3, 4, lo=-4, hi=4)], opset=18, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["Log", "Sqrt", "Reciprocal"])
def test_unary_positive(op):
    check(op, [rand(3, 5, lo=0.1, hi=5)])


@pytest.mark.parametrize("op", ["Asin", "Acos", "Atanh"])
def test_unary_unit_interval(op):
    check(op, [rand(3, 5, lo=-0.9, hi=0.9)])


def test_acosh():
    check("Acosh", [rand(3, 5, lo=1.1, hi=4)])


def test_round_half_to_even():
    check("Round", [np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], dtype=f32)])


def test_activation_attributes():
    x = rand(4, 5, lo=-3, hi=3)
    check("LeakyRelu", [x], {"alpha": 0.3})
    check("Elu", [x], {"alpha": 0.5})
    check("Selu", [x], {"alpha": 1.5, "gamma": 2.0})
    check("HardSigmoid", [x], {"alpha": 0.3, "beta": 0.4})
    check("ThresholdedRelu", [x], {"alpha": 0.7})
    check("Shrink", [x], {"lambd": 1.0, "bias": 0.25})
    check("Celu", [x], {"alpha": 2.0})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    check("Gelu", [rand(2, 8, lo=-4, hi=4)], {"approximate": approximate}, opset=20, atol=1e-5)


def test_prelu_broadcasts_slope():
    check("PRelu", [rand(2, 3, 4, 4), rand(3, 1, 1)])
    check("PRelu", [rand(2, 3, 4), rand(4)], const=[1])


@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)),
                                    ((1,), (2, 3)), ((), (2, 2)), ((5, 1, 1), (1, 4, 3))])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_broadcasting(op, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1], lo=0.5, hi=3)
    check(op, [a, b])


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_division_truncates(dtype):
    a = np.array([7, -7, 7, -7, 0, 9, -9], dtype=dtype)
    b = np.array([2, 2, -2, -2, 3, 4, 4], dtype=dtype)
    check("Div", [a, b])


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_integer(fmod):
    a = np.array([7, -7, 7, -7, 0, 9, -9, 5], dtype="int64")
    b = np.array([3, 3, -3, -3, 3, 4, 4, -5], dtype="int64")
    check("Mod", [a, b], {"fmod": fmod})


def test_mod_float():
    check("Mod", [rand(3, 4, lo=-5, hi=5), rand(3, 4, lo=0.5, hi=2)], {"fmod": 1})


def test_pow_mixed_types():
    check("Pow", [rand(3, 4, lo=0.5, hi=2), np.array(3, dtype="int64")])
    check("Pow", [rand(3, 4, lo=0.5, hi=2), rand(4, lo=-1, hi=2)])
    check("Pow", [np.array([1, 2, 3, 4], dtype="int64"), np.array([2, 3, 0, 1], dtype="int64")])


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
def test_comparisons(op):
    a = rand(3, 4, dtype="int64", lo=-3, hi=3)
    check(op, [a, rand(4, dtype="int64", lo=-3, hi=3)])
    check(op, [rand(2, 3), rand(2, 1)])


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logical(op):
    check(op, [rand(3, 4, dtype="bool"), rand(4, dtype="bool")])


def test_not_isnan_isinf():
    check("Not", [rand(3, 4, dtype="bool")])
    x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.0], dtype=f32)
    check("IsNaN", [x])
    check("IsInf", [x])
    check("IsInf", [x], {"detect_negative": 0})
    check("IsInf", [x], {"detect_positive": 0})


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
def test_variadic(op):
    check(op, [rand(2, 3, 4), rand(3, 1), rand(4)])
    check(op, [rand(2, 3)])


def test_clip_opset6_attributes_and_opset13_inputs():
    x = rand(3, 4, lo=-3, hi=3)
    check("Clip", [x], {"min": -1.0, "max": 0.5}, opset=6)
    check("Clip", [x], {"max": 0.5}, opset=6)
    check("Clip", [x, np.array(-1.0, f32), np.array(0.5, f32)], opset=13, const=[1, 2])
    check("Clip", [x, None, np.array(0.5, f32)], opset=13, const=[2])
    check("Clip", [x, np.array(-1.0, f32)], opset=13, const=[1])
    check("Clip", [x, np.array(-1.0, f32), np.array(0.5, f32)], opset=13)  # bounds as graph inputs
    check("Clip", [rand(3, 4, dtype="int32", lo=-10, hi=10), np.array(-3, "int32"), np.array(4, "int32")],
          opset=13, const=[1, 2])


def test_where_broadcasts():
    check("Where", [rand(3, 1, dtype="bool"), rand(1, 4), rand(3, 4)])


@pytest.mark.parametrize("to,src", [(1, "int64"), (7, "float32"), (9, "float32"), (6, "float64"), (10, "float32"),
                                    (2, "int32"), (11, "int64")])
def test_cast(to, src):
    x = rand(3, 4, dtype=src, lo=-5, hi=5) if src.startswith("int") else np.array(
        [[0.0, -1.7, 2.5, 3.9], [-0.2, 1.0, 7.9, 100.0], [0.5, -0.5, 1.5, 9.0]], dtype=src)
    if to == 2:
        x = np.abs(x)
    check("Cast", [x], {"to": to})


def test_castlike():
    check("CastLike", [rand(3, 4), np.zeros(1, dtype="int32")], const=[1])


# ---- reductions ---------------------------------------------------------------------------

REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"]


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), (None, 1), (None, 0)])
def test_reduce_attribute_form(op, axes, keepdims):
    x = rand(3, 4, 5, lo=0.2, hi=1.5)
    attrs = {"keepdims": keepdims}
    if axes is not None:
        attrs["axes"] = axes
    check(op, [x], attrs, opset=13 if op != "ReduceSum" else 11, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", REDUCE)
def test_reduce_input_form(op):
    x = rand(3, 4, 5, lo=0.2, hi=1.5)
    check(op, [x, np.array([0, -1], dtype="int64")], {"keepdims": 0}, opset=18, const=[1], atol=1e-5)
    check(op, [x], {"keepdims": 1}, opset=18, atol=1e-5)  # no axes: all of them


def test_reduce_noop_with_empty_axes():
    x = rand(3, 4)
    check("ReduceSum", [x, np.zeros(0, dtype="int64")], {"noop_with_empty_axes": 1}, opset=13, const=[1])
    check("ReduceMax", [x], {"noop_with_empty_axes": 1}, opset=18)


def test_reduce_integer_mean():
    check("ReduceMean", [rand(4, 6, dtype="int32", lo=-20, hi=20)], {"axes": [1]}, opset=13)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_arg_reductions(op):
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 1], [0, 5, 5, 5]], dtype=f32)
    check(op, [x])
    check(op, [x], {"axis": -1, "keepdims": 0})
    check(op, [x], {"axis": 1, "select_last_index": 1})


def test_cumsum():
    x = rand(3, 5)
    for attrs in ({}, {"exclusive": 1}, {"reverse": 1}, {"exclusive": 1, "reverse": 1}):
        check("CumSum", [x, np.array(1, dtype="int64")], attrs, const=[1])
    check("CumSum", [rand(4, 3, dtype="int32", lo=-5, hi=5), np.array(-2, dtype="int64")], const=[1])


# ---- neural-network ops ---------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    {},
    {"pads": [1, 1, 1, 1]},
    {"pads": [0, 2, 1, 0], "strides": [2, 1]},
    {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"strides": [3, 2], "auto_pad": "VALID"},
])
def test_conv2d(attrs):
    check("Conv", [rand(2, 4, 9, 8), rand(6, 4, 3, 3), rand(6)], attrs, const=[1, 2], rtol=1e-4, atol=1e-5)


def test_conv2d_groups_and_even_kernel():
    check("Conv", [rand(1, 6, 8, 8), rand(6, 2, 2, 2)], {"group": 3, "auto_pad": "SAME_LOWER"}, const=[1],
          rtol=1e-4, atol=1e-5)
    check("Conv", [rand(1, 4, 7, 7), rand(4, 1, 3, 3), rand(4)], {"group": 4, "pads": [1, 1, 1, 1],
                                                                  "kernel_shape": [3, 3]}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [{}, {"pads": [2, 1], "strides": [2]}, {"auto_pad": "SAME_UPPER", "strides": [3]},
                                   {"dilations": [2], "group": 2}])
def test_conv1d(attrs):
    check("Conv", [rand(2, 4, 11), rand(6, 4 // attrs.get("group", 1), 3), rand(6)], attrs, const=[1, 2],
          rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    {},
    {"strides": [2, 2]},
    {"strides": [2, 3], "pads": [1, 0, 1, 2], "output_padding": [1, 0]},
    {"strides": [2, 2], "dilations": [2, 1]},
    {"strides": [2, 2], "output_shape": [10, 9]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"group": 2, "strides": [2, 2]},
])
def test_conv_transpose(attrs):
    g = attrs.get("group", 1)
    check("ConvTranspose", [rand(2, 4, 5, 4), rand(4, 6 // g, 3, 3), rand(6)], attrs, const=[1, 2],
          rtol=1e-4, atol=1e-5)


def test_conv_transpose_1d():
    check("ConvTranspose", [rand(1, 3, 6), rand(3, 2, 4)], {"strides": [2], "pads": [1, 1]}, const=[1],
          rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    {},
    {"pads": [1, 0, 2, 1, 1, 0]},
    {"strides": [2, 1, 2], "dilations": [2, 1, 1]},
    {"strides": [2, 2, 1], "auto_pad": "SAME_UPPER"},
    {"group": 2, "dilations": [1, 2, 1], "pads": [0, 2, 1, 0, 2, 1]},
    {"strides": [3, 3, 3], "pads": [2, 0, 0, 0, 0, 0]},       # depth taps reading only padding
])
def test_conv3d(attrs):
    g = attrs.get("group", 1)
    r = _own_rand(3)
    check("Conv", [r(2, 4, 6, 7, 5), r(6, 4 // g, 3, 2, 3), r(6)], attrs, const=[1, 2], rtol=1e-4, atol=1e-5)


def _own_rand(seed):
    """Random float32 arrays from a generator of the test's own, so that adding such tests leaves
    the data of the tests that draw from the module's generator after them unchanged."""
    rng = np.random.default_rng(seed)
    return lambda *shape: rng.uniform(-2.0, 2.0, size=shape).astype(f32)


def test_conv3d_weight_as_input_and_unit_depth_kernel():
    r = _own_rand(4)
    check("Conv", [r(1, 3, 4, 5, 5), r(2, 3, 1, 3, 3)], {"pads": [0, 1, 1, 0, 1, 1]}, rtol=1e-4, atol=1e-5)
    check("Conv", [r(1, 2, 5, 4, 4), r(4, 2, 5, 1, 1)], {}, rtol=1e-4, atol=1e-5)


def test_conv3d_kernel_deeper_than_input_is_an_error():
    from ember.errors import EmberError

    r = _own_rand(5)
    with pytest.raises(EmberError, match="Conv"):
        check("Conv", [r(1, 2, 2, 4, 4), r(2, 2, 3, 1, 1)], {}, const=[1])


@pytest.mark.parametrize("attrs", [
    {},
    {"strides": [2, 1, 2], "pads": [1, 0, 0, 1, 1, 1], "output_padding": [1, 0, 1]},
    {"strides": [1, 2, 2], "dilations": [2, 1, 1], "group": 2},
    {"strides": [2, 2, 2], "output_shape": [8, 5, 6]},
])
def test_conv_transpose_3d(attrs):
    g = attrs.get("group", 1)
    r = _own_rand(6)
    check("ConvTranspose", [r(2, 4, 4, 3, 3), r(4, 6 // g, 3, 2, 3), r(6)], attrs, const=[1, 2],
          rtol=1e-4, atol=1e-5)


POOL_ATTRS = [
    {"kernel_shape": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
    {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [1, 2]},
]


@pytest.mark.parametrize("attrs", POOL_ATTRS)
def test_max_pool(attrs):
    check("MaxPool", [rand(2, 3, 9, 10)], attrs)


@pytest.mark.parametrize("attrs", POOL_ATTRS)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(attrs, count_include_pad):
    check("AveragePool", [rand(2, 3, 9, 10)], {**attrs, "count_include_pad": count_include_pad}, opset=19)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0], [1, 0, 2, 1]])
def test_pool_window_past_the_input_is_clipped(op, pads):
    # EfficientNet's exported head: a 1280x1280 window in ceil mode over a 7x7 map (one output);
    # the graph reads only the padded input (7 + pads), with the same results as onnxruntime
    attrs = {"kernel_shape": [1280, 1280], "strides": [1280, 1280], "ceil_mode": 1, "pads": pads}
    if op == "AveragePool":
        attrs["count_include_pad"] = 1
    model = check(op, [rand(1, 4, 7, 6)], attrs, opset=19 if op != "LpPool" else 18, atol=1e-5)
    pools = [n for n in from_onnx(model).nodes if n.op.endswith("pool2d")]
    assert [tuple(n.attrs["kernel"]) for n in pools] == [(7 + pads[0] + pads[2], 6 + pads[1] + pads[3])]


def test_pool_1d_and_int():
    check("MaxPool", [rand(2, 3, 11)], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]})
    check("AveragePool", [rand(2, 3, 11)], {"kernel_shape": [4], "strides": [3], "ceil_mode": 1})
    check("MaxPool", [rand(1, 2, 6, 6, dtype="int8", lo=-100, hi=100)], {"kernel_shape": [2, 2]}, opset=12)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pool(op):
    check(op, [rand(2, 3, 5, 6)], atol=1e-5)
    check(op, [rand(2, 3, 7)], atol=1e-5)


def test_lp_pool():
    check("LpPool", [rand(1, 2, 7, 7)], {"kernel_shape": [3, 3], "p": 2, "pads": [1, 1, 1, 1], "strides": [2, 2]},
          opset=18, atol=1e-5)
    check("LpPool", [rand(1, 2, 7, 7)], {"kernel_shape": [2, 2], "p": 3}, opset=18, atol=1e-5)


def test_batch_norm():
    c = 5
    check("BatchNormalization", [rand(2, c, 4, 3), rand(c), rand(c), rand(c), rand(c, lo=0.5, hi=2)],
          {"epsilon": 1e-3}, const=[1, 2, 3, 4])
    check("BatchNormalization", [rand(4, c), rand(c), rand(c), rand(c), rand(c, lo=0.5, hi=2)], const=[1, 2, 3, 4])


@pytest.mark.parametrize("axis", [-1, -2, 1])
def test_layer_norm(axis):
    x = rand(2, 3, 4, 5)
    norm_shape = x.shape[axis:]
    check("LayerNormalization", [x, rand(*norm_shape), rand(*norm_shape)], {"axis": axis}, const=[1, 2],
          atol=1e-5)
    check("LayerNormalization", [x, rand(*norm_shape)], {"axis": axis, "epsilon": 1e-3}, const=[1], atol=1e-5)


def test_layer_norm_with_mean_and_inv_std_outputs():
    x = rand(2, 3, 8)
    check("LayerNormalization", [x, rand(8), rand(8)], {"axis": -1}, const=[1, 2], n_out=3, atol=1e-5)


def test_instance_and_group_norm():
    check("InstanceNormalization", [rand(2, 3, 4, 5), rand(3), rand(3)], {"epsilon": 1e-4}, const=[1, 2], atol=1e-5)
    check("GroupNormalization", [rand(2, 6, 4, 3), rand(6), rand(6)], {"num_groups": 3}, opset=21, const=[1, 2],
          atol=1e-5)


def test_normalizations_misc():
    x = rand(2, 6, 5, 4)
    check("LRN", [x], {"size": 3, "alpha": 1e-2, "beta": 0.6, "bias": 2.0}, atol=1e-5)
    check("LRN", [x], {"size": 5}, atol=1e-5)
    check("LpNormalization", [x], {"axis": 1, "p": 1}, atol=1e-6)
    check("LpNormalization", [x], {"axis": -1, "p": 2}, atol=1e-6)
    check("MeanVarianceNormalization", [x], atol=1e-5)
    check("RMSNormalization", [x, rand(5, 4)], {"axis": 2}, opset=23, const=[1], atol=1e-5)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset,axis", [(11, None), (11, 1), (11, -1), (11, 0), (13, None), (13, 1), (13, -3)])
def test_softmax_family(op, opset, axis):
    x = rand(2, 3, 4, lo=-3, hi=3)
    if op == "Hardmax":
        x[0, 1, :2] = 5.0  # ties pick the first
    check(op, [x], {} if axis is None else {"axis": axis}, opset=opset, atol=1e-6)


@pytest.mark.parametrize("attrs", [{}, {"transA": 1}, {"transB": 1}, {"transA": 1, "transB": 1, "alpha": 0.5,
                                                                      "beta": 2.0}])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5), (3, 1)])
def test_gemm(attrs, c_shape):
    a = rand(4, 3) if attrs.get("transA") else rand(3, 4)
    b = rand(5, 4) if attrs.get("transB") else rand(4, 5)
    ins = [a, b] + ([] if c_shape is None else [rand(*c_shape)])
    check("Gemm", ins, attrs, const=[1, 2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((5,), (2, 5, 3)),
                                   ((2, 3, 5), (5,))])
def test_matmul(sa, sb):
    check("MatMul", [rand(*sa), rand(*sb)], atol=1e-5)


def test_matmul_integer():
    check("MatMul", [rand(3, 4, dtype="int32", lo=-5, hi=5), rand(4, 2, dtype="int32", lo=-5, hi=5)])


@pytest.mark.parametrize("eq,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("i,i", [(5,), (5,)]),
    ("ij,kj", [(3, 4), (2, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (2, 5, 4, 2)]),
    ("...ij,jk", [(2, 3, 4), (4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("abc,cd,de->ae", [(2, 3, 4), (4, 5), (5, 2)]),
    ("ij->", [(3, 4)]),
])
def test_einsum(eq, shapes):
    check("Einsum", [rand(*s) for s in shapes], {"equation": eq}, opset=12, atol=1e-5)


# ---- tensor manipulation ------------------------------------------------------------------

@pytest.mark.parametrize("shape,allowzero", [([4, -1], 0), ([0, 0, -1], 0), ([-1], 0), ([0, 3, 2, 2], 0),
                                             ([1, 24, 1], 1)])
def test_reshape(shape, allowzero):
    check("Reshape", [rand(2, 3, 4), np.array(shape, dtype="int64")], {"allowzero": allowzero}, opset=14,
          const=[1])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, 3])
def test_flatten(axis):
    check("Flatten", [rand(2, 3, 4)], {"axis": axis})


def test_squeeze_unsqueeze_opset11_and_13():
    x = rand(1, 3, 1, 4)
    check("Squeeze", [x], {"axes": [0, -2]}, opset=11)
    check("Squeeze", [x], opset=11)
    check("Squeeze", [x, np.array([2], "int64")], opset=13, const=[1])
    check("Squeeze", [x], opset=13)
    y = rand(3, 4)
    check("Unsqueeze", [y], {"axes": [0, 3]}, opset=11)
    check("Unsqueeze", [y, np.array([-1, 1], "int64")], opset=13, const=[1])


def test_transpose():
    x = rand(2, 3, 4)
    check("Transpose", [x])
    check("Transpose", [x], {"perm": [1, 2, 0]})


def test_concat_and_split():
    check("Concat", [rand(2, 3), rand(2, 1), rand(2, 4)], {"axis": -1})
    check("Concat", [rand(2, 3), rand(0, 3)], {"axis": 0})
    x = rand(6, 5)
    check("Split", [x], {"axis": 0}, opset=11, n_out=3)
    check("Split", [x], {"axis": 1, "split": [2, 3]}, opset=11, n_out=2)
    check("Split", [x, np.array([1, 0, 4], "int64")], {"axis": -1}, opset=13, const=[1], n_out=3)
    check("Split", [x], {"axis": 1, "num_outputs": 3}, opset=18, n_out=3)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [3], [0], None),
    ([0, 1], [-1, 1000], None, None),
    ([-1], [-1000], [1], [-1]),
    ([10, -2], [0, -5], [0, 2], [-2, -1]),
    ([-100], [100], [-1], [3]),
    ([2], [2], [1], None),
    ([4], [0], [2], [-1]),
])
def test_slice(starts, ends, axes, steps):
    ins = [rand(5, 6, 7), np.array(starts, "int64"), np.array(ends, "int64")]
    const = [1, 2]
    if axes is not None or steps is not None:
        ins.append(np.array(axes if axes is not None else list(range(len(starts))), "int64"))
        const.append(3)
    if steps is not None:
        ins.append(np.array(steps, "int64"))
        const.append(4)
    check("Slice", ins, const=const)


def test_slice_opset9_attributes():
    check("Slice", [rand(5, 6)], {"starts": [1, -3], "ends": [100, -1], "axes": [0, 1]}, opset=9)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    x = rand(2, 5, 6)
    pads = np.array([0, 1, 2, 0, 2, 1], "int64")
    check("Pad", [x, pads], {"mode": mode}, opset=13, const=[1])
    if mode == "constant":
        check("Pad", [x, pads, np.array(1.5, f32)], opset=13, const=[1, 2])
        check("Pad", [x, np.array([0, -1, 1, 0, 2, -2], "int64")], opset=13, const=[1])
    check("Pad", [x, np.array([1, 2, 1, 0], "int64"), None, np.array([-1, 1], "int64")], {"mode": mode},
          opset=18, const=[1, 3])
    check("Pad", [x], {"mode": mode, "pads": [0, 1, 2, 0, 2, 1]}, opset=2)


def test_pad_value_through_dequantize_linear():
    # QDQ models give Pad's constant value as DequantizeLinear of a quantized constant, which the
    # frontend keeps as a node for the QDQ passes; an operand needed at compile time is computed
    nodes = [helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x"]),
             helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cv"]),
             helper.make_node("Pad", ["x", "pads", "cv"], ["y"], mode="constant")]
    inits = {"s": np.array(0.1, f32), "z": np.array(3, np.uint8), "cq": np.array(7, np.uint8),
             "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    feeds = {"xq": np.random.default_rng(0).integers(0, 255, (1, 2, 3, 3)).astype(np.uint8)}
    model = make_model(nodes, feeds, ["y"], inits, 17)
    check_model(model, feeds)
    (y,) = ember.compile(model).run(feeds).values()
    assert_same([y], run_onnxruntime(model, feeds))
    assert y[0, 0, 0, 0] == np.float32(0.4)


def test_pad_wrap():
    check("Pad", [rand(3, 4), np.array([1, 2, 2, 1], "int64")], {"mode": "wrap"}, opset=19, const=[1])


def test_expand_and_tile():
    check("Expand", [rand(3, 1), np.array([2, 1, 4], "int64")], const=[1])
    check("Expand", [rand(1, 3, 1), np.array([3, 1, 1, 5], "int64")], const=[1])
    check("Tile", [rand(2, 3), np.array([2, 3], "int64")], const=[1])
    check("Tile", [rand(2, 1, 3, dtype="int32", hi=10), np.array([1, 4, 2], "int64")], const=[1])


def test_gather():
    x = rand(5, 4, 3)
    check("Gather", [x, np.array([[0, -1], [2, 4]], "int64")], {"axis": 0}, const=[1])
    check("Gather", [x, np.array(-2, "int64")], {"axis": 1}, const=[1])
    check("Gather", [x, np.array([2, 0, 1], "int32")], {"axis": -1})  # run-time indices


def test_gather_elements_and_nd():
    x = rand(3, 4, 5)
    idx = np.array(RNG_ints((3, 2, 5), -4, 4), "int64")
    check("GatherElements", [x, idx], {"axis": 1}, const=[1])
    check("GatherElements", [x, idx], {"axis": 1})  # run-time indices
    check("GatherND", [x, np.array([[0, 1], [2, -1]], "int64")])
    check("GatherND", [x, np.array([[[1], [0]], [[2], [3]], [[0], [0]]], "int64")], {"batch_dims": 1})


def RNG_ints(shape, lo, hi):
    return np.random.default_rng(1).integers(lo, hi, size=shape)


def test_scatter():
    x = rand(4, 5)
    check("ScatterElements", [x, np.array([[1, 0, 3], [2, 2, 0]], "int64"), rand(2, 3)], {"axis": 1}, const=[1])
    check("ScatterElements", [x, np.array([[1, 1], [3, -1]], "int64"), rand(2, 2)], {"axis": 0,
                                                                                     "reduction": "add"},
          opset=16, const=[1])
    check("ScatterND", [x, np.array([[2], [0]], "int64"), rand(2, 5)], const=[1])
    check("ScatterND", [x, np.array([[1, 2], [3, 4], [1, 2]], "int64"), rand(3)], {"reduction": "max"},
          opset=18, const=[1])


def test_one_hot_trilu_depth_space():
    idx = np.array([[0, 3, -1], [2, 1, 4]], "int64")
    check("OneHot", [idx, np.array(5, "int64"), np.array([0.0, 2.0], f32)], {"axis": 1}, const=[1, 2])
    x = rand(2, 4, 5)
    check("Trilu", [x], {"upper": 1}, opset=14)
    check("Trilu", [x, np.array(-1, "int64")], {"upper": 0}, opset=14, const=[1])
    y = rand(1, 8, 2, 3)
    check("DepthToSpace", [y], {"blocksize": 2})
    check("DepthToSpace", [y], {"blocksize": 2, "mode": "CRD"})
    check("SpaceToDepth", [rand(1, 2, 4, 6)], {"blocksize": 2})


def test_constants_and_shapes():
    x = rand(2, 3, 4)
    check("Shape", [x])
    check("Shape", [x], {"start": 1}, opset=15)
    check("Shape", [x], {"start": -2, "end": -1}, opset=15)
    check("Size", [x])
    check("ConstantOfShape", [np.array([2, 3], "int64")], const=[0])
    check("ConstantOfShape", [np.array([2, 3], "int64")], {"value": helper.make_tensor("v", 7, [1], [5])}, const=[0])
    check("Range", [np.array(1, "int64"), np.array(10, "int64"), np.array(3, "int64")], const=[0, 1, 2])
    check("Range", [np.array(2.5, f32), np.array(-1.0, f32), np.array(-0.75, f32)], const=[0, 1, 2])
    check("EyeLike", [rand(3, 4)], {"k": 1})


def test_identity_dropout_and_constant_nodes():
    x = rand(3, 4)
    check("Identity", [x])
    check("Dropout", [x], opset=13)
    check("Dropout", [x, np.array(0.3, f32)], opset=13, const=[1], n_out=2)
    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("t", 1, [4], [1, 2, 3, 4])),
             helper.make_node("Constant", [], ["d"], value_float=2.0),
             helper.make_node("Constant", [], ["e"], value_ints=[4, 3]),
             helper.make_node("Add", ["x", "c"], ["y"]),
             helper.make_node("Mul", ["y", "d"], ["z"]),
             helper.make_node("Reshape", ["z", "e"], ["out"])]
    check_model(make_model(nodes, {"x": x}, ["out"]), {"x": x})


# ---- resize -------------------------------------------------------------------------------

@pytest.mark.parametrize("attrs", [
    {"mode": "nearest"},
    {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    {"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "round_prefer_ceil"},
    {"mode": "linear"},
    {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
    {"mode": "cubic"},
    {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 0.5, 0.75], [1, 1, 1.5, 3]])
def test_resize_scales(attrs, scales):
    x = rand(1, 2, 4, 6)
    # align_corners divides by length_resized - 1 with length_resized = scale * length_original, which
    # is fractional here (6 * 0.75): onnx's reference (and its backend tests) keep the fraction,
    # onnxruntime rounds it down first
    fractional = any(d * s != int(d * s) for d, s in zip(x.shape, scales))
    oracle = run_onnx_reference if fractional and "align_corners" in attrs.values() else run_onnxruntime
    check("Resize", [x, None, np.array(scales, f32)], attrs, opset=13, const=[2], atol=1e-5, oracle=oracle)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_align_corners_with_a_fractional_length(mode):
    # length_resized = scale * length_original (6 * 0.75 = 4.5 and 7 * 0.6 = 4.2 here), not the
    # integral output length; onnx's reference keeps the fraction, onnxruntime does not
    x = _own_rand(7)(1, 2, 6, 7)
    check("Resize", [x, None, np.array([1, 1, 0.75, 0.6], f32)],
          {"mode": mode, "coordinate_transformation_mode": "align_corners"}, opset=13, const=[2], atol=1e-5,
          oracle=run_onnx_reference)


def test_resize_sizes_and_crop():
    x = rand(1, 2, 5, 4)
    check("Resize", [x, None, None, np.array([1, 2, 7, 3], "int64")], {"mode": "linear"}, opset=13, const=[3],
          atol=1e-5)
    check("Resize", [x, np.array([0, 0, 0.2, 0, 1, 1, 0.9, 1], f32), None, np.array([1, 2, 4, 4], "int64")],
          {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, opset=13, const=[1, 3],
          atol=1e-5)


def test_resize_crop_extrapolates_like_the_onnx_reference():
    # onnxruntime 1.x ignores the roi of the last axis in this case; the ONNX reference follows the spec
    from onnx.reference import ReferenceEvaluator

    x = np.arange(20, dtype=f32).reshape(1, 1, 5, 4)
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode="linear",
                            coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-1.0)
    model = make_model([node], {"x": x}, ["y"], {"roi": np.array([0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2], f32),
                                                 "sizes": np.array([1, 1, 4, 4], "int64")}, opset=13)
    want = ReferenceEvaluator(model).run(None, {"x": x})
    assert_same(run_ember(model, {"x": x}), want, atol=1e-5)
    assert (want[0][..., -1] == -1).all()
    check("Resize", [x, np.zeros(0, f32), np.array([1, 1, 2, 2], f32)], {"mode": "nearest"}, opset=11,
          const=[1, 2])


def test_upsample_and_resize10():
    x = rand(1, 2, 3, 4)
    check("Upsample", [x, np.array([1, 1, 2, 3], f32)], {"mode": "nearest"}, opset=9, const=[1])
    check("Resize", [x, np.array([1, 1, 2, 2], f32)], {"mode": "linear"}, opset=10, const=[1], atol=1e-5)


# ---- TopK and quantization ------------------------------------------------------------------

@pytest.mark.parametrize("k,attrs", [(1, {}), (1, {"largest": 0, "axis": 0}), (3, {}), (2, {"axis": 0}),
                                     (4, {"largest": 0, "axis": -1}), (5, {"axis": 1})])
def test_topk(k, attrs):
    x = np.round(rand(4, 5, 3, lo=-3, hi=3) * 2) / 2  # ties
    if attrs.get("axis", -1) in (-1, 2) and k > 3:
        x = np.round(rand(4, 6, lo=-3, hi=3) * 2) / 2
    check("TopK", [x, np.array([k], "int64")], attrs, const=[1], n_out=2)


def test_topk_integers():
    check("TopK", [rand(3, 7, dtype="int64", lo=-4, hi=4), np.array([4], "int64")], const=[1], n_out=2)


@pytest.mark.parametrize("qtype", ["uint8", "int8"])
def test_quantize_dequantize(qtype):
    x = rand(2, 3, 4, lo=-4, hi=4)
    zp = np.array(3 if qtype == "uint8" else -2, qtype)
    check("QuantizeLinear", [x, np.array(0.05, f32), zp], const=[1, 2], opset=13)
    check("QuantizeLinear", [x, np.array([0.02, 0.05, 0.1], f32), np.array([0, 5, 9], qtype)], {"axis": 1},
          const=[1, 2], opset=13)
    q = rand(2, 3, 4, dtype=qtype, lo=-100 if qtype == "int8" else 0, hi=100)
    check("DequantizeLinear", [q, np.array(0.05, f32), zp], const=[1, 2], opset=13)
    check("DequantizeLinear", [q, np.array([0.1, 0.2, 0.3, 0.4], f32)], {"axis": -1}, const=[1], opset=13)
    check("DequantizeLinear", [q, rand(2, 3, 2, lo=0.01, hi=0.2)], {"axis": 2, "block_size": 2}, const=[1],
          opset=21)


def test_dynamic_quantize_and_integer_products():
    check("DynamicQuantizeLinear", [rand(3, 4, lo=-2, hi=5)], n_out=3)
    a = rand(3, 4, dtype="uint8", lo=0, hi=255)
    b = rand(4, 5, dtype="int8", lo=-128, hi=127)
    check("MatMulInteger", [a, b, np.array(12, "uint8"), np.array(-3, "int8")], const=[1, 2, 3])
    check("MatMulInteger", [a, rand(4, 5, dtype="uint8", lo=0, hi=255)])
    x = rand(1, 2, 5, 5, dtype="uint8", lo=0, hi=255)
    w = rand(3, 2, 3, 3, dtype="uint8", lo=0, hi=255)
    check("ConvInteger", [x, w, np.array(7, "uint8")], {"pads": [1, 1, 1, 1]}, const=[1, 2])


def test_qlinear_ops():
    a = rand(3, 4, dtype="uint8", lo=0, hi=255)
    b = rand(4, 5, dtype="uint8", lo=0, hi=255)
    s = lambda v: np.array(v, f32)  # noqa: E731
    check("QLinearMatMul", [a, s(0.02), np.array(100, "uint8"), b, s(0.03), np.array(120, "uint8"), s(0.2),
                            np.array(128, "uint8")], const=[1, 2, 3, 4, 5, 6, 7])
    x = rand(1, 2, 6, 6, dtype="uint8", lo=0, hi=255)
    w = rand(4, 2, 3, 3, dtype="int8", lo=-100, hi=100)
    check("QLinearConv", [x, s(0.02), np.array(110, "uint8"), w, np.array([0.01, 0.02, 0.015, 0.03], f32),
                          np.zeros(4, "int8"), s(0.15), np.array(120, "uint8"), rand(4, dtype="int32", lo=-500,
                                                                                    hi=500)],
          {"pads": [1, 1, 1, 1], "strides": [2, 2]}, const=[1, 2, 3, 4, 5, 6, 7, 8])
    # (uint8 x int8 products saturate 16-bit pair sums as onnxruntime's AVX2 kernels do: with
    # these weights one output is 47 units from the exact sum; see the test below)


def _high(*shape, dtype="uint8"):
    """8-bit data near the top of the range: pairs of products leave int16 (onnxruntime's uint8 x
    int8 kernels saturate them; Ember's translations say so)."""
    return rand(*shape, dtype=dtype, lo=190, hi=256)


def _strong(*shape):
    w = rand(*shape, dtype="int8", lo=-128, hi=128)
    w[..., ::2] = 127
    return w


def test_qlinear_ops_saturate_like_onnxruntime():
    s = lambda v: np.array(v, f32)  # noqa: E731
    a, b = _high(5, 64), _strong(64, 24)
    check("QLinearMatMul", [a, s(0.02), np.array(3, "uint8"), b, s(0.03), np.array(0, "int8"), s(20.0),
                            np.array(7, "uint8")], const=[1, 2, 3, 4, 5, 6, 7])
    check("QLinearMatMul", [a, s(0.02), np.array(3, "uint8"), b, rand(24, lo=0.01, hi=0.04), np.zeros(24, "int8"),
                            s(20.0), np.array(7, "uint8")], const=[1, 2, 4, 5, 6, 7])        # per column, B an input
    check("MatMulInteger", [a, b, np.array(9, "uint8"), np.array(0, "int8")], const=[1, 2, 3])
    check("MatMulInteger", [a, b, np.array(9, "uint8"), rand(24, dtype="int8", lo=-3, hi=3)], const=[1, 2, 3])
    x = _high(1, 16, 6, 6)
    for w_shape, attrs in [((8, 16, 3, 3), {"pads": [1, 1, 1, 1]}), ((8, 16, 1, 1), {"strides": [2, 2]}),
                           ((8, 3, 3, 3), {"pads": [1, 0, 1, 2]})]:
        xi = x[:, :w_shape[1]].copy()
        check("QLinearConv", [xi, s(0.02), np.array(200, "uint8"), _strong(*w_shape), rand(8, lo=0.005, hi=0.02),
                              np.zeros(8, "int8"), s(10.0), np.array(5, "uint8"), rand(8, dtype="int32", lo=-900,
                                                                                        hi=900)],
              attrs, const=[1, 2, 3, 4, 5, 6, 7, 8])
    # int8 activations and depthwise convolutions are exact in onnxruntime
    check("QLinearConv", [rand(1, 16, 6, 6, dtype="int8", lo=-128, hi=128), s(0.02), np.array(-3, "int8"),
                          _strong(8, 16, 3, 3), s(0.01), np.array(0, "int8"), s(10.0), np.array(5, "int8")],
          {"pads": [1, 1, 1, 1]}, const=[1, 2, 3, 4, 5, 6, 7])
    check("QLinearConv", [x, s(0.02), np.array(0, "uint8"), _strong(16, 1, 3, 3), s(0.01), np.array(0, "int8"),
                          s(10.0), np.array(5, "uint8")], {"pads": [1, 1, 1, 1], "group": 16}, const=[1, 2, 3, 4, 5, 6, 7])
    check("ConvInteger", [x, rand(4, 16, 3, 3, dtype="uint8", lo=200, hi=256), np.array(250, "uint8")],
          {"pads": [1, 1, 1, 1]}, const=[1, 2])


def test_integer_products_are_integer_kernels():
    from ember.frontend import from_onnx

    model = check("QLinearConv", [_high(1, 16, 6, 6), np.array(0.02, f32), np.array(200, "uint8"), _strong(8, 16, 3, 3),
                                  np.array(0.01, f32), np.array(0, "int8"), np.array(10.0, f32), np.array(5, "uint8")],
                  {"pads": [1, 1, 1, 1]}, const=[1, 2, 3, 4, 5, 6, 7])
    ops = from_onnx(model).op_histogram()
    assert ops.get("conv2d_int") == 1 and ops.get("requantize") == 1 and "conv2d" not in ops


# ---- recurrences ----------------------------------------------------------------------------

def _rnn_inputs(gates, seq=4, batch=3, inp=5, hid=6, dirs=1, layout=0, lens=False, init=False, peep=False):
    x = rand(batch, seq, inp) if layout else rand(seq, batch, inp)
    ins = [x, rand(dirs, gates * hid, inp, lo=-0.5, hi=0.5), rand(dirs, gates * hid, hid, lo=-0.5, hi=0.5),
           rand(dirs, 2 * gates * hid, lo=-0.5, hi=0.5)]
    const = [1, 2, 3]
    if lens or init or peep:
        ins.append(np.array([seq, 2, 1][:batch], "int32") if lens else None)
    if init or peep:
        shape = (batch, dirs, hid) if layout else (dirs, batch, hid)
        ins += [rand(*shape), rand(*shape)] if gates == 4 else [rand(*shape)]
    if peep:
        ins.append(rand(dirs, 3 * hid, lo=-0.5, hi=0.5))
        const.append(7)
    return ins, const


@pytest.mark.parametrize("op,gates", [("RNN", 1), ("GRU", 3), ("LSTM", 4)])
@pytest.mark.parametrize("variant", [{}, {"direction": "reverse", "lens": True}, {"direction": "bidirectional",
                                                                              "init": True},
                                     {"layout": 1, "init": True}, {"clip": 0.5, "lens": True}])
def test_recurrences(op, gates, variant):
    variant = dict(variant)
    attrs = {"hidden_size": 6}
    for k in ("direction", "layout", "clip"):
        if k in variant:
            attrs[k] = variant.pop(k)
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    ins, const = _rnn_inputs(gates, dirs=dirs, layout=attrs.get("layout", 0), **variant)
    n_out = 3 if op == "LSTM" else 2
    # onnxruntime has no batch-major (layout=1) recurrences; the ONNX reference does
    oracle = run_onnx_reference if attrs.get("layout") else run_onnxruntime
    check(op, ins, attrs, opset=14, const=const, n_out=n_out, atol=1e-5, oracle=oracle)


def test_gru_linear_before_reset_and_lstm_peepholes():
    ins, const = _rnn_inputs(3, init=True)
    check("GRU", ins, {"hidden_size": 6, "linear_before_reset": 1}, opset=14, const=const, n_out=2, atol=1e-5)
    ins, const = _rnn_inputs(4, peep=True, lens=True)
    check("LSTM", ins, {"hidden_size": 6}, opset=14, const=const, n_out=3, atol=1e-5)
    ins, const = _rnn_inputs(1)
    check("RNN", ins, {"hidden_size": 6, "activations": ["Relu"]}, opset=14, const=const, n_out=2, atol=1e-5)


# ---- bfloat16 and the narrow types (float8, float4, int4, int2) --------------------------------

NARROW_TP = {"float8_e4m3fn": 17, "float8_e4m3fnuz": 18, "float8_e5m2": 19, "float8_e5m2fnuz": 20,
             "uint4": 21, "int4": 22, "float4_e2m1fn": 23, "float8_e8m0fnu": 24, "uint2": 25, "int2": 26}
SPREAD = np.array([0.48, 0.25, 1.05, -3.5, -8, 9, 1e6, 1e-7, np.nan, np.inf, -np.inf, -4, 0.01, -0.0, 300.0,
                   464.0, 2.5, -0.75, 57344.0, 61440.0, -7.0, 15.0, 1.5, 2 ** -9], f32)


def _ml(dtype):
    from ember.graph.types import np_dtype

    return np_dtype(dtype)


#: the first opset whose ops take these types as operands (the 2-bit integers came with opset 25)
NARROW_OPSET = {"float8_e8m0fnu": 24, "int2": 25, "uint2": 25}

#: the ranges of the narrow integer types
NARROW_INT_RANGES = {"int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}


def _defined_cast(src: np.ndarray, to: str) -> np.ndarray:
    """The values of ``src`` whose cast to ``to`` ONNX defines: a float out of an integer type's
    range is undefined (ml_dtypes 0.6 wraps such values, 0.7 gives 0; Ember truncates and wraps as C)."""
    if to not in NARROW_INT_RANGES:
        return src
    lo, hi = NARROW_INT_RANGES[to]
    v = src.astype(np.float32)
    with np.errstate(invalid="ignore"):
        return src[np.isfinite(v) & (v >= lo) & (v <= hi)]


@pytest.mark.parametrize("to", sorted(NARROW_TP) + ["bfloat16"])
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_and_from_narrow_types(to, saturate):
    tp = NARROW_TP.get(to, 16)
    opset = max(23, NARROW_OPSET.get(to, 0))
    attrs = {"to": tp, "saturate": saturate}
    with np.errstate(over="ignore"):
        sources = [_defined_cast(s, to) for s in (SPREAD, SPREAD.astype("float16"))]
    for src in sources:
        check("Cast", [src], attrs, opset=opset, oracle=run_onnx_reference)
    if to == "float8_e8m0fnu":
        for mode in ("up", "down", "nearest"):
            check("Cast", [np.abs(SPREAD)], {**attrs, "round_mode": mode}, opset=24, oracle=run_onnx_reference)
    # CastLike to the type of a second input, and back to float
    like = np.zeros(3, _ml(to))
    check("CastLike", [_defined_cast(SPREAD, to), like], {"saturate": saturate}, opset=opset, oracle=run_onnx_reference)
    with np.errstate(all="ignore"):
        codes = (np.arange(256, dtype=np.uint8) & (0xF if to in ("int4", "uint4", "float4_e2m1fn") else
                                                   0x3 if to in ("int2", "uint2") else 0xFF))
    data = codes.view(_ml(to)) if to != "bfloat16" else SPREAD.astype(_ml(to))
    for back in (1, 10):      # float, float16
        check("Cast", [data], {"to": back}, opset=opset, oracle=run_onnx_reference)
    # to int8: ONNX leaves non-finite and out of range values undefined
    v = data.astype(f32)
    check("Cast", [data[np.isfinite(v) & (np.abs(v) < 128)]], {"to": 3}, opset=opset, oracle=run_onnx_reference)


@pytest.mark.parametrize("qtype", ["int4", "uint4", "int2", "uint2"])
def test_quantize_dequantize_narrow_integers(qtype):
    opset = max(21, NARROW_OPSET.get(qtype, 0))
    lo, hi = {"int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}[qtype]
    x = rand(2, 6, 4, lo=-30, hi=30)
    zp = np.array([lo + 1, hi - 1, (lo + hi) // 2, 0 if lo < 0 else 1, lo, hi][:6], _ml(qtype))
    scale = rand(6, lo=0.5, hi=4)
    check("QuantizeLinear", [x, scale, zp], {"axis": 1}, const=[1, 2], opset=opset, oracle=run_onnx_reference)
    # blocked, the output type from output_dtype alone
    bscale = rand(2, 6, 2, lo=0.5, hi=4)
    check("QuantizeLinear", [x, bscale], {"axis": 2, "block_size": 2, "output_dtype": NARROW_TP[qtype]},
          const=[1], opset=opset, oracle=run_onnx_reference)
    q = (np.arange(48) % (hi - lo + 1) + lo).reshape(2, 6, 4).astype(_ml(qtype))
    check("DequantizeLinear", [q, scale, zp], {"axis": 1}, const=[1, 2], opset=opset, oracle=run_onnx_reference)
    check("DequantizeLinear", [q, bscale.astype("float16")], {"axis": 2, "block_size": 2}, const=[1], opset=opset,
          oracle=run_onnx_reference, rtol=1e-3)
    check("DequantizeLinear", [q, scale], {"axis": 1, "output_dtype": 10}, const=[1], opset=max(23, opset),
          oracle=run_onnx_reference, rtol=1e-3)


@pytest.mark.parametrize("qtype", ["float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                                   "float4_e2m1fn"])
def test_quantize_dequantize_narrow_floats(qtype):
    opset = 23 if qtype == "float4_e2m1fn" else 21   # QuantizeLinear takes float4 from opset 23 on
    x = np.concatenate([SPREAD, -SPREAD]).reshape(2, 24)
    scale = np.array([0.5, 3.0], f32)
    zp = np.zeros(2, _ml(qtype))
    for sat in (0, 1):
        check("QuantizeLinear", [x, scale, zp], {"axis": 0, "saturate": sat}, const=[1, 2], opset=opset,
              oracle=run_onnx_reference)
    check("QuantizeLinear", [x, np.array(2.0, f32)], {"output_dtype": NARROW_TP[qtype]}, const=[1], opset=opset,
          oracle=run_onnx_reference)
    q = np.arange(48, dtype=np.uint8).reshape(2, 24).view(_ml(qtype))
    if qtype == "float4_e2m1fn":
        q = (np.arange(48, dtype=np.uint8) & 0xF).reshape(2, 24).view(_ml(qtype))
    check("DequantizeLinear", [q, scale, zp], {"axis": 0}, const=[1, 2], opset=opset, oracle=run_onnx_reference)
    check("DequantizeLinear", [q, np.array(0.25, "float16")], const=[1], opset=opset, oracle=run_onnx_reference,
          rtol=1e-3)


def test_dequantize_with_e8m0_scales():
    q = np.arange(-8, 8, dtype=np.int64).reshape(2, 8).astype(_ml("int4"))
    scale = np.array([[0.5, 4.0], [2.0 ** -10, 1.0]], f32).astype(_ml("float8_e8m0fnu"))
    check("DequantizeLinear", [q, scale], {"axis": 1, "block_size": 4, "output_dtype": 1}, const=[1], opset=24,
          oracle=run_onnx_reference)


def test_bfloat16_arithmetic_and_reductions():
    """bfloat16 held as ml_dtypes arrays: every op rounds to bfloat16, reductions accumulate in
    float32."""
    bf16 = _ml("bfloat16")
    # (data of its own: the harness's shared generator would hand this test different values
    # depending on which tests ran before it in the same worker)
    rng = np.random.default_rng(940)
    x = rng.uniform(-3, 3, (3, 8)).astype(np.float32).astype(bf16)
    y = rng.uniform(-3, 3, (8, 4)).astype(np.float32).astype(bf16)
    check("Exp", [x], opset=13, oracle=run_onnx_reference)
    check("Mul", [x, x[::-1]], opset=13, oracle=run_onnx_reference)
    check("MatMul", [x, y], opset=13, oracle=run_onnx_reference, rtol=2 ** -7)

    # onnx's reference sums in bfloat16, which on a sum that cancels to near zero is off by far more
    # than a relative tolerance allows; the promise is a float32 sum rounded once to bfloat16.
    def float32_sum(model, feeds):
        return [feeds["in0"].astype(np.float32).sum(axis=1, keepdims=True).astype(bf16)]

    check("ReduceSum", [x, np.array([1], "int64")], const=[1], opset=13, oracle=float32_sum, rtol=2 ** -7,
          atol=0)
    check("Softmax", [x], opset=13, oracle=run_onnx_reference, rtol=2 ** -4)

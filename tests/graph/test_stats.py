"""FLOP and parameter counts of small graphs whose costs are known by hand."""

import numpy as np
import pytest

from ember.errors import ShapeError
from ember.graph import GraphBuilder, TensorType
from ember.graph.stats import count_flops, count_params, node_flops


def test_conv2d_flops():
    b = GraphBuilder()
    x = b.input("x", TensorType((2, 8, 16, 16), "float32"))
    w = b.const(np.zeros((4, 8, 3, 3), np.float32), "w")
    y = b.op("conv2d", [x, w], strides=(2, 2), pads=(1, 1, 1, 1))
    g = b.finish([y])
    assert y.shape == (2, 4, 8, 8)
    # 2 * N * O * OH * OW * C * KH * KW
    assert count_flops(g) == 2 * 2 * 4 * 8 * 8 * 8 * 3 * 3


def test_grouped_conv2d_flops():
    b = GraphBuilder()
    x = b.input("x", TensorType((1, 8, 10, 10), "float32"))
    w = b.const(np.zeros((8, 1, 3, 3), np.float32), "w")  # depthwise: groups = 8, C/groups = 1
    y = b.op("conv2d", [x, w], groups=8, pads=(1, 1, 1, 1))
    assert count_flops(b.finish([y])) == 2 * 1 * 8 * 10 * 10 * 1 * 3 * 3


def test_integer_products_count_like_float_ones():
    b = GraphBuilder()
    x = b.input("x", TensorType((1, 8, 6, 6), "uint8"))
    y = b.op("conv2d_int", [x, b.const(np.zeros((4, 8, 3, 3), np.int8), "w")], pads=(1, 1, 1, 1))
    a = b.input("a", TensorType((5, 7), "int8"))
    z = b.op("matmul_int", [a, b.const(np.zeros((7, 3), np.int8), "v")])
    assert count_flops(b.finish([y, z])) == 2 * 4 * 6 * 6 * 8 * 3 * 3 + 2 * 5 * 3 * 7
    assert node_flops(z.producer) == 2 * 5 * 3 * 7


def test_batched_matmul_flops():
    b = GraphBuilder()
    x = b.input("x", TensorType((3, 5, 7), "float32"))
    y = b.input("y", TensorType((7, 11), "float32"))
    z = b.op("matmul", [x, y])
    # 2 * batch * M * N * K
    assert count_flops(b.finish([z])) == 2 * 3 * 5 * 11 * 7


def test_elementwise_reduction_and_data_movement():
    b = GraphBuilder()
    x = b.input("x", TensorType((4, 6), "float32"))
    r = b.op("relu", [x])                                # 24 output elements
    s = b.op("add", [r, b.const(np.ones((6,), np.float32))])   # 24, broadcast
    t = b.op("transpose", [s], perm=(1, 0))              # moves data: 0
    m = b.op("reduce_sum", [t], axes=(1,))               # 24 input elements
    g = b.finish([m])
    assert [node_flops(n) for n in g.nodes] == [24, 24, 0, 24]
    assert count_flops(g) == 72


def test_symbolic_dims_need_sizes():
    b = GraphBuilder()
    x = b.input("x", TensorType(("batch", 16), "float32"))
    w = b.const(np.zeros((16, 4), np.float32), "w")
    g = b.finish([b.op("matmul", [x, w], name="fc")])
    with pytest.raises(ShapeError, match="batch"):
        count_flops(g)
    assert count_flops(g, {"batch": 3}) == 2 * 3 * 4 * 16


def test_count_params():
    b = GraphBuilder()
    x = b.input("x", TensorType((1, 16), "float32"))
    w = b.const(np.zeros((16, 4), np.float32), "w")
    bias = b.const(np.zeros((4,), np.float64), "bias")
    y = b.op("matmul", [x, w])
    z = b.op("add", [b.op("cast", [y], to="float64"), bias])
    z2 = b.op("add", [z, bias])  # a constant used twice counts once
    assert count_params(b.finish([z2])) == (16 * 4 + 4, 16 * 4 * 4 + 4 * 8)

"""The loop order of direct convolutions: the cost model's choices on ResNet-50's shapes, and
both orders computing the same convolution."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ember
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.ops.schedule_cpu import conv_loop_order
from ember.target import host

L2 = 512 * 1024


def _order(c, h, w, o, k, stride):
    oh = (h - 1) // stride + 1
    return conv_loop_order(in_bytes=4 * c * h * w, weight_bytes=4 * c * k * k * o, out_rows=oh, out_blocks=o // 16,
                           kernel_rows=k, in_height=h, l2_bytes=L2)


def test_cost_model_on_resnet50_shapes():
    assert _order(256, 56, 56, 512, 1, 2) == "rows"        # layer2 downsample: a large image
    assert _order(256, 56, 56, 128, 1, 1) == "rows"        # layer2 first 1x1 reduction
    assert _order(128, 56, 56, 128, 3, 2) == "rows"        # layer2 stride-2 3x3
    assert _order(512, 7, 7, 512, 3, 1) == "channels"      # layer4 3x3: weights dwarf the image
    assert _order(512, 7, 7, 2048, 1, 1) == "channels"     # layer4 1x1 expansion
    assert _order(64, 14, 14, 64, 3, 1) == "channels"      # everything fits: keep the default


@pytest.mark.parametrize("stride", [1, 2])
def test_both_orders_compute_the_convolution(stride):
    rng = np.random.default_rng(stride)
    b = GraphBuilder("conv_order")
    x = b.input("x", TensorType((1, 8, 18, 18), "float32"))
    w = b.const((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype("float32"))
    y = b.op("relu", [b.op("conv2d", [x, w], strides=(stride, stride), pads=(1, 1, 1, 1))])
    graph = b.finish([y])
    feed = {"x": rng.standard_normal((1, 8, 18, 18)).astype("float32")}
    want = run_graph(graph, feed)[0]
    # an 8 KiB L2 makes the image "large": the rows order; a 1 MiB one: channels
    for l2 in (8192, 1 << 20):
        module = ember.compile(graph, target=dataclasses.replace(host(), l2_bytes=l2), cache=False)
        np.testing.assert_allclose(next(iter(module.run(feed).values())), want, rtol=1e-5, atol=1e-5)
    padded = (4 * 8 * 20 * 20, 4 * 8 * 9 * 16, 18 // stride, 1, 3, 20)
    assert conv_loop_order(*padded, 8192) == "rows" and conv_loop_order(*padded, 1 << 20) == "channels"


def test_register_rows_model():
    from ember.ops.schedule_cpu import register_rows, tile_step_cycles

    # a 7 x 2 tile cannot keep both weight vectors in registers: 15 loads per step, load-bound
    assert tile_step_cycles(7, 2) > tile_step_cycles(6, 2) * 7 / 6
    assert register_rows(7, 2) == 7 and register_rows(14, 2) == 7        # exact tiles
    assert register_rows(56, 2) == 6 and register_rows(197, 2) == 6
    assert all(r * 2 <= 14 for r in map(lambda n: register_rows(n, 2), range(1, 300)))

"""The CPU schedules' cost models: the loop order of direct convolutions (its choices on
ResNet-50's shapes, both orders computing the same convolution) and the register tiles of
matmuls for 16- and 32-register cores (their choices, and the tiles computing the product)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ember
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.schedules.cpu_model import conv_loop_order
from ember.target import CoreModel, host

R16, R32 = CoreModel(16), CoreModel(32)

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
    from ember.schedules.cpu_model import register_rows, tile_step_cycles

    # a 7 x 2 tile cannot keep both weight vectors in registers: 15 loads per step, load-bound
    assert tile_step_cycles(7, 2, R16) > tile_step_cycles(6, 2, R16) * 7 / 6
    assert register_rows(7, 2, R16) == 7 and register_rows(14, 2, R16) == 7        # exact tiles
    assert register_rows(56, 2, R16) == 6 and register_rows(197, 2, R16) == 6
    assert all(r * 2 <= 14 for r in map(lambda n: register_rows(n, 2, R16), range(1, 300)))


def test_register_tiles_with_32_registers():
    from ember.schedules.cpu_model import matmul_vectors, register_rows, tile_step_cycles

    # 6 x 4 keeps its four weight vectors next to 24 accumulators; 7 x 4 does not (memory
    # operands), and on 16 registers a 4-vector tile is never chosen
    assert tile_step_cycles(6, 4, R32) < tile_step_cycles(6, 4, R16)
    assert all(r * 4 <= 28 for r in map(lambda n: register_rows(n, 4, R32), range(1, 300)))
    assert register_rows(197, 4, R32) == 6 and register_rows(14, 2, R32) == 14
    assert matmul_vectors(768, 8, R32) == 4 and matmul_vectors(768, 8, R16) == 2
    assert matmul_vectors(784, 8, R32) == 2 and matmul_vectors(24, 8, R32) == 1
    assert matmul_vectors(20, 8, R32) == 2


def test_cost_model_reads_the_target():
    """The micro-kernel's numbers are the target's (``Target.core``): ports and latencies change
    the tiles it picks."""
    import dataclasses as dc

    from ember.schedules.cpu_model import register_rows, tile_step_cycles
    from ember.target import CORE_MODELS, resolve

    assert resolve("cpu").core.registers == resolve("cpu").vector_registers
    assert set(CORE_MODELS) >= {resolve(n).isa for n in ("cpu", "aarch64-linux", "wasm32", "riscv64-linux")}
    one_port = dc.replace(R16, fma_ports=1)
    assert tile_step_cycles(6, 2, one_port) == 12 + R16.tile_overhead_cycles   # 12 FMAs on one port
    slow_chain = dc.replace(R16, fma_chain_cycles=9)
    # a 9-cycle chain hides the 7 x 2 tile's extra loads: 7 rows, where the 4-cycle FMA takes 6
    assert register_rows(56, 2, slow_chain) == 7 and register_rows(56, 2, R16) == 6


@pytest.mark.parametrize("registers", [16, 32])
@pytest.mark.parametrize("m,k,n", [(197, 40, 96), (13, 24, 64), (5, 16, 40), (64, 33, 24)])
def test_matmul_tiles_for_16_and_32_registers(registers, m, k, n):
    """The same matmul (packed constant weight, and two activations) scheduled for a 16- and a
    32-register core computes the reference's product."""
    rng = np.random.default_rng(m + n)
    b = GraphBuilder("mm_tiles")
    x = b.input("x", TensorType((m, k), "float32"))
    y = b.input("y", TensorType((k, n), "float32"))
    w = b.const((rng.standard_normal((k, n)) * 0.2).astype("float32"))
    out = b.op("add", [b.op("matmul", [x, w]), b.op("matmul", [x, y])])
    graph = b.finish([out])
    feed = {"x": rng.standard_normal((m, k)).astype("float32"), "y": rng.standard_normal((k, n)).astype("float32")}
    want = run_graph(graph, feed)[0]
    features = host().features - {"avx512vl"} if registers == 16 else host().features | {"avx512vl"}
    target = dataclasses.replace(host(), features=frozenset(features))
    assert target.vector_registers == registers
    module = ember.compile(graph, target=target, cache=False)
    np.testing.assert_allclose(next(iter(module.run(feed).values())), want, rtol=1e-4, atol=1e-4)

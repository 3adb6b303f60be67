"""The C of register-tiled kernels keeps the tile in registers: the reduction loop around a
large tile's update is not unrolled by the C compiler (it would spill the accumulators)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ember
from ember.codegen.c import tile_accumulators
from ember.driver.compile import generate
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.target import Target, host


def _first_conv():
    rng = np.random.default_rng(0)
    b = GraphBuilder("first_conv")
    x = b.input("x", TensorType((1, 3, 32, 32), "float32"))
    w = b.const((rng.standard_normal((16, 3, 3, 3)) * 0.2).astype("float32"))
    y = b.op("relu", [b.op("conv2d", [x, w], strides=(2, 2), pads=(1, 1, 1, 1))])
    return b.finish([y]), {"x": rng.standard_normal((1, 3, 32, 32)).astype("float32")}


def _x86(registers: int) -> Target:
    """An x86 target of AVX2 (16 vector registers) or AVX-512VL (32), whatever this machine is."""
    features = {"avx", "avx2", "fma"} | ({"avx512f", "avx512vl"} if registers == 32 else set())
    return dataclasses.replace(host(), arch="x86_64", features=frozenset(features))


@pytest.mark.parametrize("registers", [16, 32])
def test_short_reduction_loop_of_a_large_tile_is_kept_rolled(registers):
    """The C compiler would unroll a first convolution's 3-channel reduction loop and run out of
    registers for the tile's accumulators: a tile of a quarter of the registers or more keeps it
    rolled (``codegen.c.tile_accumulators``: 12 of 16; capped at 12 for 32, where larger
    thresholds are not measured)."""
    graph, feed = _first_conv()
    # 8 lanes: 16 output columns make a 6 x 2-vector tile (12 accumulators) and a 4-row tail
    target = _x86(registers).with_knobs({"vector.lanes": 8})
    lines = generate(graph, target, 3).source.splitlines()
    loops = [k for k, line in enumerate(lines) if "for (int64_t ri = 0; ri < 3;" in line]
    assert len(loops) == 2
    rolled = [lines[k - 1].strip() == "#pragma GCC unroll 1" for k in loops]
    assert rolled == [True, False]       # 12 accumulators; the 4-row tail: small
    assert tile_accumulators(registers) == 12 and tile_accumulators(8) == 6


def test_the_kept_rolled_tile_computes_the_convolution(tmp_path):
    graph, feed = _first_conv()
    module = ember.compile(graph, target=_x86(16).with_knobs({"vector.lanes": 8}), cache=False, dump=tmp_path)
    assert "#pragma GCC unroll 1" in (tmp_path / "model.c").read_text()
    np.testing.assert_allclose(next(iter(module.run(feed).values())), run_graph(graph, feed)[0],
                               rtol=1e-5, atol=1e-5)


def test_small_tiles_leave_the_choice_to_the_c_compiler(tmp_path):
    b = GraphBuilder("small")
    x = b.input("x", TensorType((4, 8), "float32"))
    y = b.op("reduce_sum", [b.op("exp", [x])], axes=(1,), keepdims=False)
    ember.compile(b.finish([y]), cache=False, dump=tmp_path)
    assert "#pragma GCC unroll 1" not in (tmp_path / "model.c").read_text()

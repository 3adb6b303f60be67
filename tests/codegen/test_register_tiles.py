"""The C of register-tiled kernels keeps the tile in registers: the reduction loop around a
large tile's update is not unrolled by the C compiler (it would spill the accumulators)."""

from __future__ import annotations

import numpy as np

import ember
from ember.graph import GraphBuilder, TensorType, run_graph


def test_short_reduction_loop_of_a_large_tile_is_kept_rolled(tmp_path):
    rng = np.random.default_rng(0)
    b = GraphBuilder("first_conv")
    x = b.input("x", TensorType((1, 3, 32, 32), "float32"))
    w = b.const((rng.standard_normal((16, 3, 3, 3)) * 0.2).astype("float32"))
    y = b.op("relu", [b.op("conv2d", [x, w], strides=(2, 2), pads=(1, 1, 1, 1))])
    graph = b.finish([y])
    # 8 lanes: the tile sizes below are those of AVX2 vectors (AVX-512 has 16 lanes)
    module = ember.compile(graph, cache=False, dump=tmp_path, knobs={"vector.lanes": 8})
    c = (tmp_path / "model.c").read_text()
    lines = c.splitlines()
    loops = [k for k, line in enumerate(lines) if "for (int64_t ri = 0; ri < 3;" in line]
    # 16 output columns: a 6 x 2-vector tile (12 accumulators) keeps its loop; the 4-row tail
    # tile is small
    assert len(loops) == 2
    assert lines[loops[0] - 1].strip() == "#pragma GCC unroll 1"
    assert lines[loops[1] - 1].strip() != "#pragma GCC unroll 1"
    feed = {"x": rng.standard_normal((1, 3, 32, 32)).astype("float32")}
    np.testing.assert_allclose(next(iter(module.run(feed).values())), run_graph(graph, feed)[0],
                               rtol=1e-5, atol=1e-5)


def test_small_tiles_leave_the_choice_to_the_c_compiler(tmp_path):
    b = GraphBuilder("small")
    x = b.input("x", TensorType((4, 8), "float32"))
    y = b.op("reduce_sum", [b.op("exp", [x])], axes=(1,), keepdims=False)
    ember.compile(b.finish([y]), cache=False, dump=tmp_path)
    assert "#pragma GCC unroll 1" not in (tmp_path / "model.c").read_text()

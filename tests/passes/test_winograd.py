"""Winograd convolution: the transform matrices, the rewrite pass and the compiled kernels,
checked against direct convolution with the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.graph.verify import verify
from ember.ops.winograd import transform_filters, winograd_matrices
from ember.passes import layout_nchwc, optimize, pack_weights, winograd
from ember.symbolic import is_symbolic


@pytest.mark.parametrize("m", [2, 4])
def test_minimal_filtering_identity(m):
    """1-D F(m, 3): A^T [(G g) * (B^T d)] is the correlation of d with g."""
    at, g, bt = winograd_matrices(m)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    rng = np.random.default_rng(m)
    for _ in range(5):
        filt, d = rng.standard_normal(3), rng.standard_normal(m + 2)
        want = np.array([d[i:i + 3] @ filt for i in range(m)])
        np.testing.assert_allclose(at @ ((g @ filt) * (bt @ d)), want, rtol=1e-12, atol=1e-12)


def test_six_points_are_not_known():
    with pytest.raises(ValueError, match="interpolation points"):
        winograd_matrices(8)


def test_transformed_filters_shape():
    w = np.ones((16, 8, 3, 3), "float32")
    assert transform_filters(w, 4).shape == (36, 8, 16)
    assert transform_filters(w, 2).shape == (16, 8, 16)


def conv_stack(shape, convs, seed=0):
    """A chain of (out_channels, kernel, stride, groups) convolutions with bias and relu."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("stack")
    x = b.input("x", TensorType(shape, "float32"))
    h = x
    for cout, k, stride, groups in convs:
        cin = h.shape[1]
        w = b.const((rng.standard_normal((cout, cin // groups, k, k)) * 0.2).astype("float32"))
        bias = b.const(rng.standard_normal((1, cout, 1, 1)).astype("float32"))
        y = b.op("conv2d", [h, w], strides=(stride, stride), pads=(k // 2,) * 4, groups=groups)
        h = b.op("relu", [b.op("add", [y, bias])])
    concrete = [d if isinstance(d, int) else 4 for d in shape]
    return b.finish([h]), {"x": rng.standard_normal(concrete).astype("float32")}


def rewritten(graph, lanes=8):
    g = layout_nchwc.run(optimize(graph, 2), lanes)
    g = winograd.run(optimize(g, 1), lanes)
    verify(g)
    return g


@pytest.mark.parametrize("shape,convs,tiles", [
    ((1, 8, 16, 16), [(16, 3, 1, 1), (16, 3, 1, 1)], [4, 4]),      # F(4x4): 16 tiles of 4x4
    ((2, 16, 6, 6), [(8, 3, 1, 1)], [2]),                            # 6x6 only divides by 2
    ((1, 8, 12, 12), [(8, 3, 1, 1), (16, 3, 2, 1), (16, 3, 1, 1)], [4, 2]),   # stride 2 stays direct
])
def test_pass_rewrites_and_preserves_results(shape, convs, tiles):
    graph, feed = conv_stack(shape, convs)
    want = run_graph(graph, feed)[0]
    g = rewritten(graph)
    assert [n.attrs["m"] for n in g.nodes if n.op == "winograd_output"] == tiles
    # the padding is read by the input transform, not copied by a pad kernel first
    producers = {n.output: n for n in g.nodes}
    for n in g.nodes:
        if n.op == "winograd_input":
            src = producers.get(n.inputs[0])
            assert src is None or src.op != "pad"
    np.testing.assert_allclose(run_graph(g, feed)[0], want, rtol=1e-4, atol=1e-4)
    got = ember.compile(graph, cflags=("-O1",)).run(feed)
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-4)
    packed = pack_weights.run(g, 8)
    assert not any(n.op == "matmul" for n in packed.nodes), "transformed filters are packed in panels"


@pytest.mark.parametrize("convs,shape", [
    ([(16, 3, 1, 16)], (1, 16, 8, 8)),     # depthwise
    ([(16, 1, 1, 1)], (1, 16, 8, 8)),      # 1x1
    ([(16, 3, 2, 1)], (1, 16, 8, 8)),      # strided
    ([(16, 3, 1, 1)], (1, 16, 7, 7)),      # 7x7 outputs: no whole tiles
    ([(16, 5, 1, 1)], (1, 16, 8, 8)),      # 5x5
])
def test_other_convolutions_keep_the_direct_kernel(convs, shape):
    graph, _ = conv_stack(shape, convs)
    g = rewritten(graph)
    assert not any(n.op.startswith("winograd") for n in g.nodes)
    assert any(n.op == "conv2d_nchwc" for n in g.nodes)


def test_padding_rows_spread_the_transform_accesses_over_the_cache_sets():
    from ember.ops.winograd import padded_rows

    # 64 tiles of 32 channels put the 36 planes 8 KiB apart: all in one L1 set without padding
    assert padded_rows(64, (32, 32), 36) > 64
    for tiles, widths, points in [(64, (32, 32), 36), (196, (64, 64), 36), (49, (256, 256), 16)]:
        rows = padded_rows(tiles, widths, points)
        assert tiles <= rows < tiles + 64
        for w in widths:
            sets = [(k * rows * w * 4 // 64) % 64 for k in range(points)]
            assert max(sets.count(x) for x in sets) <= 4
    assert padded_rows(49, (128, 128), 36) == 49          # already spread: no padding


def test_tile_size_choice():
    assert winograd.tile_size(56, 56, 64, 64, 1) == 4
    assert winograd.tile_size(14, 14, 256, 256, 1) == 2
    assert winograd.tile_size(7, 7, 512, 512, 1) == 0
    assert winograd.tile_size(4, 4, 8, 8, 1) == 0          # too few tiles to fill a register tile


def test_open_tile_size_choice():
    # the m a static size divisible by 4 gets, whatever the symbolic size turns out to be
    assert winograd.open_tile_size(64, 64) == winograd.tile_size(56, 56, 64, 64, 1) == 4
    assert winograd.open_tile_size(256, 256) == winograd.tile_size(14, 14, 256, 256, 1) == 2
    assert winograd.open_tile_size(512, 512) == 0


#: output sizes that leave partial tiles of 4 and of 2 (and 224, which leaves none)
OPEN_SIZES = [(1, 1), (3, 5), (5, 7), (7, 13), (13, 3), (224, 6)]


def test_pass_rewrites_symbolic_height_and_width_and_runs_every_size():
    """A 3x3 convolution over an open batch, height and width becomes Winograd with partial
    tiles; one artifact matches direct convolution at sizes no tile size divides."""
    graph, _ = conv_stack(("batch", 8, "height", "width"), [(16, 3, 1, 1), (16, 1, 1, 1)])
    g = rewritten(graph)
    outs = [n for n in g.nodes if n.op == "winograd_output"]
    assert [n.attrs["m"] for n in outs] == [4] and all(is_symbolic(d) for d in outs[0].attrs["size"])
    module = ember.compile(graph, cflags=("-O1",))
    rng = np.random.default_rng(3)
    for k, (h, w) in enumerate(OPEN_SIZES):
        feed = {"x": rng.standard_normal((1 + k % 2, 8, h, w)).astype("float32")}
        want = run_graph(graph, feed)[0]
        np.testing.assert_allclose(run_graph(g, feed)[0], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(next(iter(module.run(feed).values())), want, rtol=1e-4, atol=1e-4,
                                   err_msg=f"{h}x{w}")


@pytest.mark.parametrize("m,pads", [(2, (1, 1, 1, 1)), (4, (0, 1, 1, 0))])
def test_transforms_over_symbolic_sizes_leave_partial_tiles(m, pads):
    """winograd_input -> matmul -> winograd_output (with an epilogue) by hand over symbolic
    height and width, against the reference interpreter's direct convolution."""
    rng = np.random.default_rng(m)
    cin, cout, cb = 8, 16, 8
    filt = (rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype("float32")
    b = GraphBuilder("wino")
    x = b.input("x", TensorType(("batch", cin // cb, "height", "width", cb), "float32"))
    n, _, h, w, _ = x.shape
    oh, ow = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    th, tw = (oh + m - 1) // m, (ow + m - 1) // m
    v = b.op("winograd_input", [x], m=m, pads=pads)
    prod = b.op("matmul", [v, b.const(transform_filters(filt, m))])
    y = b.op("winograd_output", [prod], m=m, tiles=(n, th, tw), block=cb, size=(oh, ow))
    graph = b.finish([b.op("relu", [y])])
    module = ember.compile(graph, cflags=("-O1",))
    from ember.ops.nn import from_blocked_array, to_blocked_array

    for k, (hh, ww) in enumerate(OPEN_SIZES):
        hh, ww = hh + 2 - pads[0] - pads[2], ww + 2 - pads[1] - pads[3]   # outputs of OPEN_SIZES
        xs = rng.standard_normal((1 + k % 2, cin, hh, ww)).astype("float32")
        xp = np.pad(xs, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
        want = np.maximum(np.einsum("nchwij,ocij->nohw", win, filt), 0)
        feed = {"x": to_blocked_array(xs, cb)}
        got = from_blocked_array(next(iter(module.run(feed).values())))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{hh}x{ww}")
        np.testing.assert_allclose(from_blocked_array(run_graph(graph, feed)[0]), want, rtol=1e-4, atol=1e-4)

"""The CPU layout passes (``layout_nchwc``, ``pack_weights``) preserve what a graph computes,
checked with the reference interpreter on random convolution networks, and compiled."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.graph.verify import verify
from ember.passes import layout_nchwc, optimize, pack_weights


def conv_net(seed: int, cin: int = 8, size: int = 12) -> tuple:
    """A small residual network: convs (3x3, 1x1, strided, depthwise), bias, relu/clip, a pool,
    a residual add, a global average pool and a dense layer."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"net{seed}")
    x = b.input("x", TensorType((1, cin, size, size), "float32"))

    def conv(v, cout, k, stride=1, groups=1, act="relu"):
        cin_ = v.shape[1]
        w = b.const(rng.standard_normal((cout, cin_ // groups, k, k)).astype("float32") * 0.2)
        bias = b.const(rng.standard_normal((1, cout, 1, 1)).astype("float32"))
        y = b.op("conv2d", [v, w], strides=(stride, stride), pads=(k // 2,) * 4, groups=groups)
        y = b.op("add", [y, bias])
        return b.op("relu", [y]) if act == "relu" else b.op("clip", [y], lo=0.0, hi=6.0)

    h = conv(x, 16, 3)
    h = b.op("max_pool2d", [h], kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1))
    r = conv(h, 16, 1)
    r = conv(r, 16, 3, groups=16, act="clip")           # depthwise
    h = b.op("add", [h, r])
    h = conv(h, 24, 3, stride=2)                          # 24 channels: blocks of 8
    scale = b.const(rng.standard_normal((24, 1, 1)).astype("float32"))
    h = b.op("mul", [h, scale])                           # rank-3 broadcast operand
    g = b.op("reduce_mean", [h], axes=(2, 3), keepdims=True)
    f = b.op("reshape", [g], shape=(1, 24))
    w = b.const(rng.standard_normal((24, 16)).astype("float32"))
    out = b.op("matmul", [f, w])
    graph = b.finish([out, h])
    feed = {"x": rng.standard_normal((1, cin, size, size)).astype("float32")}
    return graph, feed


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_layout_and_packing_preserve_results(seed, lanes):
    """(With 16 lanes the 24-channel convolution's channels are padded to 32.)"""
    graph, feed = conv_net(seed, cin=3 if seed % 2 else 8)
    want = run_graph(graph, feed)
    g = optimize(graph, 2)
    g = layout_nchwc.run(g, lanes)
    verify(g)
    assert any(n.op == "conv2d_nchwc" for n in g.nodes)
    g = pack_weights.run(optimize(g, 1), lanes)
    verify(g)
    assert any(n.op == "matmul_packed" for n in g.nodes)
    got = run_graph(g, feed)
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-4)


def test_graph_outputs_come_back_in_nchw():
    graph, feed = conv_net(0)
    g = layout_nchwc.run(optimize(graph, 2), 8)
    assert [v.shape for v in g.outputs] == [v.shape for v in graph.outputs]


def test_unblockable_convolutions_stay_nchw():
    # 5 output channels cannot be blocked; grouped (non-depthwise) convs are left alone too
    b = GraphBuilder("g")
    x = b.input("x", TensorType((1, 4, 6, 6), "float32"))
    w1 = b.const(np.ones((5, 4, 3, 3), "float32"))
    w2 = b.const(np.ones((8, 2, 1, 1), "float32"))
    y1 = b.op("conv2d", [x, w1])
    y2 = b.op("conv2d", [x, w2], groups=2)
    g = layout_nchwc.run(b.finish([y1, y2]), 8)
    assert not any(n.op == "conv2d_nchwc" for n in g.nodes)


@pytest.mark.parametrize("seed", range(2))
def test_compiled_network_matches_the_reference(seed):
    graph, feed = conv_net(seed)
    want = run_graph(graph, feed)
    module = ember.compile(graph, cflags=("-O1",))
    got = module.run(feed)
    for a, w in zip(got.values(), want):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [50, 1001, 24])
def test_matmul_weight_of_any_width_is_packed(n):
    """A constant weight whose width is not a multiple of the vector is packed with a zero-padded
    last panel (it used to fall back to a strided scalar loop), and the result is unchanged."""
    rng = np.random.default_rng(n)
    b = GraphBuilder("mm")
    x = b.input("x", TensorType((2, 7, 33), "float32"))
    w = b.const(rng.standard_normal((33, n)).astype("float32"))
    y = b.op("matmul", [x, w])
    graph = b.finish([y])
    packed = pack_weights.run(graph, 8)
    assert [nd.op for nd in packed.nodes] == ["matmul_packed"]
    feed = {"x": rng.standard_normal((2, 7, 33)).astype("float32")}
    want = run_graph(graph, feed)[0]
    np.testing.assert_allclose(run_graph(packed, feed)[0], want, rtol=1e-5, atol=1e-5)
    got = ember.compile(graph, cflags=("-O1",)).run(feed)
    np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-4)


def bottleneck_net(c: int, seed: int = 0) -> tuple:
    """MobileNetV2-like blocks on ``c`` channels (a count that does not divide into vectors):
    expand, depthwise, project, residual add, a swish, a division (which padded channels may
    not pass through), a pool and a global average pool."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder(f"bottleneck{c}")
    x = b.input("x", TensorType((1, 16, 10, 10), "float32"))

    def conv(v, cout, k, groups=1, act=True):
        w = b.const(rng.standard_normal((cout, v.shape[1] // groups, k, k)).astype("float32") * 0.3)
        y = b.op("add", [b.op("conv2d", [v, w], pads=(k // 2,) * 4, groups=groups),
                         b.const(rng.standard_normal((1, cout, 1, 1)).astype("float32"))])
        return b.op("clip", [y], lo=0.0, hi=6.0) if act else y

    h = conv(x, c, 1, act=False)                                   # project to c channels
    for _ in range(2):
        e = conv(conv(h, 3 * c, 1), 3 * c, 3, groups=3 * c)        # expand, depthwise
        h = b.op("add", [h, conv(e, c, 1, act=False)])             # project, residual
    h = b.op("mul", [h, b.op("sigmoid", [h])])
    d = b.op("div", [h, b.const(rng.uniform(1, 2, (1, c, 1, 1)).astype("float32"))])
    p = b.op("max_pool2d", [conv(h, c, 3, groups=c)], kernel=(2, 2), strides=(2, 2))
    g = b.op("reduce_mean", [p], axes=(2, 3), keepdims=True)
    graph = b.finish([d, g])
    return graph, {"x": rng.standard_normal((1, 16, 10, 10)).astype("float32")}


@pytest.mark.parametrize("c,lanes", [(24, 16), (12, 8), (20, 16)])
def test_channels_are_padded_to_whole_vectors(c, lanes):
    """24 channels with 16 lanes (12 with 8) are padded to 32 (16): every convolution runs
    blocked, and the results are unchanged; 20 would need 60% more and stays in NCHW."""
    graph, feed = bottleneck_net(c)
    want = run_graph(graph, feed)
    g = layout_nchwc.run(optimize(graph, 2), lanes)
    verify(g)
    convs = [n.op for n in g.nodes if n.op.startswith("conv2d")]
    if layout_nchwc.padded_channels(c, lanes):
        assert set(convs) == {"conv2d_nchwc"}
        assert any(n.op == "slice" for n in g.nodes)          # back to the real channels
    else:
        assert "conv2d" in convs
    got = run_graph(optimize(g, 1), feed)
    for a, w in zip(got, want):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-4)


def test_compiled_padded_channels_match_the_reference():
    graph, feed = bottleneck_net(12, seed=1)
    want = run_graph(graph, feed)
    module = ember.compile(graph, cflags=("-O1",), knobs={"vector.lanes": 8}, cache=False)
    for a, w in zip(module.run(feed).values(), want):
        np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-4)


def test_a_weight_read_by_two_matmuls_is_packed_once():
    """Two matmuls of one constant weight (an LSTM body's input and recurrent products) read one
    packed copy: the graph stays valid (one name, one value) and computes the same."""
    rng = np.random.default_rng(5)
    b = GraphBuilder("shared")
    x = b.input("x", TensorType((3, 16), "float32"))
    h = b.input("h", TensorType((3, 16), "float32"))
    w = b.const(rng.standard_normal((16, 24)).astype("float32"))
    y = b.op("add", [b.op("matmul", [x, w]), b.op("matmul", [h, w])])
    graph = b.finish([y])
    packed = pack_weights.run(graph, 8)
    verify(packed)
    mms = [nd for nd in packed.nodes if nd.op == "matmul_packed"]
    assert len(mms) == 2 and mms[0].inputs[1] is mms[1].inputs[1]
    feed = {"x": rng.standard_normal((3, 16)).astype("float32"), "h": rng.standard_normal((3, 16)).astype("float32")}
    np.testing.assert_allclose(run_graph(packed, feed)[0], run_graph(graph, feed)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("integer", [False, True])
def test_a_weight_read_by_two_convolutions_is_packed_once(integer):
    """Two convolutions of one constant weight (a quantized model's identical filters, merged)
    read one packed copy: one name, one value, the same results."""
    rng = np.random.default_rng(6)
    b = GraphBuilder("shared_conv")
    dtype = "int8" if integer else "float32"
    x = b.input("x", TensorType((1, 8, 6, 6), dtype))
    h = b.input("h", TensorType((1, 8, 6, 6), dtype))
    if integer:
        w = b.const(rng.integers(-128, 128, (16, 8, 3, 3)).astype(np.int8))
        conv = lambda v: b.op("conv2d_int", [v, w], strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1),
                              groups=1, pad_value=0)
    else:
        w = b.const(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
        conv = lambda v: b.op("conv2d", [v, w], strides=(1, 1), pads=(1, 1, 1, 1))
    graph = b.finish([b.op("add", [conv(x), conv(h)])])
    g = layout_nchwc.run(optimize(graph, 2), 8)
    verify(g)
    convs = [nd for nd in g.nodes if nd.op.endswith("_nchwc") and nd.op.startswith("conv2d")]
    assert len(convs) == 2 and convs[0].inputs[1] is convs[1].inputs[1]
    if integer:
        feed = {k: rng.integers(-128, 128, (1, 8, 6, 6)).astype(np.int8) for k in ("x", "h")}
    else:
        feed = {k: rng.standard_normal((1, 8, 6, 6)).astype(np.float32) for k in ("x", "h")}
    np.testing.assert_allclose(run_graph(g, feed)[0], run_graph(graph, feed)[0], rtol=1e-5, atol=1e-4)

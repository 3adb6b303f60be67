"""onnxruntime's own ops (domain com.microsoft) against onnxruntime: each op at several shapes and
attribute settings through the reference interpreter and, for one setting each, the compiled
artifact; and models that onnxruntime's optimizer and quantizer write."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import ember
import ember.graph.interpreter
from ember.errors import UnsupportedOpError
from onnx_harness import assert_same, make_model, rand, run_ember, run_onnxruntime

ort = pytest.importorskip("onnxruntime")
MS = "com.microsoft"


def ms_model(op, inputs, attrs=None, *, const=(), n_out=1, outputs=None, domain=MS):
    """One com.microsoft ``op`` node over ``inputs`` (None: a left-out optional input); inputs whose
    index is in ``const`` are initializers.  ``outputs``: which of the node's outputs the graph
    returns (default: the first ``n_out``)."""
    names, feeds, inits = [], {}, {}
    for k, a in enumerate(inputs):
        if a is None:
            names.append("")
            continue
        names.append(f"in{k}")
        (inits if k in const else feeds)[f"in{k}"] = np.asarray(a)
    outs = [f"out{k}" for k in range(n_out)]
    if outputs is not None:
        outs = [f"out{k}" if k in outputs else "" for k in range(max(outputs) + 1)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", domain=domain, **(attrs or {}))
    model = make_model([node], feeds, [o for o in outs if o], inits, extra_opsets=[(MS, 1)])
    return model, feeds


def check_ms(op, inputs, attrs=None, *, const=(), n_out=1, outputs=None, rtol=1e-5, atol=1e-5, compiled=False,
             domain=MS):
    model, feeds = ms_model(op, inputs, attrs, const=const, n_out=n_out, outputs=outputs, domain=domain)
    want = run_onnxruntime(model, feeds)
    assert_same(run_ember(model, feeds), want, rtol, atol)
    if compiled:
        mod = ember.compile(model, cflags=("-O1",))
        assert_same(list(mod.run(feeds).values()), want, rtol, atol)
    return model


def refused(op, inputs, attrs=None, *, n_out=1, outputs=None, match=""):
    model, _ = ms_model(op, inputs, attrs, n_out=n_out, outputs=outputs)
    with pytest.raises(UnsupportedOpError, match=match):
        ember.from_onnx(model)


# ---- fused forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("act,params", [("Relu", []), ("LeakyRelu", [0.2]), ("Clip", [-0.5, 0.7]),
                                        ("HardSigmoid", [0.3, 0.4]), ("Tanh", []), ("Sigmoid", []), ("", [])])
def test_fused_conv(act, params):
    attrs = {"pads": [1, 1, 1, 1]}
    if act:
        attrs["activation"] = act
    if params:
        attrs["activation_params"] = params
    check_ms("FusedConv", [rand(1, 3, 6, 6), rand(4, 3, 3, 3), rand(4)], attrs, const=[1, 2], compiled=act == "Relu")


def test_fused_conv_with_sum_and_strides():
    x, w, z = rand(2, 4, 7, 7), rand(6, 2, 3, 3), rand(2, 6, 3, 3)
    check_ms("FusedConv", [x, w, None, z], {"activation": "Relu", "strides": [2, 2], "group": 2}, const=[1])
    check_ms("FusedConv", [rand(1, 2, 9), rand(3, 2, 3), rand(3)], {"activation": "LeakyRelu",
                                                                     "activation_params": [0.1]}, const=[1])


@pytest.mark.parametrize("shapes,attrs", [
    (((3, 4), (4, 5)), {}),
    (((4, 3), (4, 5)), {"transA": 1, "alpha": 0.5}),
    (((2, 3, 4), (5, 4)), {"transB": 1, "alpha": 2.0}),
    (((2, 1, 4, 3), (3, 5, 4)), {"transA": 1, "transB": 1}),
    (((4, 2, 3), (2, 3, 5)), {"transBatchA": 1}),
    (((4, 2, 3), (5, 2, 3)), {"transBatchA": 1, "transBatchB": 1, "transB": 1}),
    (((3, 2, 4), (2, 3, 5)), {"transBatchA": 1, "transA": 1, "alpha": 0.25}),
])
def test_fused_matmul(shapes, attrs):
    check_ms("FusedMatMul", [rand(*shapes[0]), rand(*shapes[1])], attrs, compiled=not attrs)


@pytest.mark.parametrize("act,attrs", [("Relu", {}), ("LeakyRelu", {"activation_alpha": 0.3}),
                                       ("HardSigmoid", {"activation_alpha": 0.3, "activation_beta": 0.6}),
                                       ("Tanh", {}), ("Sigmoid", {})])
def test_fused_gemm(act, attrs):
    check_ms("FusedGemm", [rand(3, 4), rand(5, 4), rand(5)],
             {"activation": act, "transB": 1, "alpha": 0.7, "beta": 0.5, **attrs}, const=[1, 2], compiled=act == "Relu")


def test_fused_gemm_without_c():
    check_ms("FusedGemm", [rand(3, 4), rand(4, 5)], {"activation": "LeakyRelu", "activation_alpha": 0.2, "alpha": 1.5})


def test_gelu_family():
    x = rand(2, 3, 8, lo=-4, hi=4)
    check_ms("Gelu", [x], compiled=True)
    check_ms("BiasGelu", [x, rand(8)])
    check_ms("FastGelu", [x])
    check_ms("FastGelu", [x, rand(8)], compiled=True)
    check_ms("QuickGelu", [x])
    check_ms("QuickGelu", [x], {"alpha": 1.2})


def test_bias_add():
    # onnxruntime has BiasAdd on CUDA only: the formula of its spec, X + bias + skip
    x, bias, skip = rand(2, 3, 8), rand(8), rand(2, 3, 8)
    model, feeds = ms_model("BiasAdd", [x, bias, skip], const=[1])
    assert_same(run_ember(model, feeds), [x + bias + skip])


# ---- normalizations -------------------------------------------------------------------------

@pytest.mark.parametrize("beta,bias,sum_out", [(True, True, True), (False, False, False), (True, False, True),
                                               (False, True, False)])
def test_skip_layer_norm(beta, bias, sum_out):
    h = 16
    inputs = [rand(2, 3, h), rand(2, 3, h), rand(h), rand(h) if beta else None, rand(h) if bias else None]
    outputs = [0, 3] if sum_out else [0]
    check_ms("SkipLayerNormalization", inputs, {"epsilon": 1e-5}, outputs=outputs, compiled=beta and bias)


def test_skip_layer_norm_broadcast_skip_and_statistics():
    check_ms("SkipLayerNormalization", [rand(2, 3, 8), rand(1, 3, 8), rand(8), rand(8)])
    check_ms("SkipLayerNormalization", [rand(2, 3, 8), rand(2, 3, 8), rand(8), rand(8), rand(8)], n_out=4)
    check_ms("SkipSimplifiedLayerNormalization", [rand(2, 3, 8), rand(2, 3, 8), rand(8), rand(8)], n_out=4)


@pytest.mark.parametrize("axis", [-1, 1])
def test_simplified_layer_norm(axis):
    x = rand(2, 3, 8)
    scale = rand(8) if axis == -1 else rand(3, 8)
    # onnxruntime keeps it in the default domain
    check_ms("SimplifiedLayerNormalization", [x, scale], {"axis": axis, "epsilon": 1e-6}, n_out=2,
             compiled=axis == -1, domain="")


@pytest.mark.parametrize("bias,sum_out", [(True, True), (False, False)])
def test_skip_simplified_layer_norm(bias, sum_out):
    h = 8
    inputs = [rand(2, 4, h), rand(2, 4, h), rand(h), rand(h) if bias else None]
    check_ms("SkipSimplifiedLayerNormalization", inputs, {"epsilon": 1e-6}, outputs=[0, 3] if sum_out else [0])


@pytest.mark.parametrize("segment,mask,pos_ids", [(True, True, False), (False, False, False), (True, True, True)])
def test_embed_layer_norm(segment, mask, pos_ids):
    b, s, h, vocab = 2, 5, 8, 11
    rng = np.random.default_rng(1)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    seg = rng.integers(0, 2, (b, s)).astype(np.int32) if segment else None
    m = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int32) if mask else None
    pids = rng.integers(0, 7, (b, s)).astype(np.int32) if pos_ids else None
    inputs = [ids, seg, rand(vocab, h), rand(7, h), rand(2, h) if segment else None, rand(h), rand(h), m, pids]
    outputs = [0, 1, 2] if mask else [0, 1]
    check_ms("EmbedLayerNormalization", inputs, {"epsilon": 1e-5}, const=[2, 3, 4, 5, 6], outputs=outputs,
             compiled=segment and not pos_ids)


# ---- rotary embeddings and attention --------------------------------------------------------

def _rope_cache(max_pos, half):
    ang = np.arange(max_pos)[:, None] / (10000 ** (np.arange(half)[None, :] / half))
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("layout", ["bsd", "bnsh"])
@pytest.mark.parametrize("pos", ["ids", "offset"])
def test_rotary_embedding(interleaved, layout, pos):
    b, s, n, h = 2, 3, 2, 8
    cos, sin = _rope_cache(16, h // 2)
    x = rand(b, s, n * h) if layout == "bsd" else rand(b, n, s, h)
    p = np.array([[0, 1, 2], [5, 6, 9]], dtype=np.int64) if pos == "ids" else np.array([4], dtype=np.int64)
    attrs = {"interleaved": interleaved}
    if layout == "bsd":
        attrs["num_heads"] = n
    check_ms("RotaryEmbedding", [x, p, cos, sin], attrs, const=[2, 3],
             compiled=interleaved == 1 and layout == "bsd" and pos == "ids")


def test_rotary_embedding_partial():
    b, s, n, h, rot = 1, 4, 2, 8, 4
    cos, sin = _rope_cache(8, rot // 2)
    for inter in (0, 1):
        check_ms("RotaryEmbedding", [rand(b, s, n * h), np.array([1], np.int64), cos, sin],
                 {"interleaved": inter, "num_heads": n, "rotary_embedding_dim": rot}, const=[2, 3])


@pytest.mark.parametrize("mask", [None, "end", "end_start", "raw2d", "raw3d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention(mask, unidirectional):
    b, s, d, n = 2, 4, 16, 2
    masks = {None: None, "end": np.array([3, 4], np.int32), "end_start": np.array([3, 4, 1, 0], np.int32),
             "raw2d": np.array([[1, 1, 0, 1], [1, 1, 1, 0]], np.int32),
             "raw3d": np.random.default_rng(2).integers(0, 2, (b, s, s)).astype(np.int32)}
    inputs = [rand(b, s, d), rand(d, 3 * d, lo=-0.5, hi=0.5), rand(3 * d), masks[mask]]
    check_ms("Attention", inputs, {"num_heads": n, "unidirectional": unidirectional}, const=[1, 2],
             compiled=mask == "raw2d" and unidirectional == 0)


def test_attention_past_bias_and_sizes():
    b, s, d, n, p = 2, 3, 8, 2, 2
    x, w, bias = rand(b, s, d), rand(d, 3 * d, lo=-0.5, hi=0.5), rand(3 * d)
    inputs = [x, w, bias, np.array([[1] * (p + s), [1] * 4 + [0]], np.int32), rand(2, b, n, p, d // n)]
    check_ms("Attention", inputs, {"num_heads": n, "unidirectional": 1, "scale": 0.3}, const=[1, 2], n_out=2)
    check_ms("Attention", [x, w, bias, None, None, rand(b, n, s, s)], {"num_heads": n}, const=[1, 2])
    w = rand(d, 8 + 8 + 4, lo=-0.5, hi=0.5)
    check_ms("Attention", [rand(b, s, d), w, rand(20)], {"num_heads": n, "qkv_hidden_sizes": [8, 8, 4],
                                                           "mask_filter_value": -1000.0}, const=[1, 2])
    refused("Attention", [rand(b, s, d), rand(d, 3 * d), rand(3 * d)], {"num_heads": n, "do_rotary": 1},
            match="do_rotary")


def test_rotary_embedding_and_attention_over_open_batch_sequence_and_past():
    n, h = 2, 8
    cos, sin = _rope_cache(16, h // 2)
    check_open_dims("RotaryEmbedding", [rand(2, 3, n * h), np.array([4], np.int64), cos, sin], {"num_heads": n},
                    [2, 3], {0: {0: "B", 1: "S"}},
                    [[rand(b, s, n * h), np.array([k], np.int64), cos, sin] for b, s, k in ((1, 1, 0), (2, 5, 3))])
    check_open_dims("RotaryEmbedding", [rand(2, n, 3, h), np.zeros((2, 3), np.int64), cos, sin], {"interleaved": 1},
                    [2, 3], {0: {0: "B", 2: "S"}, 1: {0: "B", 1: "S"}},
                    [[rand(b, n, s, h), np.arange(b * s).reshape(b, s) % 16, cos, sin] for b, s in ((1, 1), (2, 7))],
                    compiled=False)
    d = n * h
    w, bias = rand(d, 3 * d, lo=-0.5, hi=0.5), rand(3 * d)
    check_open_dims("Attention", [rand(2, 3, d), w, bias, None, rand(2, 2, n, 2, h)], {"num_heads": n, "unidirectional": 1},
                    [1, 2], {0: {0: "B", 1: "S"}, 4: {1: "B", 3: "P"}},
                    [[rand(b, s, d), w, bias, None, rand(2, b, n, p, h)] for b, s, p in ((1, 1, 4), (2, 3, 1), (1, 5, 0))],
                    n_out=2)


@pytest.mark.parametrize("form", ["plain", "bias_mask", "past", "causal"])
def test_multi_head_attention(form):
    b, s, l, d, n, p = 2, 3, 5, 8, 2, 2
    q, k, v = rand(b, s, d), rand(b, l, d), rand(b, l, d)
    inputs, attrs, n_out = [q, k, v], {"num_heads": n}, 1
    if form == "bias_mask":
        inputs += [rand(3 * d), np.array([[1, 1, 1, 0, 1], [1, 1, 1, 1, 0]], np.int32), rand(b, n, s, l)]
    elif form == "past":
        inputs += [rand(3 * d), np.array([6, 4], np.int32), None, rand(b, n, p, d // n), rand(b, n, p, d // n)]
        n_out = 3
    elif form == "causal":
        k, v = rand(b, s, d), rand(b, s, d)
        inputs = [q, k, v, None, np.array([2, 3], np.int32)]
        attrs["unidirectional"] = 1
        attrs["scale"] = 0.5
    check_ms("MultiHeadAttention", inputs, attrs, n_out=n_out, compiled=form == "bias_mask")


@pytest.mark.parametrize("bias", [False, True])
def test_multi_head_attention_bnsh_key_value(bias):
    b, s, l, d, n = 2, 3, 5, 8, 2
    inputs = [rand(b, s, d), rand(b, n, l, d // n), rand(b, n, l, d // n), rand(3 * d) if bias else None,
              np.array([[1, 1, 1, 0, 1], [1, 1, 1, 1, 0]], np.int32)]
    check_ms("MultiHeadAttention", inputs, {"num_heads": n})


def test_multi_head_attention_refuses_packed():
    refused("MultiHeadAttention", [rand(2, 3, 2, 3, 4)], {"num_heads": 2}, match="packed")


def _gqa(b, s, n, nkv, h, past, total, seqlens, attrs, rotary=False):
    inputs = [rand(b, s, n * h), rand(b, s, nkv * h), rand(b, s, nkv * h)]
    inputs += [rand(b, nkv, past, h), rand(b, nkv, past, h)] if past else [None, None]
    inputs += [np.asarray(seqlens, np.int32), np.array(total, np.int32)]
    const = [6]
    if rotary:
        cos, sin = _rope_cache(32, h // 2)
        inputs += [cos, sin]
        const += [7, 8]
        attrs = {**attrs, "do_rotary": 1}
    return inputs, {"num_heads": n, "kv_num_heads": nkv, **attrs}, const


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("seqlens", [[3, 3], [1, 3]])
def test_group_query_attention_prompt(rotary, seqlens):
    inputs, attrs, const = _gqa(2, 4, 4, 2, 16, 0, 4, seqlens, {}, rotary)
    if seqlens[0] == 3:
        check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3, compiled=not rotary)
        return
    # a right-padded prompt: onnxruntime leaves the rows past a batch's length undefined
    model, feeds = ms_model("GroupQueryAttention", inputs, attrs, const=const, n_out=3)
    want, got = run_onnxruntime(model, feeds), run_ember(model, feeds)
    for b, n in enumerate(seqlens):
        assert_same([got[0][b, :n + 1]], [want[0][b, :n + 1]], 1e-5, 1e-5)
    assert_same(got[1:], want[1:], 1e-5, 1e-5)


@pytest.mark.parametrize("rotary", [False, True])
def test_group_query_attention_decode(rotary):
    # one new token after a right-padded past of 5 (batch 0 holds 3 tokens, batch 1 holds 5)
    inputs, attrs, const = _gqa(2, 1, 4, 1, 16, 5, 6, [3, 5], {"rotary_interleaved": int(rotary)}, rotary)
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)


@pytest.mark.parametrize("past", [0, 5])
def test_group_query_attention_packed_qkv(past):
    b, n, nkv, h = 2, 4, 2, 16
    s, total, seqlens = (3, 3, [2, 2]) if not past else (1, 6, [3, 5])
    inputs, attrs, const = _gqa(b, s, n, nkv, h, past, total, seqlens, {}, rotary=True)
    inputs[0] = rand(b, s, (n + 2 * nkv) * h)
    inputs[1] = inputs[2] = None
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)


def test_group_query_attention_window_softcap_scale():
    inputs, attrs, const = _gqa(1, 5, 2, 2, 16, 0, 5, [4], {"local_window_size": 2, "softcap": 3.0, "scale": 0.2})
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)
    inputs, attrs, const = _gqa(1, 3, 2, 1, 16, 4, 7, [6], {})       # a second prompt after a past of 4
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)


# ---- models onnxruntime's optimizers write ---------------------------------------------------

class _Builder:
    """Nodes and initializers of a small float model, built with onnx.helper."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def const(self, name, arr):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, name, *shape, scale=0.3):
        return self.const(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op, ins, outs, **attrs):
        self.nodes.append(helper.make_node(op, ins, outs, **attrs))

    def model(self, inputs, outputs):
        from onnx import TensorProto as TP

        g = helper.make_graph(self.nodes, "m", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, TP.FLOAT, None) for n in outputs], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m


def _fusable_model():
    """Conv + Relu, Gemm + Relu, erf GELU, residual + LayerNormalization, RMSNorm, MatMul of a
    transpose and x * sigmoid(1.702 x): patterns onnxruntime's extended optimizations fuse."""
    from onnx import TensorProto as TP

    m = _Builder()
    m.weight("cw", 8, 3, 3, 3), m.weight("cb", 8), m.weight("fw", 8, 16), m.weight("fb", 16)
    m.weight("g", 16, scale=1), m.weight("beta", 16), m.weight("w2", 16, 16), m.weight("b2", 16), m.weight("rms", 16)
    for name, v in (("eps", 1e-6), ("two", 2.0), ("sq2", 1.4142135381698608), ("one", 1.0), ("half", 0.5), ("qg", 1.702)):
        m.const(name, np.array(v, np.float32))
    m.node("Conv", ["x", "cw", "cb"], ["c1"], pads=[1, 1, 1, 1]), m.node("Relu", ["c1"], ["r1"])
    m.node("GlobalAveragePool", ["r1"], ["gp"]), m.node("Flatten", ["gp"], ["fl"])
    m.node("Gemm", ["fl", "fw", "fb"], ["gm"]), m.node("Relu", ["gm"], ["gr"])
    m.node("MatMul", ["t", "w2"], ["m1"]), m.node("Add", ["m1", "b2"], ["a1"]), m.node("Div", ["a1", "sq2"], ["d1"])
    m.node("Erf", ["d1"], ["e1"]), m.node("Add", ["e1", "one"], ["e2"]), m.node("Mul", ["a1", "e2"], ["e3"])
    m.node("Mul", ["e3", "half"], ["ge"]), m.node("Add", ["ge", "t"], ["res"])
    m.node("LayerNormalization", ["res", "g", "beta"], ["ln"], axis=-1, epsilon=1e-5)
    m.node("Pow", ["ln", "two"], ["p2"]), m.node("ReduceMean", ["p2"], ["mean"], axes=[-1])
    m.node("Add", ["mean", "eps"], ["me"]), m.node("Sqrt", ["me"], ["sq"]), m.node("Div", ["ln", "sq"], ["nrm"])
    m.node("Mul", ["nrm", "rms"], ["rn"]), m.node("Transpose", ["u"], ["ut"], perm=[0, 2, 1])
    m.node("MatMul", ["rn", "ut"], ["fm"]), m.node("Mul", ["rn", "qg"], ["qx"]), m.node("Sigmoid", ["qx"], ["qs"])
    m.node("Mul", ["rn", "qs"], ["qgl"])
    return m.model([("x", TP.FLOAT, [1, 3, 8, 8]), ("t", TP.FLOAT, [2, 5, 16]), ("u", TP.FLOAT, [2, 5, 16])],
                   ["gr", "fm", "qgl"])


def _tiny_bert(b=2, s=6, h=16, heads=2, vocab=30, inner=32):
    """One BERT layer in the form the transformer optimizer recognizes: embeddings and their
    LayerNormalization, self-attention with a (1 - mask) * -10000 mask, an erf-GELU FFN."""
    from onnx import TensorProto as TP

    m = _Builder()
    hd = h // heads
    m.weight("word", vocab, h), m.weight("pos", 16, h), m.weight("seg", 2, h), m.weight("eg", h, scale=1), m.weight("eb", h)
    m.const("pos_ids", np.arange(s, dtype=np.int64).reshape(1, s))
    m.node("Gather", ["word", "input_ids"], ["we"]), m.node("Gather", ["pos", "pos_ids"], ["pe"])
    m.node("Gather", ["seg", "segment_ids"], ["se"]), m.node("Add", ["we", "pe"], ["e1"]), m.node("Add", ["e1", "se"], ["e2"])
    m.node("LayerNormalization", ["e2", "eg", "eb"], ["emb"], axis=-1, epsilon=1e-12)
    m.const("ax1", np.array([1], np.int64)), m.const("ax2", np.array([2], np.int64))
    m.const("one", np.array(1.0, np.float32)), m.const("neg", np.array(-10000.0, np.float32))
    m.node("Unsqueeze", ["input_mask", "ax1"], ["m1"]), m.node("Unsqueeze", ["m1", "ax2"], ["m2"])
    m.node("Cast", ["m2"], ["m3"], to=TP.FLOAT), m.node("Sub", ["one", "m3"], ["m4"]), m.node("Mul", ["m4", "neg"], ["madd"])
    m.const("shape4", np.array([0, 0, heads, hd], np.int64)), m.const("shape3", np.array([0, 0, h], np.int64))
    m.const("sqrt_hd", np.array(np.sqrt(hd), np.float32))
    for p in "qkv":
        m.weight(f"{p}w", h, h), m.weight(f"{p}b", h)
        m.node("MatMul", ["emb", f"{p}w"], [f"{p}m"]), m.node("Add", [f"{p}m", f"{p}b"], [f"{p}a"])
        m.node("Reshape", [f"{p}a", "shape4"], [f"{p}r"])
        m.node("Transpose", [f"{p}r"], [f"{p}t"], perm=[0, 2, 3, 1] if p == "k" else [0, 2, 1, 3])
    m.weight("ow", h, h), m.weight("ob", h), m.weight("g1", h, scale=1), m.weight("b1", h)
    m.node("MatMul", ["qt", "kt"], ["qk"]), m.node("Div", ["qk", "sqrt_hd"], ["qkd"]), m.node("Add", ["qkd", "madd"], ["qkm"])
    m.node("Softmax", ["qkm"], ["probs"], axis=3), m.node("MatMul", ["probs", "vt"], ["ctx"])
    m.node("Transpose", ["ctx"], ["ctxt"], perm=[0, 2, 1, 3]), m.node("Reshape", ["ctxt", "shape3"], ["ctxr"])
    m.node("MatMul", ["ctxr", "ow"], ["om"]), m.node("Add", ["om", "ob"], ["oa"]), m.node("Add", ["oa", "emb"], ["res1"])
    m.node("LayerNormalization", ["res1", "g1", "b1"], ["ln1"], axis=-1, epsilon=1e-12)
    m.weight("iw", h, inner), m.weight("ib", inner), m.weight("fw2", inner, h), m.weight("fb2", h)
    m.weight("g2", h, scale=1), m.weight("b2", h), m.const("sq2", np.array(1.4142135381698608, np.float32))
    m.const("half", np.array(0.5, np.float32))
    m.node("MatMul", ["ln1", "iw"], ["im"]), m.node("Add", ["im", "ib"], ["ia"]), m.node("Div", ["ia", "sq2"], ["gd"])
    m.node("Erf", ["gd"], ["ge"]), m.node("Add", ["ge", "one"], ["gp"]), m.node("Mul", ["ia", "gp"], ["gm"])
    m.node("Mul", ["gm", "half"], ["gelu"]), m.node("MatMul", ["gelu", "fw2"], ["fm"]), m.node("Add", ["fm", "fb2"], ["fa"])
    m.node("Add", ["fa", "ln1"], ["res2"]), m.node("LayerNormalization", ["res2", "g2", "b2"], ["out"], axis=-1, epsilon=1e-12)
    return m.model([(n, TP.INT64, [b, s]) for n in ("input_ids", "segment_ids", "input_mask")], ["out"])


def _ms_ops(model) -> set:
    return {n.op_type for n in model.graph.node if n.domain == MS}


def _compare_compiled(model, feeds, rtol=1e-5, atol=1e-5):
    want = run_onnxruntime(model, feeds)
    assert_same(run_ember(model, feeds), want, rtol, atol)
    assert_same(list(ember.compile(model).run(feeds).values()), want, rtol, atol)


def test_model_optimized_by_onnxruntime(tmp_path):
    import onnx

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(_fusable_model().SerializeToString(), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(so.optimized_model_filepath)
    assert {"FusedConv", "FusedGemm", "FusedMatMul", "Gelu", "SkipLayerNormalization", "QuickGelu"} <= _ms_ops(opt)
    assert any(n.op_type == "SimplifiedLayerNormalization" for n in opt.graph.node)
    feeds = {"x": rand(1, 3, 8, 8), "t": rand(2, 5, 16), "u": rand(2, 5, 16)}
    _compare_compiled(opt, feeds)


def test_bert_layer_from_transformer_optimizer():
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(_tiny_bert(), model_type="bert", num_heads=2, hidden_size=16, opt_level=0).model
    assert {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu"} <= _ms_ops(opt)
    rng = np.random.default_rng(5)
    feeds = {"input_ids": rng.integers(0, 30, (2, 6)), "segment_ids": rng.integers(0, 2, (2, 6)),
             "input_mask": (np.arange(6)[None] < np.array([[4], [6]])).astype(np.int64)}
    _compare_compiled(opt, feeds)


# ---- QOperator quantized forms: bit for bit with onnxruntime --------------------------------

def _q(dtype, *shape, rng=np.random.default_rng(7)):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def _s(v):
    return np.array(v, dtype=np.float32)


def _every_value(dtype):
    info = np.iinfo(dtype)
    return np.arange(info.min, info.max + 1).astype(dtype)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_binary_every_pair(op, dtype):
    # all 65536 pairs of operand values, at several scales and zero points
    a = np.repeat(_every_value(dtype), 256)
    b = np.tile(_every_value(dtype), 256)
    zero = 128 if dtype == np.uint8 else 0
    for k, (sa, sb, sc, za, zb, zc) in enumerate([(0.02, 0.03, 0.05, zero + 3, zero - 7, zero + 1),
                                                  (0.1, 0.004, 0.07, zero - 40, zero, zero + 20),
                                                  (0.0123, 0.0456, 0.0789, zero, zero + 5, zero - 2)]):
        params = [_s(sa), dtype(za), b, _s(sb), dtype(zb), _s(sc), dtype(zc)]
        check_ms(op, [a] + params, const=[1, 2, 4, 5, 6, 7], compiled=k == 0 and dtype == np.uint8)


@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_qlinear_binary_broadcasts(op):
    for shape_b in [(4,), (1,), (3, 1)]:
        check_ms(op, [_q(np.uint8, 2, 3, 4), _s(0.05), np.uint8(120), _q(np.uint8, *shape_b), _s(0.03),
                      np.uint8(130), _s(0.06), np.uint8(125)], const=[1, 2, 4, 5, 6, 7])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_unary_tables(dtype):
    x = _every_value(dtype).reshape(16, 16)
    zero = 128 if dtype == np.uint8 else 0
    for sx, zx, sy, zy in [(0.05, zero, 0.02, zero - 20), (0.1, zero + 30, 0.004, zero - 100)]:
        p = [_s(sx), dtype(zx), _s(sy), dtype(zy)]
        check_ms("QLinearLeakyRelu", [x] + p, {"alpha": 0.15}, const=[1, 2, 3, 4], compiled=dtype == np.int8)
        p = [_s(sx), dtype(zx), _s(1 / 256), dtype(zero - 128 if dtype == np.uint8 else -128)]
        check_ms("QLinearSigmoid", [x] + p, const=[1, 2, 3, 4], compiled=dtype == np.uint8)


def test_qlinear_concat():
    a, b, c = _q(np.uint8, 2, 3, 4), _q(np.uint8, 2, 5, 4), _q(np.uint8, 2, 1, 4)
    inputs = [_s(0.05), np.uint8(128), a, _s(0.05), np.uint8(128), b, _s(0.031), np.uint8(100), c, _s(0.2), np.uint8(3)]
    check_ms("QLinearConcat", inputs, {"axis": 1}, const=[0, 1, 3, 4, 6, 7, 9, 10], compiled=True)
    inputs = [_s(0.07), np.int8(-3), _q(np.int8, 3, 2), _s(0.05), np.int8(10), _q(np.int8, 3, 3), _s(0.09), np.int8(0)]
    check_ms("QLinearConcat", inputs, {"axis": -1}, const=[0, 1, 3, 4, 6, 7])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("channels_last", [0, 1])
def test_qlinear_global_average_pool(dtype, channels_last):
    zero = 128 if dtype == np.uint8 else 0
    x = _q(dtype, 2, 3, 5, 7) if not channels_last else _q(dtype, 2, 5, 7, 3)
    check_ms("QLinearGlobalAveragePool", [x, _s(0.05), dtype(zero + 9), _s(0.03), dtype(zero - 5)],
             {"channels_last": channels_last}, const=[1, 2, 3, 4], compiled=channels_last == 0)


@pytest.mark.parametrize("attrs", [{"kernel_shape": [3, 3]},
                                   {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
                                   {"kernel_shape": [2, 3], "pads": [1, 0, 1, 1], "count_include_pad": 1},
                                   {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
                                   {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "channels_last": 1},
                                   {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1,
                                    "count_include_pad": 1}])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qlinear_average_pool(attrs, dtype):
    zero = 128 if dtype == np.uint8 else 0
    x = _q(dtype, 1, 3, 7, 8) if not attrs.get("channels_last") else _q(dtype, 1, 7, 8, 3)
    check_ms("QLinearAveragePool", [x, _s(0.05), dtype(zero + 9), _s(0.045), dtype(zero - 5)], attrs,
             const=[1, 2, 3, 4], compiled=dtype == np.uint8 and "pads" in attrs)


def test_qlinear_average_pool_1d():
    check_ms("QLinearAveragePool", [_q(np.uint8, 2, 3, 9), _s(0.05), np.uint8(128), _s(0.04), np.uint8(120)],
             {"kernel_shape": [3], "strides": [2]}, const=[1, 2, 3, 4])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("opset,axis,shape", [(13, -1, (3, 7)), (13, 1, (2, 5, 3)), (12, 1, (2, 3, 2)),
                                              (13, -1, (2, 40))])
def test_qlinear_softmax(dtype, opset, axis, shape):
    y_zp = dtype(0) if dtype == np.uint8 else dtype(-128)
    check_ms("QLinearSoftmax", [_q(dtype, *shape), _s(0.08), dtype(0), _s(1 / 256), y_zp],
             {"opset": opset, "axis": axis}, const=[1, 2, 3, 4], compiled=opset == 13 and axis == -1 and shape[1] == 7)


def check_open_dims(op, inputs, attrs, const, open_dims, sizes, compiled=True, n_out=1):
    """The node compiled once with the dimensions ``open_dims`` ({input index: {axis: symbol}})
    symbolic, against onnxruntime at every input set of ``sizes`` (lists of inputs as for
    check_ms, the constants the same)."""
    model, _ = ms_model(op, inputs, attrs, const=const, n_out=n_out)
    for k, axes in open_dims.items():
        (vi,) = [i for i in model.graph.input if i.name == f"in{k}"]
        for ax, name in axes.items():
            vi.type.tensor_type.shape.dim[ax].dim_param = name
    g = ember.from_onnx(model)
    mod = ember.compile(model, cflags=("-O1",)) if compiled else None
    for ins in sizes:
        _, feeds = ms_model(op, ins, attrs, const=const, n_out=n_out)
        want = run_onnxruntime(model, feeds)
        assert_same(ember.graph.interpreter.run_graph(g, feeds), want, 1e-5, 1e-5)
        if mod:
            assert_same(list(mod.run(feeds).values()), want, 1e-5, 1e-5)


def test_quantized_pools_softmax_and_products_over_open_dims():
    u8 = np.uint8
    pool = [_s(0.05), u8(137), _s(0.03), u8(123)]
    check_open_dims("QLinearGlobalAveragePool", [_q(u8, 2, 3, 5, 7)] + pool, {}, [1, 2, 3, 4],
                    {0: {0: "N", 2: "H", 3: "W"}}, [[_q(u8, *s)] + pool for s in ((1, 3, 1, 1), (2, 3, 5, 7), (1, 3, 9, 4))])
    check_open_dims("QLinearAveragePool", [_q(u8, 2, 3, 7, 8)] + pool, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
                    [1, 2, 3, 4], {0: {0: "N"}}, [[_q(u8, s, 3, 7, 8)] + pool for s in (1, 3)])
    check_open_dims("QLinearSoftmax", [_q(u8, 2, 7)] + [_s(0.08), u8(0), _s(1 / 256), u8(0)], {"opset": 13, "axis": -1},
                    [1, 2, 3, 4], {0: {0: "N"}},
                    [[_q(u8, s, 7), _s(0.08), u8(0), _s(1 / 256), u8(0)] for s in (1, 5)])
    b = _q(u8, 6, 4)
    check_open_dims("MatMulIntegerToFloat", [_q(u8, 2, 3, 6), b, _s(0.05), _s(0.02), u8(120), u8(130)], {},
                    [1, 2, 3, 4, 5], {0: {0: "B", 1: "S"}},
                    [[_q(u8, *s), b, _s(0.05), _s(0.02), u8(120), u8(130)] for s in ((1, 1, 6), (2, 5, 6))])


@pytest.mark.parametrize("b_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("form", ["quantized", "float", "bias_trans", "per_column"])
def test_qgemm(b_dtype, form):
    m, k, n = 3, 10, 5
    a = _q(np.uint8, m, k)
    b = _q(b_dtype, n, k) if form == "bias_trans" else _q(b_dtype, k, n)
    bz = b_dtype(3) if b_dtype == np.int8 else b_dtype(130)
    b_scale, b_zp = _s(0.02), bz
    if form == "per_column":
        b_scale = np.linspace(0.01, 0.03, n).astype(np.float32)
        b_zp = np.full(n, bz, dtype=b_dtype)
    inputs = [a, _s(0.05), np.uint8(120), b, b_scale, b_zp]
    attrs = {"alpha": 0.8}
    if form == "bias_trans":
        inputs.append(np.random.default_rng(3).integers(-500, 500, n).astype(np.int32))
        attrs["transB"] = 1
    else:
        inputs.append(None)
    if form != "float":
        inputs += [_s(0.2), np.uint8(128)]
    check_ms("QGemm", inputs, attrs, const=[1, 2, 3, 4, 5, 6, 7, 8], atol=1e-6, rtol=1e-6,
             compiled=form == "quantized")


def test_qgemm_signed_activations():
    a, b = _q(np.int8, 4, 6), _q(np.int8, 6, 3)
    check_ms("QGemm", [a, _s(0.05), np.int8(-3), b, _s(0.02), np.int8(0), None, _s(0.1), np.int8(5)],
             const=[1, 2, 3, 4, 5, 7, 8])


@pytest.mark.parametrize("b_dtype", [np.uint8, np.int8])
def test_matmul_integer_to_float(b_dtype):
    a, b = _q(np.uint8, 2, 3, 8), _q(b_dtype, 8, 4)
    bz = b_dtype(2) if b_dtype == np.int8 else b_dtype(128)
    check_ms("MatMulIntegerToFloat", [a, b, _s(0.05), _s(0.02), np.uint8(120), bz, rand(4)], const=[1, 2, 3, 4, 5, 6],
             compiled=b_dtype == np.int8)
    check_ms("MatMulIntegerToFloat", [a, b, _s(0.05), np.linspace(0.01, 0.02, 4).astype(np.float32)], const=[1, 3])


@pytest.mark.parametrize("b_dtype", [np.uint8, np.int8])
def test_dynamic_quantize_matmul(b_dtype):
    b = _q(b_dtype, 8, 6)
    bz = b_dtype(0) if b_dtype == np.int8 else b_dtype(128)
    for a in (rand(3, 8), rand(2, 3, 8, lo=0.1, hi=2.0), np.zeros((2, 8), np.float32)):
        check_ms("DynamicQuantizeMatMul", [a, b, _s(0.03), bz, rand(6)], const=[1, 2, 3, 4],
                 compiled=b_dtype == np.int8 and a.ndim == 2 and a.any())
    check_ms("DynamicQuantizeMatMul", [rand(3, 8), b, np.linspace(0.01, 0.03, 6).astype(np.float32)], const=[1, 2])


@pytest.mark.parametrize("mask", [False, True])
def test_qattention(mask):
    b, s, d, n = 2, 4, 16, 2
    x, w = _q(np.uint8, b, s, d), _q(np.int8, d, 3 * d)
    inputs = [x, w, rand(3 * d), _s(0.02), _s(0.01), np.array([3, 4], np.int32) if mask else None,
              np.uint8(128), np.int8(0)]
    check_ms("QAttention", inputs, {"num_heads": n, "unidirectional": int(mask)}, const=[1, 2, 3, 4, 6, 7],
             compiled=mask)


def test_qembed_layer_norm():
    b, s, h, vocab = 2, 5, 8, 11
    rng = np.random.default_rng(4)
    ids = rng.integers(0, vocab, (b, s)).astype(np.int32)
    seg = rng.integers(0, 2, (b, s)).astype(np.int32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int32)
    tables = [_q(np.uint8, vocab, h), _q(np.uint8, 7, h), _q(np.uint8, 2, h), _q(np.uint8, h), _q(np.uint8, h)]
    scales = [_s(v) for v in (0.02, 0.01, 0.03, 0.01, 0.005)]
    zps = [np.uint8(v) for v in (128, 120, 130, 0, 128)]
    check_ms("QEmbedLayerNormalization", [ids, seg] + tables + [mask] + scales + zps, {"epsilon": 1e-5},
             const=list(range(2, 7)) + list(range(8, 18)), n_out=2)


# ---- models onnxruntime's quantization tools write -------------------------------------------

def _qoperator_convnet():
    """Conv, residual Add, x * sigmoid(x), LeakyRelu, Concat, AveragePool, GlobalAveragePool, Gemm,
    Softmax: each has a QOperator form."""
    from onnx import TensorProto as TP

    m = _Builder(1)
    m.weight("c1", 8, 3, 3, 3), m.weight("b1", 8), m.weight("c2", 8, 8, 3, 3), m.weight("b2", 8)
    m.weight("fw", 16, 10), m.weight("fb", 10)
    m.node("Conv", ["x", "c1", "b1"], ["y1"], pads=[1, 1, 1, 1]), m.node("Relu", ["y1"], ["r1"])
    m.node("Conv", ["r1", "c2", "b2"], ["y2"], pads=[1, 1, 1, 1]), m.node("Add", ["y2", "r1"], ["s2"])
    m.node("Sigmoid", ["s2"], ["sg"]), m.node("Mul", ["s2", "sg"], ["sw"]), m.node("LeakyRelu", ["sw"], ["lr"], alpha=0.1)
    m.node("Concat", ["lr", "r1"], ["cat"], axis=1)
    m.node("AveragePool", ["cat"], ["ap"], kernel_shape=[2, 2], strides=[2, 2])
    m.node("GlobalAveragePool", ["ap"], ["gp"]), m.node("Flatten", ["gp"], ["fl"])
    m.node("Gemm", ["fl", "fw", "fb"], ["logits"]), m.node("Softmax", ["logits"], ["prob"], axis=-1)
    return m.model([("x", TP.FLOAT, [1, 3, 8, 8])], ["prob"])


def test_static_qoperator_model_bit_exact(tmp_path):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32)}
                            for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp_path / "net.onnx", tmp_path / "net.q.onnx"
    onnx.save(_qoperator_convnet(), src)
    quantize_static(src, dst, Samples(), quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    q = onnx.load(dst)
    assert {"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearAveragePool",
            "QLinearGlobalAveragePool", "QGemm", "QLinearSoftmax"} <= _ms_ops(q)
    module = ember.compile(q)
    for seed in range(3):
        feeds = {"x": np.random.default_rng(10 + seed).standard_normal((1, 3, 8, 8)).astype(np.float32)}
        want = run_onnxruntime(q, feeds)
        np.testing.assert_array_equal(run_ember(q, feeds)[0], want[0])
        np.testing.assert_array_equal(module.run(feeds)["prob"], want[0])


def _bert_feeds():
    rng = np.random.default_rng(5)
    return {"input_ids": rng.integers(0, 30, (2, 6)), "segment_ids": rng.integers(0, 2, (2, 6)),
            "input_mask": (np.arange(6)[None] < np.array([[4], [6]])).astype(np.int64)}


def test_dynamic_quantized_bert(tmp_path):
    import onnx
    from onnx import TensorProto as TP
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    onnx.save(_tiny_bert(), tmp_path / "bert.onnx")
    # quantized, then fused by onnxruntime's extended optimizations: DynamicQuantizeMatMul,
    # MatMulIntegerToFloat next to SkipLayerNormalization, Gelu, FusedMatMul
    quantize_dynamic(tmp_path / "bert.onnx", tmp_path / "bert.dq.onnx", weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TP.FLOAT})
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "bert.dq.opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(tmp_path / "bert.dq.onnx"), so, providers=["CPUExecutionProvider"])
    fused = onnx.load(so.optimized_model_filepath)
    assert {"DynamicQuantizeMatMul", "MatMulIntegerToFloat"} <= _ms_ops(fused)
    _compare_compiled(fused, _bert_feeds())
    # fused by the transformer optimizer, then quantized: QAttention, QEmbedLayerNormalization
    opt = optimize_model(str(tmp_path / "bert.onnx"), model_type="bert", num_heads=2, hidden_size=16, opt_level=0)
    opt.save_model_to_file(str(tmp_path / "bert.opt.onnx"))
    quantize_dynamic(tmp_path / "bert.opt.onnx", tmp_path / "bert.opt.dq.onnx", weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TP.FLOAT})
    q = onnx.load(tmp_path / "bert.opt.dq.onnx")
    assert {"QAttention", "QEmbedLayerNormalization"} <= _ms_ops(q)
    _compare_compiled(q, _bert_feeds())


def test_refusals_name_what_is_missing():
    from ember.errors import InvalidModelError

    refused("FusedConv", [rand(1, 2, 4, 4), rand(2, 2, 1, 1)], {"activation": "Softplus"}, match="Softplus")
    inputs, attrs, _ = _gqa(1, 2, 2, 2, 16, 0, 2, [1], {"qk_output": 1})
    refused("GroupQueryAttention", inputs, attrs, n_out=3, match="qk_output")
    refused("RotaryEmbedding", [rand(1, 2, 8), np.array([0], np.int64), rand(4, 4), rand(4, 4)],
            {"is_packed_batching": 1}, match="is_packed_batching")
    # not translated at all: named in the unsupported-op error
    refused("QLinearWhere", [_q(np.uint8, 4)], match="QLinearWhere")
    # a table needs its scales at compile time
    model, _ = ms_model("QLinearSigmoid", [_q(np.uint8, 4), _s(0.1), np.uint8(128), _s(1 / 256), np.uint8(0)],
                        const=[2, 3, 4])
    with pytest.raises(InvalidModelError, match="X_scale"):
        ember.from_onnx(model)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("w_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_column", [False, True])
def test_dynamic_quantize_lstm(direction, w_dtype, per_column):
    seq, batch, inp, h = 3, 2, 5, 4
    nd = 2 if direction == "bidirectional" else 1
    w, r = _q(w_dtype, nd, inp, 4 * h), _q(w_dtype, nd, h, 4 * h)
    shape = (nd, 4 * h) if per_column else (nd,)
    zero = 0 if w_dtype == np.int8 else 128
    ws, rs = np.full(shape, 0.01, np.float32), np.full(shape, 0.02, np.float32)
    if per_column:
        ws = ws * np.linspace(0.5, 1.5, 4 * h, dtype=np.float32)
    wz, rz = np.full(shape, zero, w_dtype), np.full(shape, zero, w_dtype)
    inputs = [rand(seq, batch, inp), w, r, rand(nd, 8 * h), None, rand(nd, batch, h), rand(nd, batch, h), None,
              ws, wz, rs, rz]
    model, feeds = ms_model("DynamicQuantizeLSTM", inputs, {"hidden_size": h, "direction": direction},
                            const=[1, 2, 3, 8, 9, 10, 11], n_out=3)
    # onnxruntime quantizes the hidden state of each batch row on its own when it has a thread per row
    so = ort.SessionOptions()
    so.intra_op_num_threads = batch
    want = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    assert_same(run_ember(model, feeds), want, 1e-5, 1e-5)
    if direction == "forward" and w_dtype == np.int8 and not per_column:
        assert_same(list(ember.compile(model, cflags=("-O1",)).run(feeds).values()), want, 1e-5, 1e-5)


def test_symbolic_batch_and_sequence():
    # EmbedLayerNormalization's mask index feeding Attention, over [batch, seq] inputs: one
    # compile, run at several sizes
    from onnx import TensorProto as TP
    from onnx import numpy_helper

    from ember.graph.interpreter import run_graph

    h, vocab, heads = 8, 13, 2
    rng = np.random.default_rng(9)
    w = {"word": rand(vocab, h), "pos": rand(16, h), "seg": rand(2, h), "gamma": rand(h), "beta": rand(h),
         "qkv_w": rand(h, 3 * h, lo=-0.5, hi=0.5), "qkv_b": rand(3 * h)}
    nodes = [helper.make_node("EmbedLayerNormalization", ["ids", "segs", "word", "pos", "seg", "gamma", "beta", "mask"],
                              ["emb", "mask_index"], domain=MS, epsilon=1e-5),
             helper.make_node("Attention", ["emb", "qkv_w", "qkv_b", "mask_index"], ["y"], domain=MS, num_heads=heads,
                              unidirectional=1)]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info(n, TP.INT32, ["batch", "seq"])
                                         for n in ("ids", "segs", "mask")],
                          [helper.make_tensor_value_info("y", TP.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for n, a in w.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    graph = ember.from_onnx(model)
    assert graph.bounds == {"seq": 16}                        # the position table's length
    module = ember.compile(model, bounds={"batch": 4}, cflags=("-O1",))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for b, s in [(1, 3), (2, 7), (4, 16)]:
        lengths = rng.integers(1, s + 1, (b, 1))
        feeds = {"ids": rng.integers(0, vocab, (b, s)).astype(np.int32), "segs": rng.integers(0, 2, (b, s)).astype(np.int32),
                 "mask": (np.arange(s)[None] < lengths).astype(np.int32)}
        want = sess.run(None, feeds)
        assert_same([np.asarray(a) for a in run_graph(graph, feeds)], want, 1e-5, 1e-5)
        assert_same(list(module.run(feeds).values()), want, 1e-5, 1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_contrib_quantize_dequantize_linear(dtype):
    x = rand(2, 3, 4, lo=-3, hi=3)
    zero = dtype(np.iinfo(dtype).max // 2 + 1) if np.iinfo(dtype).min == 0 else dtype(-3)
    check_ms("QuantizeLinear", [x, _s(0.02), zero], const=[1, 2])
    check_ms("QuantizeLinear", [x, np.array([0.01, 0.02, 0.03], np.float32), np.full(3, zero, dtype)], {"axis": 1},
             const=[1, 2])
    check_ms("DequantizeLinear", [_q(dtype, 2, 3, 4), _s(0.02), zero], const=[1, 2])


def _pack(codes, bits):
    """Codes [..., n] packed low bits first into bytes [..., n * bits / 8]."""
    per = 8 // bits
    c = codes.reshape(*codes.shape[:-1], -1, per).astype(np.uint8)
    return np.bitwise_or.reduce(c << (np.arange(per, dtype=np.uint8) * bits), axis=-1).astype(np.uint8)


@pytest.mark.parametrize("bits", [4, 8, 2])
@pytest.mark.parametrize("zp_form", ["none", "packed", "float"])
def test_matmul_nbits(bits, zp_form):
    if bits == 8 and zp_form == "float":
        return  # onnxruntime's CPU kernel refuses float zero points for 8-bit codes
    k, n, block = 40, 6, 16                    # K not a multiple of the block: the last block is padded
    blocks = -(-k // block)
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, (n, blocks, block))
    scales = rng.uniform(0.01, 0.1, n * blocks).astype(np.float32)
    zp = None
    if zp_form == "packed":
        zcodes = rng.integers(0, 1 << bits, (n, blocks))
        row = -(-blocks * bits // 8) * (8 // bits)
        zp = _pack(np.pad(zcodes, ((0, 0), (0, row - blocks))), bits).reshape(-1)
    elif zp_form == "float":
        zp = rng.uniform(0, (1 << bits) - 1, n * blocks).astype(np.float32)
    inputs = [rand(2, 3, k), _pack(codes, bits), scales, zp, None, rand(n)]
    check_ms("MatMulNBits", inputs, {"K": k, "N": n, "bits": bits, "block_size": block}, const=[1, 2, 3],
             compiled=bits == 4 and zp_form == "packed")


@pytest.mark.parametrize("softcap", [0.0, 2.0])
def test_group_query_attention_position_ids_and_bias(softcap):
    b, s, n, nkv, h, past, total = 1, 3, 2, 1, 16, 4, 7
    inputs, attrs, const = _gqa(b, s, n, nkv, h, past, total, [6], {"softcap": softcap}, rotary=True)
    inputs += [np.array([[4, 5, 9]], np.int64), rand(b, n, s, total)]
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)


@pytest.mark.parametrize("form", ["smooth", "sink"])
def test_group_query_attention_extra_logit(form):
    b, s, n, nkv, h = 2, 3, 4, 2, 16
    attrs = {"smooth_softmax": 1} if form == "smooth" else {}
    inputs, attrs, const = _gqa(b, s, n, nkv, h, 0, s, [s - 1] * b, attrs)
    if form == "sink":
        inputs += [None, None, None, None, rand(n)]
    check_ms("GroupQueryAttention", inputs, attrs, const=const, n_out=3)

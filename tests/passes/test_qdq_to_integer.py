"""``qdq_to_integer``: QDQ groups become integer kernels that compute what onnxruntime computes.

Each test builds a small QDQ model with onnx.helper, compiles it with Ember (whose pipeline runs
the pass) and compares the quantized outputs with onnxruntime's (one thread) on random inputs
chosen so that pairs of 8-bit products leave the int16 range (where onnxruntime's uint8 x int8
kernels saturate).  Where onnxruntime computes in float and Ember in integers the two may differ
by one quantized unit at a rounding tie; everywhere else they must agree exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.frontend import from_onnx
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.passes import optimize
from ember.passes.qdq_to_integer import qdq_to_integer, sgemm_k_block, uint8_activations
from ember.target import VNNI_FEATURES, host

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(7)
ONE_UNIT = 1


class QDQ:
    """A QDQ model under construction: float tensors between quantize/dequantize pairs."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, arr, base="c") -> str:
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def q(self, x: str, scale: float, zp, dtype=np.int8) -> str:
        """quantize then dequantize ``x``; returns the dequantized name."""
        s, z = self.const(np.float32(scale), "s"), self.const(np.array(zp, dtype), "z")
        qn, dn = self.name("q"), self.name("dq")
        self.nodes += [helper.make_node("QuantizeLinear", [x, s, z], [qn]),
                       helper.make_node("DequantizeLinear", [qn, s, z], [dn])]
        return dn

    def weight(self, w: np.ndarray, scale, axis=0) -> str:
        """A constant int8 weight with its dequantize (per tensor, or per channel along axis)."""
        scale = np.asarray(scale, np.float32)
        wq, s = self.const(w.astype(np.int8), "w"), self.const(scale, "ws")
        z = self.const(np.zeros(scale.shape, np.int8), "wz")
        dn = self.name("wdq")
        self.nodes.append(helper.make_node("DequantizeLinear", [wq, s, z], [dn], axis=axis))
        return dn

    def bias(self, b: np.ndarray, scale) -> str:
        bq, s = self.const(b.astype(np.int32), "b"), self.const(np.asarray(scale, np.float32), "bs")
        z = self.const(np.zeros(np.shape(scale), np.int32), "bz")
        dn = self.name("bdq")
        self.nodes.append(helper.make_node("DequantizeLinear", [bq, s, z], [dn], axis=0))
        return dn

    def op(self, op_type: str, inputs, **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def model(self, x_shape, outputs) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m


def run_both(model: onnx.ModelProto, x: np.ndarray):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = list(ember.compile(model, cflags=("-O1",)).run({"x": x}).values())
    return got, want


def assert_units(got, want, steps, units=0):
    for g, w, s in zip(got, want, steps):
        assert g.shape == w.shape
        diff = np.abs(g.astype(np.float64) - w) / s
        assert diff.max() <= units + 1e-3, f"{diff.max():.2f} quantized units apart ({(diff > 1e-3).sum()} values)"


def high_input(shape, lo=1.8, hi=2.55):
    """Floats that quantize (scale 0.01, zero point -128) to the top of the uint8 range."""
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def strong_weight(shape):
    w = RNG.integers(-127, 128, shape)
    w[..., ::2] = np.where(RNG.random(w[..., ::2].shape) < 0.5, 127, -127)  # pairs of large products
    return w


# ---- the rewrite itself --------------------------------------------------------------------------

def conv_model(c=16, o=16, k=3, pads=1, x_zp=-128, y_zp=-128, relu=False, per_channel=True, second_use=False):
    m = QDQ()
    x = m.q("x", 0.01, x_zp)
    scale = RNG.uniform(0.002, 0.004, o) if per_channel else 0.003
    w = m.weight(strong_weight((o, c, k, k)), scale)
    b = m.bias(RNG.integers(-3000, 3000, o), np.float32(0.01) * np.asarray(scale, np.float32))
    y = m.op("Conv", [x, w, b], pads=[pads] * 4)
    if relu:
        y = m.op("Relu", [y])
    outs = [m.q(y, 0.5, y_zp)]
    if second_use:      # x read twice: onnxruntime keeps it int8 and the conv in float
        outs.append(m.op("Relu", [x]))
    return m.model([1, c, 7, 7], outs)


def test_uint8_activations_rule():
    g = from_onnx(conv_model(second_use=True))
    kinds = {n.name: n.output.dtype for n in uint8_activations(g.copy()).nodes if n.op == "quantize"}
    assert sorted(kinds.values()) == ["int8", "uint8"]           # x (read twice) stays int8
    g2 = from_onnx(conv_model())
    assert all(n.output.dtype == "uint8" for n in uint8_activations(g2.copy()).nodes if n.op == "quantize")


@pytest.mark.parametrize("per_channel", [True, False])
def test_conv_group_runs_integer_kernels_and_matches_onnxruntime(per_channel):
    model = conv_model(per_channel=per_channel)
    g = optimize(from_onnx(model), 2)
    ops = g.op_histogram()
    assert "conv2d" not in ops and ops["conv2d_int"] == 1 and ops["dequantize"] == 1     # the output's
    conv = next(n for n in g.nodes if n.op == "conv2d_int")
    assert conv.attrs["saturate_pairs"] and conv.attrs["pad_value"] == 0      # uint8 zero point -128 + 128
    x = high_input((1, 16, 7, 7))
    got, want = run_both(model, x)
    assert_units(got, want, [0.5])


def test_saturation_is_what_onnxruntime_does():
    """onnxruntime's uint8 x int8 convolution saturates pairs of products on x86 without VNNI and
    sums exactly with it; Ember compiled for this machine agrees, compiled the other way it would
    not (the data makes pairs leave int16)."""
    model = conv_model()
    x = high_input((1, 16, 7, 7), 2.4, 2.55)
    got, want = run_both(model, x)
    assert_units(got, want, [0.5])
    here = host()
    features = here.features - VNNI_FEATURES if not here.int8_pairs_saturate else here.features | {"avx512_vnni"}
    other = replace(here, features=features)
    assert other.int8_pairs_saturate != here.int8_pairs_saturate
    opposite = list(ember.compile(model, target=other, cflags=("-O1",)).run({"x": x}).values())
    assert np.abs(opposite[0] - want[0]).max() > 0.5


@pytest.mark.parametrize("y_zp", [-128, 10])
def test_relu_becomes_a_clip_of_the_integers(y_zp):
    model = conv_model(relu=True, y_zp=y_zp)
    g = optimize(from_onnx(model), 2)
    assert "relu" not in g.op_histogram()
    assert ("clip" in g.op_histogram()) == (y_zp != -128)     # at the zero point -128 quantize clips already
    got, want = run_both(model, high_input((1, 16, 7, 7)))
    # onnxruntime fuses the relu only when quantize makes it redundant; else it computes in float
    # (no saturation: the sums here are exact then)
    assert_units(got, want, [0.5], 0 if y_zp == -128 else ONE_UNIT)
    conv = next(n for n in g.nodes if n.op == "conv2d_int")
    assert conv.attrs["saturate_pairs"] == (y_zp == -128)


def test_int8_activation_read_twice_stays_int8_like_onnxruntime():
    model = conv_model(second_use=True)
    g = optimize(from_onnx(model), 2)
    conv = next(n for n in g.nodes if n.op == "conv2d_int")
    assert conv.inputs[0].dtype == "int8" and not conv.attrs["saturate_pairs"]
    got, want = run_both(model, RNG.uniform(-1.2, 1.2, (1, 16, 7, 7)).astype(np.float32))
    assert_units(got[:1], want[:1], [0.5], ONE_UNIT)          # float there, exact integers here
    np.testing.assert_array_equal(got[1], want[1])


def shared_activation_model(k=64, n=40):
    """BERT's LayerNorm output: an int8 activation whose dequantize feeds two matrix products (a
    query and a key) and a residual addition, so it stays int8 (onnxruntime: float products)."""
    m = QDQ()
    x = m.q("x", 0.02, -5)
    # the products quantized as they are (quantize_static's MatMul; its bias Add is a group of
    # its own): with an int32 bias beside them onnxruntime would make them a uint8 QGemm
    outs = [m.q(m.op("MatMul", [x, m.weight(strong_weight((k, n)), RNG.uniform(0.002, 0.004, n), axis=1)]), 0.3, 7)
            for _ in range(2)]
    outs.append(m.q(m.op("Add", [x, m.op("Relu", [x])]), 0.04, 0))
    return m.model([1, 6, k], outs)


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_activation_read_by_several_products_runs_packed(vnni):
    """The products of an int8 activation shifted to uint8 (``pack_int_matmul``): one shift for
    both, exact sums (dot4 with VNNI, split weights on the multiply-add without), onnxruntime's
    float products within a unit at a rounding tie, on targets with and without VNNI."""
    model = shared_activation_model()
    here = host()
    if here.isa != "x86":
        pytest.skip("x86 targets")
    target = replace(here, features=(here.features | VNNI_FEATURES) if vnni else (here.features - VNNI_FEATURES))
    from ember.driver.pipeline import Context, run_graph as run_pipeline

    g = run_pipeline(from_onnx(model), Context(target))
    products = [n for n in g.nodes if n.op == "matmul_int_packed"]
    assert len(products) == 2 and "matmul_int" not in g.op_histogram()
    assert {n.attrs["pairs"] for n in products} == {"exact" if vnni else "split"}
    assert products[0].inputs[0] is products[1].inputs[0] and products[0].inputs[0].dtype == "uint8"
    x = RNG.uniform(-2.5, 2.5, (1, 6, 64)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = list(ember.compile(model, target=target, cflags=("-O1",)).run({"x": x}).values())
    assert_units(got, want, [0.3, 0.3, 0.04], ONE_UNIT)
    # exactly the integer sums of the unpacked graph (the reference interpreter)
    plain = optimize(from_onnx(model), 2)
    np.testing.assert_array_equal(got[0], run_graph(plain, {"x": x})[0])


def pointwise_model(c=256, o=32, hw=7, stride=1):
    m = QDQ()
    x = m.q("x", 0.02, 3)
    w = m.weight(RNG.integers(-127, 128, (o, c, 1, 1)), RNG.uniform(0.001, 0.003, o))
    y = m.op("Conv", [x, w], strides=[stride] * 2)
    return m.model([1, c, hw, hw], [m.q(y, 0.25, -4), m.op("Relu", [x])])


@pytest.mark.parametrize("c,stride", [(256, 1), (384, 2), (96, 1)])
def test_pointwise_conv_onnxruntime_runs_in_float_is_summed_like_it(c, stride):
    """x is read twice, so onnxruntime runs this 1x1 conv in float (MLAS SGEMM, reduction in
    blocks): Ember does the same sums in the same order and matches exactly."""
    model = pointwise_model(c=c, stride=stride)
    g = optimize(from_onnx(model), 2)
    blocks = -(-c // sgemm_k_block((7 // stride + (7 % stride > 0)) ** 2, c))
    split = next((n for n in g.nodes if n.op == "conv2d_split_k"), None)
    assert (split is not None) == (blocks > 1) and ("conv2d" in g.op_histogram()) == (blocks == 1)
    got, want = run_both(model, RNG.uniform(-2.5, 2.5, (1, c, 7, 7)).astype(np.float32))
    assert_units(got[:1], want[:1], [0.25])


def test_sgemm_k_block():
    assert [sgemm_k_block(n, k) for n, k in [(3136, 64), (3136, 256), (784, 512), (196, 1024), (49, 1024), (49, 2048)]] \
        == [64, 128, 128, 128, 256, 256]


def test_gemm_group():
    m = QDQ()
    x = m.q("x", 0.01, -128)
    scale = RNG.uniform(0.002, 0.004, 24).astype(np.float32)
    w = m.weight(strong_weight((24, 64)), scale)     # [N, K], per row
    b = m.bias(RNG.integers(-2000, 2000, 24), np.float32(0.01) * scale)
    y = m.op("Gemm", [x, w, b], transB=1)
    model = m.model([3, 64], [m.q(y, 0.3, -128)])
    g = optimize(from_onnx(model), 2)
    assert g.op_histogram().get("matmul_int") == 1 and "matmul" not in g.op_histogram()
    got, want = run_both(model, high_input((3, 64)))
    assert_units(got, want, [0.3])


def test_pools_and_residual_add():
    m = QDQ()
    x = m.q("x", 0.01, -128)
    p = m.q(m.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), 0.01, -128)
    a = m.q(m.op("Add", [p, m.q(m.op("Relu", [p]), 0.02, 5)]), 0.03, -20)
    gap = m.q(m.op("GlobalAveragePool", [a]), 0.015, -100)
    t = m.q(m.op("Transpose", [m.q(m.op("MaxPool", [m.q(m.op("Relu", [x]), 0.01, -128)], kernel_shape=[2, 2]),
                                   0.01, -128)], perm=[0, 2, 3, 1]), 0.01, -128)
    model = m.model([1, 8, 9, 9], [gap, t])
    g = optimize(from_onnx(model), 2)
    ops = g.op_histogram()
    # the mean is an int32 sum, the second pool and the transpose run on the integers; the
    # first pool and the addition mix int8 and uint8 operands and stay float, as in onnxruntime
    assert "reduce_mean" not in ops and ops["reduce_sum"] == 1 and ops["max_pool2d"] == 2
    assert next(n for n in g.nodes if n.op == "transpose").inputs[0].dtype == "uint8"
    got, want = run_both(model, RNG.uniform(-1.28, 1.27, (1, 8, 9, 9)).astype(np.float32))
    assert_units(got, want, [0.015, 0.01])


def test_bias_at_another_scale_than_the_products_stays_float():
    """The int32 bias is added at x_scale * w_scale: one quantized at another scale (here twice
    that) would mean another number there, so the group keeps its float form and its result."""
    m = QDQ()
    x = m.q("x", 0.01, -128)
    w = m.weight(strong_weight((24, 64)), 0.003, axis=1)
    b = m.bias(RNG.integers(-20000, 20000, 24), np.float32(2 * 0.01 * 0.003))
    y = m.op("Gemm", [x, w, b], transB=1)
    model = m.model([3, 64], [m.q(y, 0.3, -128)])
    g = optimize(from_onnx(model), 2)
    assert "matmul_int" not in g.op_histogram()
    x_in = high_input((3, 64))
    got = list(ember.compile(model).run({"x": x_in}).values())[0]
    want = run_graph(from_onnx(model), {"x": x_in})[0]
    assert_units([got], [want], [0.3], units=ONE_UNIT)


def test_groups_it_cannot_read_stay_float():
    """A float bias, a per-channel activation scale, a weight with a zero point: untouched."""
    m = QDQ()
    x = m.q("x", 0.01, 0)
    w = m.weight(RNG.integers(-100, 100, (8, 4, 3, 3)), 0.01)
    y = m.op("Conv", [x, w, m.const(RNG.standard_normal(8).astype(np.float32), "fb")])
    model = m.model([1, 4, 6, 6], [m.q(y, 0.1, 0)])
    g = qdq_to_integer(from_onnx(model))
    assert "conv2d" in g.op_histogram() and "conv2d_int" not in g.op_histogram()


def test_pass_leaves_float_graphs_alone():
    b = GraphBuilder("f")
    x = b.input("x", TensorType((1, 3, 8, 8), "float32"))
    y = b.op("relu", [b.op("conv2d", [x, b.const(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32))])])
    g = b.finish([y])
    assert str(qdq_to_integer(g)) == str(g)

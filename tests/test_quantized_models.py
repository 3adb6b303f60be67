"""Quantized models: float models quantized by onnxruntime.quantization.quantize_static (QDQ
format, seeded random calibration) compile and compute what onnxruntime computes on the same
quantized model, bit for bit, on CPUs with and without VNNI (Ember saturates pairs of 8-bit
products exactly where onnxruntime's kernels do; see ember.passes.pair_saturation): a small
residual conv net built here, and the ResNet-50 of ``make models``.

The ResNet-50 test quantizes ``$EMBER_MODELS_DIR/resnet50.onnx`` into a temporary folder
(benchmarks/quantized.py does the same into build/models and also times both engines).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember

pytest.importorskip("onnxruntime.quantization")

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))
RNG = np.random.default_rng(11)


def _bench():
    spec = importlib.util.spec_from_file_location("ember_bench_quantized", ROOT / "benchmarks" / "quantized.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def onnxruntime_run(path: Path, inputs: dict) -> np.ndarray:
    from ember.benchmark import onnxruntime_session

    return onnxruntime_session(path, threads=1).run(None, inputs)[0]


def residual_net(path: Path) -> None:
    """A small float ResNet: a stem, a bottleneck with a projection, an identity bottleneck wide
    enough that onnxruntime sums its first 1x1 convolution in two blocks, pooling, a classifier."""
    nodes, inits = [], []

    def conv(x, cin, cout, k, name, relu=True, stride=1):
        w = (RNG.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (RNG.standard_normal(cout) * 0.05).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.y"], pads=[k // 2] * 4,
                                      strides=[stride] * 2))
        if not relu:
            return f"{name}.y"
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
        return f"{name}.r"

    def add_relu(a, b, name):
        nodes.extend([helper.make_node("Add", [a, b], [f"{name}.s"]), helper.make_node("Relu", [f"{name}.s"], [name])])
        return name

    a0 = conv("x", 3, 32, 3, "stem")
    body = conv(conv(conv(a0, 32, 16, 1, "b1.0"), 16, 16, 3, "b1.1"), 16, 256, 1, "b1.2", relu=False)
    a1 = add_relu(body, conv(a0, 32, 256, 1, "b1.down", relu=False), "a1")
    body = conv(conv(conv(a1, 256, 16, 1, "b2.0"), 16, 16, 3, "b2.1"), 16, 256, 1, "b2.2", relu=False)
    a2 = add_relu(body, a1, "a2")
    wf = (RNG.standard_normal((10, 256)) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(wf, "fc.w"), numpy_helper.from_array(np.zeros(10, np.float32), "fc.b")]
    nodes += [helper.make_node("MaxPool", [a2], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("GlobalAveragePool", ["mp"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "resnet_tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("per_channel", [False, True])
def test_small_quantized_convnet_matches_onnxruntime(tmp_path, per_channel):
    float_path, q_path = tmp_path / "net.onnx", tmp_path / "net.qdq.onnx"
    residual_net(float_path)
    _bench().quantize_model(float_path, q_path, per_channel=per_channel, samples=8, seed=3)
    module = ember.compile(q_path)
    module.num_threads = 1
    g = ember.from_onnx(q_path)
    assert g.op_histogram()["dequantize"] > 10          # the QDQ form, read as such
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)
        got, want = module.run({"x": x})["logits"], onnxruntime_run(q_path, {"x": x})
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_resnet50_matches_onnxruntime(tmp_path, per_channel, record_property):
    src = MODELS / "resnet50.onnx"
    if not src.exists():
        pytest.skip(f"{src} not built (make models)")
    bench = _bench()
    q_path = bench.quantize_model(src, tmp_path / "resnet50.qdq.onnx", per_channel=per_channel)
    inputs = dict(np.load(MODELS / "resnet50.inputs.npz"))
    module = ember.compile(q_path)
    module.num_threads = 1
    got = list(module.run(inputs).values())[0]
    want = onnxruntime_run(q_path, inputs)
    units = bench.quantized_units(got, want)
    rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    record_property("max_quantized_units", units)
    record_property("relative_error", rel)
    assert np.array_equal(got.argmax(-1), want.argmax(-1))
    assert units == 0 and rel == 0, (units, rel)
    # integer kernels where onnxruntime has them (33 QLinearConv and a QGemm on this model)
    from ember.passes import optimize

    ops = optimize(ember.from_onnx(q_path), 2).op_histogram()
    assert ops["conv2d_int"] >= 30 and ops["matmul_int"] == 1


def token_model(path: Path) -> None:
    """Two inputs, one of them integer: token ids index an embedding table (Gather), a float
    input is added, a MatMul and a Relu follow."""
    table = RNG.standard_normal((50, 16)).astype(np.float32)
    w = (RNG.standard_normal((16, 8)) * 0.25).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]),
             helper.make_node("Add", ["emb", "x"], ["h"]),
             helper.make_node("MatMul", ["h", "w"], ["m"]),
             helper.make_node("Relu", ["m"], ["y"])]
    g = helper.make_graph(nodes, "tokens", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 6]),
                                            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8])],
                          [numpy_helper.from_array(table, "table"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


def test_benchmark_quantizes_and_times_models_with_integer_inputs(tmp_path):
    """benchmarks/quantized.py on a model with several inputs, one of them token ids: generated
    ids stay below the table's row count, the quantized model runs in both engines, and the
    comparison gives CPU times and latencies for Ember's int8, onnxruntime's int8 and Ember's fp32."""
    import onnx

    bench = _bench()
    float_path, q_path = tmp_path / "tokens.onnx", tmp_path / "tokens.qdq.onnx"
    token_model(float_path)
    model = onnx.load(str(float_path))
    assert bench.integer_bounds(model) == {"ids": 50}
    feeds = bench.generated_inputs(model, seed=1)
    assert feeds["ids"].dtype == np.int64 and feeds["ids"].max() < 50 and feeds["x"].dtype == np.float32
    bench.quantize_model(float_path, q_path, samples=3)
    assert ember.from_onnx(q_path).op_histogram()["dequantize"] >= 2
    r = bench.compare(q_path, feeds, runs=2, rounds=1, float_path=float_path, threads=2, latency_runs=3, block=2)
    assert r["units"] <= 1 and r["rel"] < 0.05, r
    engines = {"ember int8", "onnxruntime int8", "ember fp32"}
    assert set(r["cpu_ms"]) == engines and set(r["latency_ms"]) == engines
    assert all(lo <= med <= hi for med, lo, hi in r["latency_ms"].values())

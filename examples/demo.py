"""Ember in one page: build a small CNN, compile it, run it, check it, time it.

    make demo            # or: .venv/bin/python examples/demo.py

The model is written with onnx.helper (no framework needed): two convolutions with ReLU, a
residual block, global average pooling and a fully connected layer, with random weights from a
fixed seed.  Ember's output is checked against onnxruntime's, and both are timed with the same
number of threads.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.benchmark import TimingStats, onnxruntime_session, time_runs


def build_model(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weights = []

    def param(name, shape, fan_in=None):
        scale = np.sqrt(2.0 / fan_in) if fan_in else 0.05
        weights.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def conv(x, out, cin, cout, stride=1):
        w = param(f"{out}.weight", (cout, cin, 3, 3), fan_in=cin * 9)
        b = param(f"{out}.bias", (cout,))
        return helper.make_node("Conv", [x, w, b], [out], name=out, kernel_shape=[3, 3],
                                strides=[stride, stride], pads=[1, 1, 1, 1])

    nodes = [
        conv("image", "conv1", 3, 16), helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        conv("relu1", "conv2", 16, 32, stride=2), helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        conv("relu2", "conv3", 32, 32), helper.make_node("Relu", ["conv3"], ["relu3"], name="relu3"),
        conv("relu3", "conv4", 32, 32),
        helper.make_node("Add", ["conv4", "relu2"], ["residual"], name="residual"),
        helper.make_node("Relu", ["residual"], ["relu4"], name="relu4"),
        helper.make_node("GlobalAveragePool", ["relu4"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", param("fc.weight", (10, 32), fan_in=32), param("fc.bias", (10,))],
                         ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "demo_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ember-demo")
    onnx.checker.check_model(model)
    return model


def main() -> int:
    model = build_model()
    print(f"model: {len(model.graph.node)} ONNX nodes, "
          f"{sum(int(np.prod(t.dims)) for t in model.graph.initializer):,} weights")

    start = time.perf_counter()

    def progress(step, *detail):
        print(f"  [{time.perf_counter() - start:6.2f} s] {step}", *detail)

    print("compiling:")
    module = ember.compile(model, target="cpu", opt_level=3, progress=progress)
    print(f"compiled in {time.perf_counter() - start:.2f} s; inputs {module.input_names}, "
          f"outputs {module.output_names}, arena {module.arena_bytes:,} bytes")

    image = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ours = module.run({"image": image})["logits"]

    threads = min(4, os.cpu_count() or 1)
    session = onnxruntime_session(model, threads)
    theirs = session.run(None, {"image": image})[0]
    err = float(np.max(np.abs(ours - theirs)))
    print(f"logits: {np.array2string(ours[0, :5], precision=4)} ...")
    print(f"max abs error vs onnxruntime: {err:.2e}")

    module.num_threads = threads
    # the engines take turns in blocks of 20 runs, so that a busy moment of the machine slows
    # both alike
    times = time_runs({"ember": module.run, "onnxruntime": lambda feeds: session.run(None, feeds)},
                      {"image": image}, warmup=20, runs=200, block=20)
    t_ember, t_ort = (TimingStats(tuple(t * 1e3 for t in times[k])) for k in ("ember", "onnxruntime"))
    print(f"latency with {threads} thread(s), 200 runs each (median, p10-p90):")
    print(f"  ember        {t_ember.median:8.3f} ms  ({t_ember.p10:.3f}-{t_ember.p90:.3f})")
    print(f"  onnxruntime  {t_ort.median:8.3f} ms  ({t_ort.p10:.3f}-{t_ort.p90:.3f})")
    print(f"  ember / onnxruntime = {t_ember.median / t_ort.median:.2f}")

    if not err <= 1e-3:
        print("FAILED: Ember's output differs from onnxruntime's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

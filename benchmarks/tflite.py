"""Keras applications (random weights) in one run next to their frameworks' own runtimes: float
through TensorFlow (a traced tf.function), the TFLite interpreter (its default kernels, XNNPACK)
and Ember (``ember.from_keras``), and fully int8-quantized through the TFLite interpreter and
Ember (``ember.from_tflite``), every engine on the same number of threads.

    python benchmarks/tflite.py --size 224 --threads 2 --runs 20

Prints one markdown row per model, form and engine: median, p10 and p90 latency, Ember's compile
time, and Ember's difference from the framework (float: relative error against TensorFlow; int8:
the largest difference in quantization steps and the share of outputs off against the
interpreter's default kernels, which round some steps differently from the reference kernels
Ember follows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402  (benchmarks/cpu.py: the timing rounds)

APPLICATIONS = {"mobilenetv2": "MobileNetV2", "mobilenetv3small": "MobileNetV3Small",
                "efficientnetb0": "EfficientNetB0", "resnet50": "ResNet50"}


def build(name: str, size: int):
    import keras

    keras.utils.set_random_seed(0)
    return getattr(keras.applications, APPLICATIONS[name])(input_shape=(size, size, 3), weights=None)


def to_int8(model, size: int) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]
                                           for _ in range(4))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def interpreter(data: bytes, threads: int):
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def run(x):
        it.set_tensor(i["index"], x)
        it.invoke()
        return it.get_tensor(o["index"])
    return run, i


def ember_module(graph, threads: int):
    import ember

    t0 = time.perf_counter()
    module = ember.compile(graph)
    seconds = time.perf_counter() - t0
    module.num_threads = threads
    name = module.input_names[0]
    return (lambda x: list(module.run({name: x}).values())[0]), seconds


def bench(name: str, a):
    """The rows of one model, each as soon as it is measured."""
    import tensorflow as tf

    import ember

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = build(name, a.size)
    x = np.random.default_rng(1).uniform(-1, 1, (1, a.size, a.size, 3)).astype(np.float32)
    if "float" in a.forms:
        traced = tf.function(lambda v: model(v, training=False))
        run_tf = lambda v: traced(v).numpy()
        run_lite, _ = interpreter(tf.lite.TFLiteConverter.from_keras_model(model).convert(), a.threads)
        run_ember, compile_s = ember_module(ember.from_keras(model), a.threads)
        ref = run_tf(x)
        err = float(np.abs(run_ember(x) - ref).max() / max(np.abs(ref).max(), 1e-30))
        times = cpu.time_runs({"tensorflow": run_tf, "tflite": run_lite, "ember": run_ember}, x, a.warmup, a.runs)
        for eng, ts in times.items():
            yield (name, "float32", eng, ts, compile_s if eng == "ember" else None,
                   f"rel. error {err:.1e}" if eng == "ember" else "")
    if "int8" in a.forms:
        data = to_int8(model, a.size)
        run_lite, detail = interpreter(data, a.threads)
        s, z = detail["quantization"]
        q = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
        run_ember, compile_s = ember_module(ember.from_tflite(data), a.threads)
        diff = np.abs(run_ember(q).astype(np.int32) - run_lite(q).astype(np.int32))
        times = cpu.time_runs({"tflite": run_lite, "ember": run_ember}, q, a.warmup, a.runs)
        for eng, ts in times.items():
            yield (name, "int8", eng, ts, compile_s if eng == "ember" else None,
                   f"max {diff.max()} steps, {(diff > 0).mean():.1%} off" if eng == "ember" else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(APPLICATIONS), choices=list(APPLICATIONS))
    ap.add_argument("--forms", nargs="+", default=["float", "int8"], choices=["float", "int8"])
    ap.add_argument("--size", type=int, default=224, help="image height and width")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args(argv)
    print(f"| model ({a.size}x{a.size}, batch 1, {a.threads} threads) | form | engine | median ms | p10 | p90 "
          f"| Ember compile s | Ember vs framework |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        for model, form, eng, ts, compile_s, note in bench(name, a):
            ms = np.array(ts) * 1e3
            print(f"| {model} | {form} | {eng} | {np.median(ms):.2f} | {np.percentile(ms, 10):.2f} | "
                  f"{np.percentile(ms, 90):.2f} | {'' if compile_s is None else f'{compile_s:.0f}'} | {note} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

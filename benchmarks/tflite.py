"""Keras models (random weights) in one run next to their frameworks' own runtimes: each Keras
model through TensorFlow (a traced tf.function) and Ember (``ember.from_keras``), and its TFLite
forms (float32, float16 weights, fully int8-quantized) through the TFLite interpreter (its
default kernels, XNNPACK) and Ember (``ember.from_tflite``), every engine on the same number of
threads.  The models: keras.applications MobileNetV2, MobileNetV3Small, EfficientNetB0 and
ResNet50 (batch-norm statistics measured on random images) and a Keras transformer encoder.

    python benchmarks/tflite.py --size 224 --threads 2 --runs 20

Prints one markdown row per model, form and engine: median, p10 and p90 latency, Ember's compile
time (the frontend's translation included), and Ember's difference from the framework (float:
relative error; int8: the largest difference in quantization steps and the share of outputs off
against the interpreter's default kernels, which round some steps differently, and against its
reference kernels, which Ember follows).  A form Ember cannot take gets a row with the error's first
line.
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
NAMES = list(APPLICATIONS) + ["transformer"]
FORMS = ["keras", "float32", "float16", "int8"]
TOKENS = 1000          # the transformer's vocabulary


def measured_batch_norms(model, x):
    """Batch-norm statistics measured on ``x``, layer by layer: with Keras' initial statistics
    the activations of a randomly initialized deep network vanish or explode with depth."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            h = keras.Model(model.inputs, layer.input)(x).numpy()
            axes = tuple(range(h.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, h.mean(axis=axes), h.var(axis=axes) + 1e-3])
    return model


def transformer(seq: int, dim: int, blocks: int, batch=None):
    """Token ids in, an encoder of ``blocks`` blocks (MultiHeadAttention with 4 heads,
    LayerNormalization, Dense with GELU), logits of every token over 10 classes out."""
    import keras

    L = keras.layers
    inp = keras.Input((seq,), dtype="int32", batch_size=batch)
    x = L.Embedding(TOKENS, dim)(inp)
    for _ in range(blocks):
        x = L.LayerNormalization()(x + L.MultiHeadAttention(4, dim // 4)(x, x))
        x = L.LayerNormalization()(x + L.Dense(dim)(L.Dense(4 * dim, activation="gelu")(x)))
    return keras.Model(inp, L.Dense(10)(x))


def build(name: str, a, batch=None):
    """The Keras model (random weights, seed 0, logits out) and its batch-1 input (``batch``:
    the transformer's input batch, open when None)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    if name == "transformer":
        return transformer(a.seq, a.dim, a.blocks, batch), rng.integers(0, TOKENS, (1, a.seq)).astype(np.int32)
    model = getattr(keras.applications, APPLICATIONS[name])(input_shape=(a.size, a.size, 3), weights=None,
                                                             classifier_activation=None)
    x = rng.uniform(-1, 1, (1, a.size, a.size, 3)).astype(np.float32)
    return measured_batch_norms(model, rng.uniform(-1, 1, (2, a.size, a.size, 3)).astype(np.float32)), x


def convert(model, form: str, x: np.ndarray) -> bytes:
    """The TFLite flatbuffer of ``model``: float32, float16 weights, or fully int8-quantized
    (int8 input and output; token ids stay int32)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if form == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif form == "int8":
        rng = np.random.default_rng(0)
        tokens = x.dtype == np.int32
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.integers(0, TOKENS, x.shape).astype(np.int32) if tokens
                                                else rng.uniform(-1, 1, x.shape).astype(np.float32)]
                                               for _ in range(4))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not tokens:
            conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def interpreter(data: bytes, threads: int, reference_kernels: bool = False):
    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    it = tf.lite.Interpreter(model_content=data, num_threads=threads, experimental_op_resolver_type=(
        resolver.BUILTIN_REF if reference_kernels else resolver.AUTO))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def run(x):
        it.set_tensor(i["index"], x)
        it.invoke()
        return it.get_tensor(o["index"])
    return run, i


def ember_module(make_graph, threads: int):
    """Ember's run function and its compile time (the frontend's translation included)."""
    import ember

    t0 = time.perf_counter()
    module = ember.compile(make_graph())
    seconds = time.perf_counter() - t0
    module.num_threads = threads
    name = module.input_names[0]
    return (lambda x: list(module.run({name: x}).values())[0]), seconds


def rel_error(out, ref) -> str:
    return f"rel. error {float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30)):.1e}"


def bench(name: str, a):
    """The rows of one model, each as soon as it is measured: (model, form, engine, latencies in
    s or None, compile s or None, note)."""
    import tensorflow as tf

    import ember

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model, x = build(name, a)
    for form in a.forms:
        if form == "keras":
            traced = tf.function(lambda v: model(v, training=False))
            framework, run_ref, feed = "tensorflow", (lambda v: traced(v).numpy()), x
            make_graph = lambda: ember.from_keras(model)
        else:
            # the transformer's TFLite forms are converted at batch 1 (same weights): fixed shapes,
            # as the applications' artifacts (with its batch open it computes its reshapes from
            # SHAPE, GATHER and REDUCE_PROD, which from_tflite folds)
            data = convert(build(name, a, batch=1)[0] if name == "transformer" else model, form, x)
            framework, (run_ref, detail) = "tflite", interpreter(data, a.threads)
            feed = x
            if detail["dtype"] == np.int8:
                s, z = detail["quantization"]
                feed = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
            make_graph = lambda: ember.from_tflite(data)
        try:
            run_ember, compile_s = ember_module(make_graph, a.threads)
        except Exception as e:          # the row says why (an op Ember lacks, ...)
            yield (name, form, "ember", None, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        out, ref = run_ember(feed), run_ref(feed)
        if ref.dtype == np.int8:
            exact = interpreter(data, a.threads, reference_kernels=True)[0](feed)
            note = ", ".join(f"{what}: max {d.max()} steps, {(d > 0).mean():.1%} off" for what, d in (
                ("default kernels", np.abs(out.astype(np.int32) - ref)),
                ("reference kernels", np.abs(out.astype(np.int32) - exact))))
        else:
            note = rel_error(out, ref)
        times = cpu.time_runs({framework: run_ref, "ember": run_ember}, feed, a.warmup, a.runs)
        for eng, ts in times.items():
            yield (name, form, eng, ts, compile_s if eng == "ember" else None, note if eng == "ember" else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=NAMES, choices=NAMES)
    ap.add_argument("--forms", nargs="+", default=FORMS, choices=FORMS,
                    help="keras: the Keras model through TensorFlow and from_keras; float32, float16 (weights), "
                         "int8: its TFLite form through the interpreter and from_tflite")
    ap.add_argument("--size", type=int, default=224, help="image height and width")
    ap.add_argument("--seq", type=int, default=128, help="the transformer's sequence length")
    ap.add_argument("--dim", type=int, default=256, help="the transformer's width")
    ap.add_argument("--blocks", type=int, default=4, help="the transformer's encoder blocks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args(argv)
    print(f"| model (batch 1, {a.threads} threads) | form | engine | median ms | p10 | p90 "
          f"| Ember compile s | Ember vs framework |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        for model, form, eng, ts, compile_s, note in bench(name, a):
            print(cpu.markdown_row([model, form, eng], ts, compile_s, note), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PyTorch models in one run next to torch eager: Ember through the PyTorch frontend
(``ember.from_torch``: torch.export, then ATen), torch eager, and for the models of
benchmarks/models.py also onnxruntime on their ONNX export.

    python benchmarks/torch_frontend.py --models all --threads 2 --runs 20

The models: ResNet-50 and MobileNetV2 of benchmarks/models.py and the transformers models of
benchmarks/hf_models.py (ViT-B/16, ConvNeXt-tiny, EfficientNet (default configuration: B7 sizes),
Swin-tiny, BERT-base, GPT-2 small decoding with a key/value cache, T5-small's encoder, Whisper-tiny's
encoder, a Llama-style decoder with grouped-query attention), batch 1, random weights from a fixed seed.

Prints one markdown row per model and engine: median, p10 and p90 latency, Ember's compile time
(torch.export and translation included) and the largest relative difference of the engine's
outputs from torch's.  A model Ember cannot take gets a row with the error's first line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402  (benchmarks/cpu.py: the model set, the timing rounds)
import hf_models  # noqa: E402  (benchmarks/hf_models.py: the transformers models)

PLAIN = ["resnet50", "mobilenet_v2"]          # of benchmarks/models.py
NAMES = PLAIN + list(hf_models.MODELS)
ENGINES = ["torch", "ember", "onnxruntime"]


def build(name: str, tiny: bool):
    """(model, example args, ONNX-exportable (inputs by name, output names) or None)."""
    if name in PLAIN:
        small = {"resnet50": dict(blocks=[1, 1, 1, 1], image=64, classes=10),
                 "mobilenet_v2": dict(image=64, classes=10)}[name] if tiny else {}
        model, inputs, output_names, _ = cpu.model_set().make(name, 1, **small)
        return model, tuple(inputs.values()), (inputs, output_names)
    model, args = hf_models.make(name, tiny)
    return model, args, None


def onnxruntime_run(name: str, model, onnx_inputs, threads: int):
    import onnxruntime as ort

    inputs, output_names = onnx_inputs
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        cpu.model_set()._export(model, inputs, output_names, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in inputs.items()}
    return lambda _: sess.run(None, feeds)


def bench(name: str, a):
    """The rows of one model: (engine, latencies in s or None, compile s or None, note)."""
    import torch

    import ember

    model, args, onnx_inputs = build(name, a.tiny)

    def run_torch(_):
        with torch.inference_mode():
            return model(*args)

    def flat(outs):
        outs = outs.values() if isinstance(outs, dict) else outs if isinstance(outs, (tuple, list)) else (outs,)
        return [np.asarray(o.numpy() if isinstance(o, torch.Tensor) else o) for o in outs]

    ref = flat(run_torch(None))

    def err(outs):
        return max(float(np.abs(o.astype(np.float64) - r).max() / max(np.abs(r).max(), 1e-30))
                   for o, r in zip(flat(outs), ref))

    fns, compile_s, notes = {"torch": run_torch}, None, {"torch": ""}
    if "ember" in a.engines:
        try:
            t0 = time.perf_counter()
            graph = ember.from_torch(model, args)
            module = ember.compile(graph)
            compile_s = time.perf_counter() - t0
        except Exception as e:          # the row says why (an op Ember lacks, ...)
            yield "ember", None, None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        else:
            module.num_threads = a.threads
            feeds = {v.name: t.numpy() for v, t in zip(graph.inputs, args)}
            fns["ember"] = lambda _: module.run(feeds)
    if "onnxruntime" in a.engines and onnx_inputs is not None:
        fns["onnxruntime"] = onnxruntime_run(name, model, onnx_inputs, a.threads)
    for eng, fn in fns.items():
        if eng != "torch":
            notes[eng] = f"rel. error {err(fn(None)):.1e}"
    times = cpu.time_runs(fns, None, a.warmup, a.runs)
    for eng, ts in times.items():
        yield eng, ts, compile_s if eng == "ember" else None, notes[eng]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mobilenet_v2"], choices=NAMES + ["all"])
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES,
                    help="torch always runs (the reference); onnxruntime only for ResNet-50 and MobileNetV2")
    ap.add_argument("--tiny", action="store_true", help="each model's tiny configuration (a quick check)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    names = NAMES if "all" in a.models else a.models
    print(f"| model (batch 1, {a.threads} threads) | engine | median ms | p10 | p90 | Ember compile s "
          f"| vs torch |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for eng, ts, compile_s, note in bench(name, a):
            print(cpu.markdown_row([name, eng], ts, compile_s, note), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

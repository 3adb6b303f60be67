"""A model of benchmarks/models.py three ways in one run: torch eager, Ember through the PyTorch
frontend (``ember.from_torch``), and onnxruntime on the model's ONNX export.

    python benchmarks/torch_frontend.py --model mobilenet_v2 --batch 1 --threads 2 --runs 30

Prints each engine's median, p10 and p90 latency and the largest relative difference of Ember's
and onnxruntime's outputs from torch's.
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2", choices=cpu.NAMES)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    import ember

    torch.set_num_threads(a.threads)
    models = cpu.model_set()
    model, inputs, output_names, _ = models.make(a.model, a.batch)
    args = tuple(inputs.values())
    feeds = {k: v.numpy() for k, v in inputs.items()}

    t0 = time.perf_counter()
    graph = ember.from_torch(model, args)
    t1 = time.perf_counter()
    module = ember.compile(graph)
    t2 = time.perf_counter()
    module.num_threads = a.threads
    names = [v.name for v in graph.inputs]
    print(f"{a.model} batch {a.batch}: from_torch {t1 - t0:.1f} s, compile {t2 - t1:.1f} s", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{a.model}.onnx"
        models._export(model, inputs, output_names, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run_torch(_):
        with torch.inference_mode():
            return model(*args)

    def run_ember(_):
        return module.run(dict(zip(names, feeds.values())))

    def run_ort(_):
        return sess.run(None, feeds)

    ref = run_torch(None)
    ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]

    def err(outs):
        return max(float(np.abs(o - r).max() / max(np.abs(r).max(), 1e-30)) for o, r in zip(outs, ref))

    print(f"rel. error vs torch: ember {err(list(run_ember(None).values())):.1e}, "
          f"onnxruntime {err(run_ort(None)):.1e}")
    times = cpu.time_runs({"torch": run_torch, "ember": run_ember, "onnxruntime": run_ort}, None, a.warmup, a.runs)
    for eng, ts in times.items():
        ms = np.array(ts) * 1e3
        print(f"{eng:12s} median {np.median(ms):8.2f} ms   p10 {np.percentile(ms, 10):8.2f}   "
              f"p90 {np.percentile(ms, 90):8.2f}   ({a.threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

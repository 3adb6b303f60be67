#!/usr/bin/env python3
"""Quantized models: Ember next to onnxruntime on the same QDQ model, and next to Ember's fp32.

    python benchmarks/quantized.py                     # quantize build/models/resnet50.onnx, compare, time
    python benchmarks/quantized.py --per-channel --runs 20
    python benchmarks/quantized.py path/to/bert_base.onnx --out /tmp/quantized

The float model is quantized with onnxruntime.quantization.quantize_static (QDQ format, its
default int8 activations and weights) into ``--out`` (default build/models; ``NAME.qdq.onnx``,
or ``NAME.qdq_pc.onnx`` per channel), calibrated on the model's stored inputs
(``NAME.inputs.npz`` beside it) when there are some, else on seeded random ones: floats standard
normal, integers in a valid range (below the row count of the table an input indexes with
Gather, such as token ids, else 0 or 1, such as masks and segment ids).  Both engines then run
the quantized model on the same inputs: the report gives the largest difference in quantized
output units, the relative error, whether the arg-max along the last axis (top-1) agrees, and
for Ember's int8, onnxruntime's int8 and Ember's fp32 (the float model):

- CPU time per run on one intra-op thread (``time.thread_time`` around the runs, the engines
  taking turns for a few rounds and the best round of each reported), which is what one core
  costs whatever else the machine is doing;
- the latency on ``--threads`` threads (median and p10-p90, the engines alternating in blocks:
  benchmarks/cpu.py's ``time_runs``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def graph_inputs(model) -> dict:
    """The model's inputs that are not initializers: name -> (shape with symbolic sizes 1, numpy dtype)."""
    import onnx

    init = {t.name for t in model.graph.initializer}
    return {i.name: ([d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim],
                     onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
            for i in model.graph.input if i.name not in init}


def integer_bounds(model) -> dict[str, int]:
    """For each graph input that indexes a constant table with Gather (token ids), the table's
    row count: the bound its values must stay below."""
    tables = {t.name: int(t.dims[0]) for t in model.graph.initializer if len(t.dims)}
    bounds: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) == 2 and n.input[0] in tables:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            if axis == 0:
                bounds[n.input[1]] = min(bounds.get(n.input[1], tables[n.input[0]]), tables[n.input[0]])
    return bounds


def generated_inputs(model, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``model``: floats standard normal, integers in ``[0, bound)`` with the
    bound from :func:`integer_bounds` (2 for an input that indexes nothing: masks, segment ids)."""
    rng = np.random.default_rng(seed)
    bounds = integer_bounds(model)
    feeds = {}
    for name, (shape, dtype) in graph_inputs(model).items():
        if np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(0, bounds.get(name, 2), size=shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def quantize_model(src: "str | Path", dst: "str | Path", per_channel: bool = False, samples: int = 4,
                   seed: int = 0, calibration: "list[dict] | None" = None) -> Path:
    """``src`` quantized by onnxruntime's ``quantize_static`` (QDQ) into ``dst``, calibrated on
    ``calibration`` (a list of input dicts) or else on ``samples`` generated inputs
    (:func:`generated_inputs`, seeds ``seed``, ``seed + 1``, ...)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    model = onnx.load(str(src))
    if calibration is None:
        calibration = [generated_inputs(model, seed + k) for k in range(samples)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter(calibration)

        def get_next(self):
            return next(self.data, None)

    import logging

    logging.getLogger().setLevel(logging.ERROR)      # quantize_static's advice about pre-processing
    # the model itself, not its path: given a path, quantize_static writes '<name>-inferred.onnx'
    # beside the source and deletes it, so two quantizations of one model at once (parallel
    # tests) trip over each other's file; given a model it works in a private temporary folder
    tmp = Path(dst).with_name(f".{Path(dst).name}.{os.getpid()}.tmp")
    quantize_static(model, str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel)
    os.replace(tmp, dst)
    return Path(dst)


def quantized_units(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference in units of the output's quantization step (the smallest gap
    between onnxruntime's distinct output values)."""
    levels = np.unique(want)
    step = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
    return float(np.abs(got.astype(np.float64) - want).max() / step)


def cpu_times(fns: dict, feeds, runs: int, rounds: int) -> dict[str, float]:
    """Each engine's CPU time per run (ms) on this thread, the best of ``rounds`` rounds in which
    the engines take turns."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn(feeds)
            t0 = time.thread_time()
            for _ in range(runs):
                fn(feeds)
            best[name] = min(best[name], (time.thread_time() - t0) / runs * 1e3)
    return best


def compare(path: Path, inputs: dict, runs: int, rounds: int = 3, float_path: "Path | None" = None,
            threads: int = 2, latency_runs: int = 0, block: int = 5) -> dict:
    """Ember against onnxruntime on the quantized model ``path``; with ``float_path``, Ember's
    fp32 on the float model too; with ``latency_runs``, the latencies on ``threads`` threads."""
    import ember
    from ember.benchmark import onnxruntime_session

    import cpu

    sess = {1: onnxruntime_session(path, threads=1)}
    t0 = time.perf_counter()
    module = ember.compile(path)
    compile_s = time.perf_counter() - t0
    module.num_threads = 1
    want = sess[1].run(None, inputs)
    got = list(module.run(inputs).values())
    out = {"units": max(quantized_units(g, w) for g, w in zip(got, want)),
           "rel": max(float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)) for g, w in zip(got, want)),
           "argmax": float(np.mean(got[0].argmax(-1) == want[0].argmax(-1))), "compile_s": compile_s}
    modules = {"ember int8": module}
    if float_path is not None:
        modules["ember fp32"] = ember.compile(float_path)
        f32 = list(modules["ember fp32"].run(inputs).values())
        out["fp32_rel"] = max(float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)) for g, w in zip(f32, want))

    def engines(threads: int) -> dict:
        sess.setdefault(threads, sess[1] if threads == 1 else onnxruntime_session(path, threads=threads))
        for m in modules.values():
            m.num_threads = threads
        fns = {name: m.run for name, m in modules.items()}
        fns["onnxruntime int8"] = lambda feeds, s=sess[threads]: s.run(None, feeds)
        return fns

    out["cpu_ms"] = cpu_times(engines(1), inputs, runs, rounds)
    if latency_runs:
        times = cpu.time_runs(engines(threads), inputs, warmup=3, runs=latency_runs, block=block)
        out["latency_ms"] = {name: (statistics.median(ts) * 1e3, *(np.percentile(ts, [10, 90]) * 1e3))
                             for name, ts in times.items()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="a float ONNX model (default: the resnet50 of make models)")
    ap.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    ap.add_argument("--out", help="folder for the quantized model (default: build/models)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round (CPU time, one thread)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the engines taking turns; the best counts")
    ap.add_argument("--threads", type=int, default=2, help="threads for the latencies")
    ap.add_argument("--latency-runs", type=int, default=20, help="timed runs per engine for the latencies (0: none)")
    ap.add_argument("--block", type=int, default=5, help="timed runs of one engine before the next one's turn")
    ap.add_argument("--no-fp32", action="store_true", help="leave out Ember's fp32 on the float model")
    args = ap.parse_args(argv)
    models = Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))
    src = Path(args.model) if args.model else models / "resnet50.onnx"
    if not src.exists():
        print(f"{src} not found (make models)", file=sys.stderr)
        return 1
    out_dir = Path(args.out) if args.out else ROOT / "build" / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{src.stem}.{'qdq_pc' if args.per_channel else 'qdq'}.onnx"
    stored = src.with_name(f"{src.stem}.inputs.npz")
    if stored.exists():
        inputs = dict(np.load(stored))
    else:
        import onnx

        inputs = generated_inputs(onnx.load(str(src), load_external_data=False))
    if not dst.exists():
        quantize_model(src, dst, per_channel=args.per_channel, calibration=[inputs] if stored.exists() else None)
    r = compare(dst, inputs, args.runs, args.rounds, float_path=None if args.no_fp32 else src,
                threads=args.threads, latency_runs=args.latency_runs, block=args.block)
    print(f"{dst.name}: compiled in {r['compile_s']:.1f} s")
    print(f"  vs onnxruntime: max difference {r['units']:g} quantized units, relative error {r['rel']:.2e}, "
          f"arg-max (top-1) agrees on {r['argmax']:.0%}"
          + (f"; Ember fp32 vs onnxruntime int8: relative error {r['fp32_rel']:.2e}" if "fp32_rel" in r else ""))
    ort = r["cpu_ms"]["onnxruntime int8"]
    print("  one thread, CPU time per run: " + ", ".join(
        f"{name} {ms:.1f} ms ({ms / ort:.2f}x)" for name, ms in r["cpu_ms"].items()))
    if "latency_ms" in r:
        print(f"  {args.threads} threads, latency median [p10-p90]: " + ", ".join(
            f"{name} {m:.1f} [{lo:.1f}-{hi:.1f}] ms" for name, (m, lo, hi) in r["latency_ms"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

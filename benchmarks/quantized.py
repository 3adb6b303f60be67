#!/usr/bin/env python3
"""Quantized ResNet-50: Ember next to onnxruntime on the same QDQ model, one thread, one process.

    python benchmarks/quantized.py                     # quantize build/models/resnet50.onnx, compare, time
    python benchmarks/quantized.py --per-channel --runs 20
    python benchmarks/quantized.py path/to/model.onnx  # any float model with one float input

The float model is quantized with onnxruntime.quantization.quantize_static (QDQ format, its
default int8 activations and weights, calibrated on seeded random normal inputs) into
build/models (``NAME.qdq.onnx``, or ``NAME.qdq_pc.onnx`` per channel).  Both engines then run
the quantized model on the model's stored inputs: the report gives the largest difference in
quantized output units, the relative error, whether the top-1 classes agree, and each engine's
CPU time per run (``time.thread_time`` around the runs, one intra-op thread each, the engines
taking turns for a few rounds and the best round of each reported), which is what one core costs
whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def quantize_model(src: "str | Path", dst: "str | Path", per_channel: bool = False, samples: int = 4,
                   seed: int = 0) -> Path:
    """``src`` quantized by onnxruntime's ``quantize_static`` (QDQ) into ``dst``, calibrated on
    ``samples`` standard normal inputs drawn with ``seed``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    model = onnx.load(str(src), load_external_data=False)
    (inp,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(seed)
            self.data = iter([{inp.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(samples)])

        def get_next(self):
            return next(self.data, None)

    import logging

    logging.getLogger().setLevel(logging.ERROR)      # quantize_static's advice about pre-processing
    # the model itself, not its path: given a path, quantize_static writes '<name>-inferred.onnx'
    # beside the source and deletes it, so two quantizations of one model at once (parallel
    # tests) trip over each other's file; given a model it works in a private temporary folder
    quantize_static(onnx.load(str(src)), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel)
    return Path(dst)


def quantized_units(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference in units of the output's quantization step (the smallest gap
    between onnxruntime's distinct output values)."""
    levels = np.unique(want)
    step = float(np.min(np.diff(levels))) if levels.size > 1 else 1.0
    return float(np.abs(got.astype(np.float64) - want).max() / step)


def compare(path: Path, inputs: dict, runs: int, rounds: int = 3) -> dict:
    import ember
    from ember.benchmark import onnxruntime_session

    sess = onnxruntime_session(path, threads=1)
    t0 = time.perf_counter()
    module = ember.compile(path)
    compile_s = time.perf_counter() - t0
    module.num_threads = 1
    want = sess.run(None, inputs)[0]
    got = list(module.run(inputs).values())[0]
    out = {"units": quantized_units(got, want),
           "rel": float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)),
           "argmax": bool(np.array_equal(got.argmax(-1), want.argmax(-1))), "compile_s": compile_s}
    engines = (("ember", lambda: module.run(inputs)), ("onnxruntime", lambda: sess.run(None, inputs)))
    best = {name: float("inf") for name, _ in engines}
    for _ in range(rounds):            # the engines take turns; the best round of each counts
        for name, fn in engines:
            fn()
            t0 = time.thread_time()
            for _ in range(runs):
                fn()
            best[name] = min(best[name], (time.thread_time() - t0) / runs * 1e3)
    out.update({f"{name}_ms": ms for name, ms in best.items()})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help="a float ONNX model (default: the resnet50 of make models)")
    ap.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the engines taking turns; the best counts")
    args = ap.parse_args(argv)
    models = Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))
    src = Path(args.model) if args.model else models / "resnet50.onnx"
    if not src.exists():
        print(f"{src} not found (make models)", file=sys.stderr)
        return 1
    out_dir = ROOT / "build" / "models"
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{src.stem}.{'qdq_pc' if args.per_channel else 'qdq'}.onnx"
    if not dst.exists():
        quantize_model(src, dst, per_channel=args.per_channel)
    stored = src.with_name(f"{src.stem}.inputs.npz")
    if stored.exists():
        inputs = dict(np.load(stored))
    else:
        import onnx

        from ember.benchmark import random_inputs

        g = onnx.load(str(dst), load_external_data=False).graph
        inputs = random_inputs({i.name: ([d.dim_value or 1 for d in i.type.tensor_type.shape.dim], "float32")
                                for i in g.input})
    r = compare(dst, inputs, args.runs, args.rounds)
    print(f"{dst.name}: compiled in {r['compile_s']:.1f} s")
    print(f"  vs onnxruntime: max difference {r['units']:g} quantized units, relative error {r['rel']:.2e}, "
          f"top-1 {'agrees' if r['argmax'] else 'DIFFERS'}")
    print(f"  one thread, CPU time per run: Ember {r['ember_ms']:.1f} ms, onnxruntime {r['onnxruntime_ms']:.1f} ms "
          f"({r['ember_ms'] / r['onnxruntime_ms']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

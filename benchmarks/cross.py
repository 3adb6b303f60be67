#!/usr/bin/env python3
"""The test models compiled for every cross target and run here under emulation, against onnxruntime.

    python benchmarks/cross.py                                    # all three models, all four targets
    python benchmarks/cross.py --models mobilenet_v2 --targets wasm32 aarch64-linux
    python benchmarks/cross.py --json build/cross.json

For each model of benchmarks/models.py (resnet50, mobilenet_v2, bert_base, in $EMBER_MODELS_DIR or
build/models; ``make models`` builds them) and each target, it compiles the model for the target
(``ember.compile(..., target=T)``), runs the artifact on the model's saved inputs under its
emulator (``CrossArtifact.run``: qemu user mode for the Linux targets, Node.js for wasm32; what
``ember run`` does) and compares the outputs with onnxruntime's on the host (the saved
``*.outputs.npz``).  Per row: the artifact's size and its code (all but the weights), the
compile time, the relative max error
(max |ember - onnxruntime| / max(1, max |onnxruntime|)) and the latency of one run under the
emulator (qemu's is a functional emulator: its times say nothing about the device's).  Whole
models take minutes under qemu, so this is a script, not a test (tests/targets runs small models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

MODELS = ["resnet50", "mobilenet_v2", "bert_base"]
TARGETS = ["aarch64-linux", "armv7-linux", "riscv64-linux", "wasm32"]


def models_dir() -> Path:
    return Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


def run_one(model: str, spec: str, iters: int) -> dict:
    import ember
    from ember.target import resolve
    from ember.toolchain.emulator import missing, target_machine

    row = {"model": model, "target": spec}
    why = missing(target_machine(resolve(spec)))
    if why:
        return {**row, "skipped": why}
    folder = models_dir()
    t0 = time.perf_counter()
    art = ember.compile(str(folder / f"{model}.onnx"), target=spec)
    row["compile_s"] = time.perf_counter() - t0
    row["artifact_bytes"] = art.path.stat().st_size
    row["constants_bytes"] = int(art.metadata.get("constants_bytes", 0))
    with np.load(folder / f"{model}.inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    with np.load(folder / f"{model}.outputs.npz") as f:
        expected = {k: f[k] for k in f.files}
    t0 = time.perf_counter()
    outputs = art.run(inputs, threads=1, iters=iters)
    row["wall_s"] = time.perf_counter() - t0
    row["latency_ms"] = art.last.latency_ms
    row["max_error"] = max(relative_error(outputs[n], expected[n]) for n in outputs if n in expected)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--targets", nargs="+", default=TARGETS)
    p.add_argument("--iters", type=int, default=1, help="timed runs per artifact (default: 1)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    print(f"{'model':14}{'target':16}{'artifact':>11}{'code':>10}{'compile s':>11}{'max error':>11}{'run ms':>11}",
          flush=True)
    for model in args.models:
        for spec in args.targets:
            row = run_one(model, spec, args.iters)
            rows.append(row)
            if "skipped" in row:
                print(f"{model:14}{spec:16}  skipped: {row['skipped']}", flush=True)
                continue
            code = row["artifact_bytes"] - row["constants_bytes"]     # the runtime, the kernels, the metadata
            print(f"{model:14}{spec:16}{row['artifact_bytes'] / 2**20:9.1f}MB{code / 1024:8.0f}KB{row['compile_s']:11.1f}"
                  f"{row['max_error']:11.1e}{row['latency_ms']:11.0f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

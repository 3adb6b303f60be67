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

    python benchmarks/cross.py --runtime-size                     # the runtime's size per target

compiles a one-op model (a ReLU on 64 floats) and the demo CNN (examples/demo.py) for every target
and the host, without running them, and prints each artifact's runtime without weights and its
machine code (``ember.runtime.sizes``; what ``ember info ARTIFACT`` prints).
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


def one_op_model():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu64",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def runtime_sizes(targets: list[str]) -> list[dict]:
    """Per model (one op, the demo CNN) and target (and the host): the artifact, its weights, the
    runtime without weights and its machine code, in bytes."""
    import ember
    from ember.runtime.sizes import artifact_sizes

    sys.path.insert(0, str(ROOT / "examples"))
    import demo

    rows = []
    print(f"{'model':10}{'target':16}{'artifact':>12}{'weights':>12}{'runtime':>12}{'code':>12}   (bytes)", flush=True)
    for name, model in [("one op", one_op_model()), ("demo CNN", demo.build_model())]:
        for spec in ["cpu", *targets]:
            art = ember.compile(model, target=spec)
            row = {"model": name, "target": spec, **artifact_sizes(art.path, art.metadata)}
            rows.append(row)
            print(f"{name:10}{spec:16}{row['artifact']:12,}{row['weights']:12,}{row['runtime']:12,}{row['code']:12,}",
                  flush=True)
    return rows


def run_one(model: str, spec: str, iters: int) -> dict:
    import ember
    from ember.runtime.sizes import artifact_sizes
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
    row["runtime_bytes"] = artifact_sizes(art.path, art.metadata)["runtime"]
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
    p.add_argument("--runtime-size", action="store_true", help="only the runtime's size without weights per target")
    args = p.parse_args(argv)
    if args.runtime_size:
        rows = runtime_sizes(args.targets)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
        return 0
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
            code = row["runtime_bytes"]     # the runtime, the kernels, the metadata: all but the weights
            print(f"{model:14}{spec:16}{row['artifact_bytes'] / 2**20:9.1f}MB{code / 1024:8.0f}KB{row['compile_s']:11.1f}"
                  f"{row['max_error']:11.1e}{row['latency_ms']:11.0f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

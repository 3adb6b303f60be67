#!/usr/bin/env python3
"""wasm32: Ember's artifact next to onnxruntime-web under Node.js, one thread, same inputs, one run.

    python benchmarks/wasm.py                                # mobilenet_v2 and bert_base
    python benchmarks/wasm.py --models resnet50 --runs 20
    python benchmarks/wasm.py --json build/wasm.json

For each model of benchmarks/models.py (in $EMBER_MODELS_DIR or build/models; ``make models``),
it compiles the model for ``wasm32`` (WebAssembly SIMD128) and hands the artifact, the ONNX file
and the model's saved inputs to benchmarks/wasm.mjs, which loads both engines into one Node.js
process (onnxruntime-web's wasm execution provider: SIMD, ``numThreads = 1``) and times them in
alternating blocks.  onnxruntime-web comes from npm into build/npm (git-ignored), installed on
first use (``--ort-version``).  Prints the median latency with p10-p90 of each engine, their
ratio and the largest difference between their outputs; quote the CPU (``lscpu``) with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

MODELS = ["resnet50", "mobilenet_v2", "bert_base"]
NPM_DIR = ROOT / "build" / "npm"
ORT_VERSION = "1.30.0"


def models_dir() -> Path:
    return Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))


def ensure_ort(version: str) -> Path:
    """build/npm with onnxruntime-web ``version`` installed (npm, on first use)."""
    pkg = NPM_DIR / "node_modules" / "onnxruntime-web" / "package.json"
    if pkg.exists() and json.loads(pkg.read_text()).get("version") == version:
        return NPM_DIR
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("wasm.py: npm is missing (apt-get install npm), needed to install onnxruntime-web")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR),
                    f"onnxruntime-web@{version}"], check=True)
    return NPM_DIR


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(model: str, ort_dir: Path, warmup: int, runs: int, block: int) -> dict:
    import ember

    folder = models_dir()
    art = ember.compile(str(folder / f"{model}.onnx"), target="wasm32")
    with np.load(folder / f"{model}.inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    with tempfile.TemporaryDirectory(prefix="ember-wasm-bench-") as tmp:
        spec_inputs = []
        for i, x in enumerate(art.metadata["inputs"]):
            path = Path(tmp) / f"in{i}.bin"
            np.ascontiguousarray(inputs[x["name"]], dtype=x["dtype"]).tofile(path)
            spec_inputs.append({**{k: x[k] for k in ("name", "dtype", "shape")}, "file": str(path)})
        spec = {"artifact": str(art.path), "onnx": str(folder / f"{model}.onnx"), "ort": str(ort_dir),
                "inputs": spec_inputs, "outputs": art.output_names, "warmup": warmup, "runs": runs,
                "block": block, "out": str(Path(tmp) / "out-")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        proc = subprocess.run(["node", "--no-warnings", str(ROOT / "benchmarks" / "wasm.mjs"),
                               str(Path(tmp) / "spec.json")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"wasm.py: {model}: {proc.stderr.strip()}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        diff = 0.0
        for i, x in enumerate(art.metadata["outputs"]):
            a, b = (np.fromfile(Path(tmp) / f"out-{e}-{i}.bin", dtype=x["dtype"]).astype(np.float64)
                    for e in ("ember", "onnxruntime-web"))
            diff = max(diff, float(np.max(np.abs(a - b))))
    return {"model": model, "max_abs_diff": diff, "artifact_bytes": art.path.stat().st_size, **report}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "bert_base"], choices=MODELS)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--block", type=int, default=5, help="runs per engine in each round (default: 5)")
    p.add_argument("--ort-version", default=ORT_VERSION)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    ort_dir = ensure_ort(args.ort_version)
    print(f"cpu: {cpu_name()}; one thread; {args.runs} runs after {args.warmup} warm-up runs per engine", flush=True)
    rows = []
    for model in args.models:
        r = bench(model, ort_dir, args.warmup, args.runs, args.block)
        rows.append(r)
        e, o = r["ember"], r["onnxruntime-web"]
        print(f"\n{model} (Node.js {r['node']}, onnxruntime-web {r['ort_version'] or args.ort_version})")
        for name, s in (("ember wasm32", e), ("onnxruntime-web", o)):
            print(f"  {name:16} median {s['median']:9.2f} ms  p10-p90 {s['p10']:.2f}-{s['p90']:.2f}  "
                  f"load {s['load_ms']:.0f} ms")
        ratio = e["median"] / o["median"]
        print(f"  ember / onnxruntime-web = {ratio:.2f}; max |difference| of the outputs {r['max_abs_diff']:.2g}",
              flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

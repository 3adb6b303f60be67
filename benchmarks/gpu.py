#!/usr/bin/env python3
"""Ember on a GPU next to PyTorch eager, torch.compile and onnxruntime's CUDA provider.

    python benchmarks/gpu.py                         # ResNet-50, BERT-base; batch 1, 32; fp32, fp16
    python benchmarks/gpu.py --models resnet50 --batch 1 --dtypes float16 --runs 100
    python benchmarks/gpu.py --device opencl --tiny --models resnet50 --batch 1   # a small check

The models are benchmarks/models.py's (plain torch modules and transformers' BERT, random weights
from a fixed seed), built at each batch: the torch module runs in PyTorch (eager and
``torch.compile``), its ONNX export in onnxruntime (``CUDAExecutionProvider``) and in Ember
(``target="cuda"`` or ``"opencl"``, with ``-dtype=float16`` for fp16).  For each model, batch,
dtype and engine a row gives the median latency of ``--runs`` runs after ``--warmup`` runs (inputs
copied in and outputs copied out in every run, for every engine) and the largest error relative
to torch's float32 outputs on the CPU; an engine that cannot run says why in its row instead of
a number (not installed, no fp16 model, Ember's CUDA runtime not built).

``--device cuda`` (the default) needs a CUDA device visible to torch and refuses to start without
one.  ``--device opencl`` runs Ember on an OpenCL device (the CPU driver pocl where there is no
GPU); the other engines have no OpenCL and are listed as skipped.  ``--tiny`` builds small
configurations (ResNet-50's bottlenecks once per stage on 32x32 images, BERT-base on 8 tokens)
for checking the script itself.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["resnet50", "bert_base"]
ENGINES = ["ember", "torch", "torch.compile", "onnxruntime"]
DTYPES = ["float32", "float16"]
TINY = {"resnet50": dict(image=32, blocks=[1, 1, 1, 1], classes=10), "bert_base": dict(seq=8)}


class Skip(Exception):
    """An engine that cannot run this row (the reason goes in the table)."""


def model_set():
    if "ember_bench_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location("ember_bench_models", ROOT / "benchmarks" / "models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["ember_bench_models"] = module
        spec.loader.exec_module(module)
    return sys.modules["ember_bench_models"]


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {v}")
    return v


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--batch", nargs="+", type=positive, default=[1, 32], help="batch sizes (default: 1 32)")
    p.add_argument("--dtypes", nargs="+", default=DTYPES, choices=DTYPES)
    p.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    p.add_argument("--device", default="cuda", choices=["cuda", "opencl"])
    p.add_argument("--arch", default=None, help="Ember's CUDA architecture (default: the device's, sm_XX)")
    p.add_argument("--runs", type=positive, default=50, help="timed runs per row (default: 50)")
    p.add_argument("--warmup", type=positive, default=5, help="untimed runs first (default: 5)")
    p.add_argument("--tiny", action="store_true", help="small configurations (checks the script)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if args.arch is not None and (args.device != "cuda" or not args.arch.startswith("sm_")
                                  or not args.arch[3:].isdigit()):
        p.error(f"--arch takes sm_XX with --device cuda, got {args.arch!r}")
    return args


def check_device(device: str) -> str | None:
    """None when ``device`` can run here, else why not."""
    if device == "cuda":
        try:
            import torch
        except ImportError:
            return "torch is not installed (the benchmark finds the CUDA device through it)"
        if not torch.cuda.is_available():
            return "no CUDA device is visible to torch (torch.cuda.is_available() is False)"
        return None
    from ember.runtime import opencl

    return None if opencl.available() else "no OpenCL device (pyopencl and a driver such as pocl-opencl-icd)"


def timed(run, runs: int, warmup: int, sync=lambda: None) -> tuple[float, object]:
    out = None
    for _ in range(warmup):
        out = run()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = run()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, out


def rel_error(got: list, want: list) -> float:
    return max(float(np.abs(np.asarray(g, np.float64) - w).max() / max(np.abs(w).max(), 1e-30))
               for g, w in zip(got, want))


def engine_ember(args, onnx_path, inputs, dtype):
    import ember

    target = args.device
    if args.device == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability()
        target = f"cuda -arch={args.arch or f'sm_{major}{minor}'}"
    if dtype == "float16":
        target += " -dtype=float16"
    m = ember.compile(onnx_path, target=target)
    try:
        m.run(inputs)
    except ember.errors.EmberRuntimeError as e:
        raise Skip(f"cannot run: {e}") from None
    return lambda: list(m.run(inputs).values())


def engine_torch(args, model, inputs, dtype, compiled: bool):
    if args.device != "cuda":
        raise Skip("PyTorch has no OpenCL device")
    import torch

    dev = torch.device("cuda")
    m = model.to(dev)
    if dtype == "float16":
        m = m.half()
    if compiled:
        m = torch.compile(m)

    def run():
        with torch.no_grad():
            x = [torch.from_numpy(v).to(dev) for v in inputs.values()]
            x = [f.half() if dtype == "float16" and f.is_floating_point() else f for f in x]
            out = m(*x)
            out = [out] if isinstance(out, torch.Tensor) else list(out)
            return [o.float().cpu().numpy() for o in out]
    return run


def engine_onnxruntime(args, onnx_path, inputs, dtype):
    if args.device != "cuda":
        raise Skip("onnxruntime's CUDA provider needs a CUDA device")
    try:
        import onnxruntime as ort
    except ImportError:
        raise Skip("onnxruntime is not installed") from None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip("this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    if dtype == "float16":
        try:
            import onnx
            from onnxconverter_common import float16
        except ImportError:
            raise Skip("no float16 ONNX model (pip install onnxconverter-common converts one)") from None
        half = Path(onnx_path).with_name(Path(onnx_path).stem + "_fp16.onnx")
        onnx.save(float16.convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True), str(half))
        onnx_path = half
    sess = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    return lambda: sess.run(None, inputs)


def bench(args, name: str, batch: int, work: Path) -> list[dict]:
    import torch

    models = model_set()
    config = TINY[name] if args.tiny else {}
    out = work / f"{name}_b{batch}"
    models.build(name, out, batch=batch, **config)
    onnx_path = out / f"{name}.onnx"
    inputs = dict(np.load(out / f"{name}.inputs.npz"))
    model, _, _, _ = models.make(name, batch, **config)
    with torch.no_grad():
        ref = model(*[torch.from_numpy(v) for v in inputs.values()])
    ref = [r.numpy().astype(np.float64) for r in ([ref] if isinstance(ref, torch.Tensor) else ref)]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rows = []
    for dtype in args.dtypes:
        for engine in args.engines:
            row = {"model": name, "batch": batch, "dtype": dtype, "engine": engine, "device": args.device}
            try:
                if engine == "ember":
                    run = engine_ember(args, onnx_path, inputs, dtype)
                elif engine == "onnxruntime":
                    run = engine_onnxruntime(args, onnx_path, inputs, dtype)
                else:
                    run = engine_torch(args, models.make(name, batch, **config)[0], inputs, dtype,
                                       compiled=engine == "torch.compile")
                ms, got = timed(run, args.runs, args.warmup, sync)
                row.update(ms=ms, rel_error=rel_error(got, ref))
            except Skip as e:
                row["skipped"] = str(e)
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(r: dict) -> str:
    head = f"{r['model']:<10} b={r['batch']:<3} {r['dtype']:<8} {r['engine']:<14}"
    if "skipped" in r:
        return f"{head} -- {r['skipped']}"
    return f"{head} {r['ms']:10.3f} ms  rel. error {r['rel_error']:.1e}"


def main(argv=None) -> int:
    args = parse(argv)
    why = check_device(args.device)
    if why:
        print(f"benchmarks/gpu.py: --device {args.device} cannot run here: {why}. "
              "No numbers are made up: run it on a machine with the device"
              + (" (or --device opencl for a check on an OpenCL driver)." if args.device == "cuda" else "."),
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ember-gpu-bench-") as work:
        for name in args.models:
            for batch in args.batch:
                rows += bench(args, name, batch, Path(work))
    if args.json:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps({"device": args.device, "runs": args.runs, "rows": rows}, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

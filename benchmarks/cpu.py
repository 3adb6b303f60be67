#!/usr/bin/env python3
"""CPU benchmark: Ember next to onnxruntime, PyTorch eager and OpenVINO, in one run.

    python benchmarks/cpu.py                       # all models, batch 1 and 8, 2 threads
    python benchmarks/cpu.py --models vit gpt2     # only the two of benchmarks/models.py
    python benchmarks/cpu.py --models resnet50 --batch 1 --threads 1 --runs 50
    python benchmarks/cpu.py path/to/model.onnx    # any ONNX model as well

Every engine runs the same ONNX model with the same inputs and thread count in this process:
warm-up runs, then ``--runs`` timed runs per engine, in rounds of ``--block`` runs per engine (so that
a busy stretch of the machine slows every engine alike); the table shows the median latency, the spread
(p10-p90), the ratio to onnxruntime, compile/session-creation time and, from a separate child
process per engine, peak working memory (resident set growth while loading and running).
It also measures the machine's fp32 peak (vector FMAs alone, at the widest vectors the C compiler
targets; numpy's sgemm beside it, whose BLAS may not use them) and prints each engine's
achieved GFLOP/s, and writes everything as JSON (``--json``).

Engines: ember, onnxruntime, torch (eager), openvino (float32, as the others) and openvino-default
(OpenVINO with the precision its CPU plugin picks: bf16 on CPUs with bfloat16 instructions, e.g.
AVX512_BF16 or AMX, so less exact than the rest; float32 elsewhere).

The models (resnet50, mobilenet_v2, bert_base, the ViT-B/16 vit, GPT-2 small gpt2, T5-small's encoder
t5_encoder and MobileViT-small mobilevit) are those of
benchmarks/models.py, built on demand into build/models, and build/models_b8 for batch 8.

Before and after a change (an A/B of two Ember checkouts, in one run):

    python benchmarks/cpu.py --baseline-src ../ember-old --engines ember onnxruntime \
        --models --batch 1 build/models/resnet50.onnx

Two ``ember`` packages cannot be imported into one process, so ``--baseline-src DIR`` (an older
checkout, e.g. ``git worktree add --detach ../ember-old COMMIT``) adds two engines that each run in a
child process of their own: ``ember-baseline`` (DIR's Ember) and ``ember-child`` (this checkout's, in
the same harness, so that the pair differs in nothing but the tree).  The child compiles the model,
then runs it on request and times each run itself (the pipe's round trip is not counted); its runs
take their turns in the rounds like any engine's.  The baseline compiles into a cache of its own
(``--baseline-cache``, by default ``baseline-<hash of DIR>`` under this checkout's cache root), so
that artifacts of the two trees never mix.  The table's last column is the largest difference of an
engine's outputs from onnxruntime's (max |a - b| / max |b|, over all outputs), and for
``ember-baseline`` also from ``ember-child``'s; the two children also report the median CPU time
of a run (all the child's threads), which other work on the machine disturbs less than latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ember.benchmark import time_runs  # noqa: E402  (the other benchmarks use it as cpu.time_runs)

MODELS_PY = ROOT / "benchmarks" / "models.py"


def model_set():
    """benchmarks/models.py as a module (its ``MODELS`` maps names to constructors, ``make`` seeds)."""
    import importlib.util

    if "ember_bench_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location("ember_bench_models", MODELS_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules["ember_bench_models"] = module
        spec.loader.exec_module(module)
    return sys.modules["ember_bench_models"]


NAMES = list(model_set().MODELS)       # resnet50, mobilenet_v2, bert_base, vit, gpt2, t5_encoder, mobilevit


# ---- models ---------------------------------------------------------------------------------------

def model_dir(batch: int) -> Path:
    return ROOT / "build" / ("models" if batch == 1 else f"models_b{batch}")


def ensure_models(names: list[str], batch: int) -> Path:
    """Build the models not yet built (or built by an older recipe) at ``batch``."""
    out = model_dir(batch)
    subprocess.run([sys.executable, str(MODELS_PY), "--out", str(out), "--only", *names, "--batch", str(batch)],
                   check=True)
    return out


def random_inputs(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in m.graph.input:
        if i.name in init:
            continue
        tt = i.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[i.name] = rng.integers(0, 100, size=shape).astype(dtype)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def inputs_for(path: Path) -> dict[str, np.ndarray]:
    cand = path.parent / (path.stem + ".inputs.npz")
    if cand.exists():
        return dict(np.load(cand))
    return random_inputs(path)


def count_flops(path: Path) -> int:
    import ember
    from ember.graph.stats import count_flops as flops

    return flops(ember.from_onnx(str(path)))


# ---- engines --------------------------------------------------------------------------------------

def make_ember(path: Path, threads: int):
    import ember

    t0 = time.perf_counter()
    m = ember.compile(str(path))
    m.num_threads = threads
    return (lambda feeds: m.run(feeds)), time.perf_counter() - t0


def make_onnxruntime(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return (lambda feeds: s.run(None, feeds)), time.perf_counter() - t0


def make_openvino(path: Path, threads: int, precision: str = "f32"):
    """OpenVINO's CPU plugin computing in ``precision``: f32 as the other engines (its own default
    is bf16 on CPUs with bfloat16 instructions, e.g. AVX512_BF16 or AMX)."""
    import openvino as ov

    core = ov.Core()
    t0 = time.perf_counter()
    cm = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                               "INFERENCE_PRECISION_HINT": precision})
    req = cm.create_infer_request()
    return (lambda feeds: req.infer(feeds)), time.perf_counter() - t0


def make_openvino_default(path: Path, threads: int):
    """OpenVINO untouched: the precision its CPU plugin picks for this CPU (bf16 where the CPU
    has bfloat16 instructions, so not the others' float32 arithmetic)."""
    import openvino as ov

    return make_openvino(path, threads, ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string())


def make_torch(path: Path, threads: int):
    """PyTorch eager on the same architecture, when the model is one the benchmark builds."""
    import torch

    torch.set_num_threads(threads)
    name = path.stem
    if name not in NAMES:
        raise RuntimeError("not a model the benchmark builds")
    batch = int(next(iter(inputs_for(path).values())).shape[0])
    t0 = time.perf_counter()
    model, _, _, _ = model_set().make(name, batch)      # the seed the exported model was made with

    def run(feeds):
        with torch.inference_mode():
            return model(*[torch.from_numpy(v) for v in feeds.values()])

    return run, time.perf_counter() - t0


ENGINES = {"ember": make_ember, "onnxruntime": make_onnxruntime, "torch": make_torch, "openvino": make_openvino,
           "openvino-default": make_openvino_default}


#: the child process of a ChildEmber: compiles the model with the ``ember`` on its PYTHONPATH, then
#: answers pickled requests on stdin ("run": the run's seconds and the process's CPU seconds in it;
#: "outputs": the outputs) on a copy of stdout (anything the compiler prints goes to stderr)
CHILD_CODE = r"""
import os, pickle, sys, time
out = os.fdopen(os.dup(1), "wb"); os.dup2(2, 1)
inp = sys.stdin.buffer
path, threads, feeds = pickle.load(inp)
import ember
t0 = time.perf_counter()
m = ember.compile(path)
m.num_threads = threads
pickle.dump((ember.__file__, time.perf_counter() - t0), out); out.flush()
while True:
    cmd = pickle.load(inp)
    if cmd == "quit":
        break
    c0, t0 = time.process_time(), time.perf_counter()
    r = m.run(feeds)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    pickle.dump((dt, dc) if cmd == "run" else {k: v for k, v in r.items()}, out); out.flush()
"""


class ChildEmber:
    """An Ember checkout's compiled model in a child process (``src``: the checkout's ``src``;
    ``cache``: its EMBER_CACHE_DIR).  Calling it runs the model on the feeds it was started with;
    ``timed`` does so and gives the seconds the child measured around ``run``; ``cpu_seconds``
    collects the CPU time of the child's threads in each timed run (less sensitive than the
    latency to other work on the machine)."""

    def __init__(self, src: Path, cache: Path | None, path: Path, threads: int, feeds):
        import pickle

        env = dict(os.environ, PYTHONPATH=str(src))
        if cache is not None:
            env["EMBER_CACHE_DIR"] = str(cache)
        self._pickle = pickle
        self.cpu_seconds: list[float] = []
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self._send((str(path), threads, dict(feeds)))
        try:
            self.module_file, self.setup_s = self._receive()
        except EOFError:
            self.proc.wait()
            raise RuntimeError(f"the Ember of {src} could not compile the model "
                               f"(exit status {self.proc.returncode})") from None

    def _send(self, obj) -> None:
        self._pickle.dump(obj, self.proc.stdin)
        self.proc.stdin.flush()

    def _receive(self):
        return self._pickle.load(self.proc.stdout)

    def timed(self, feeds=None) -> float:
        self._send("run")
        wall, cpu = self._receive()
        self.cpu_seconds.append(cpu)
        return wall

    def __call__(self, feeds=None):
        self._send("run")
        self._receive()

    def outputs(self):
        self._send("outputs")
        return self._receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            self._send("quit")
            self.proc.stdin.close()
            self.proc.wait()


def baseline_cache(src: Path) -> Path:
    """The baseline's own cache: under this checkout's cache root, named for the checkout's path."""
    import hashlib

    from ember.toolchain.cache import cache_dir

    return cache_dir() / f"baseline-{hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]}"


def as_arrays(result) -> list[np.ndarray] | None:
    """An engine's outputs as a list of arrays (dict, list, OpenVINO result or torch tensors), or
    None when they cannot be read so (e.g. a transformers output object)."""
    if isinstance(result, dict) or hasattr(result, "values") and not hasattr(result, "shape"):
        result = list(result.values())
    if not isinstance(result, (list, tuple)):
        result = [result]
    try:
        return [np.asarray(r.detach().numpy() if hasattr(r, "detach") else r, dtype=np.float64) for r in result]
    except (TypeError, ValueError):
        return None


def max_difference(got: list[np.ndarray] | None, want: list[np.ndarray] | None) -> float | None:
    """max |got - want| / max |want| over all outputs (None if they cannot be compared)."""
    if got is None or want is None or len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        return None
    return max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)) if w.size else 0.0
               for g, w in zip(got, want))


def markdown_row(cells: list, ts, compile_s, note: str) -> str:
    """One row of a frontend benchmark's table: ``cells`` (model, engine, ...), the median, p10
    and p90 of the latencies ``ts`` (seconds; None: empty, the engine did not run), the compile
    time and the note."""
    if ts is None:
        return "| " + " | ".join(map(str, cells)) + f" | | | | | {note} |"
    ms = np.array(ts) * 1e3
    return ("| " + " | ".join(map(str, cells)) + f" | {np.median(ms):.2f} | {np.percentile(ms, 10):.2f} | "
            f"{np.percentile(ms, 90):.2f} | {'' if compile_s is None else f'{compile_s:.0f}'} | {note} |")


def peak_rss_mib() -> float:
    """This process's peak resident set (MiB). On Linux from ``VmHWM``, which starts afresh at
    ``execve`` (``ru_maxrss`` does not: a child starts with its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


ENGINE_PACKAGES = {"ember": "ember", "onnxruntime": "onnxruntime", "torch": "torch", "openvino": "openvino",
                   "openvino-default": "openvino"}


def peak_memory(engine: str, path: Path, threads: int) -> float | None:
    """Peak resident-set growth (MiB) of a child process while it loads and runs one engine
    (the engine's package is imported before the baseline, the inputs are loaded before it)."""
    code = f"""
import importlib, sys
sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); sys.path.insert(0, {str(ROOT / 'src')!r})
import cpu
from pathlib import Path
p = Path({str(path)!r}); feeds = cpu.inputs_for(p)
importlib.import_module({ENGINE_PACKAGES.get(engine, 'numpy')!r})
base = cpu.peak_rss_mib()
fn, _ = cpu.ENGINES[{engine!r}](p, {threads})
for _ in range(3): fn(feeds)
print(cpu.peak_rss_mib() - base)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def fma_peak(threads: int) -> float:
    """fp32 GFLOP/s of vector FMAs alone on ``threads`` threads (``ember.tune.roofline``, the
    peak ``ember tune`` measures kernels against)."""
    from ember.tune.roofline import fma_peak as peak

    return peak(threads)


def sgemm_peak(threads: int) -> float:
    """fp32 GFLOP/s of a large sgemm through numpy's BLAS on ``threads`` threads, measured in a
    child process whose BLAS is limited to that many threads (the variables OpenBLAS, MKL and
    OpenMP read at start-up; this process's BLAS has already started its threads)."""
    code = """
import time, numpy as np
n = 2048
a = np.random.rand(n, n).astype(np.float32)
b = np.random.rand(n, n).astype(np.float32)
best = float("inf")
for _ in range(5):
    t0 = time.perf_counter()
    a @ b
    best = min(best, time.perf_counter() - t0)
print(2 * n ** 3 / best / 1e9)
"""
    env = dict(os.environ, **{v: str(threads) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                         "MKL_NUM_THREADS", "BLIS_NUM_THREADS")})
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    try:
        return float(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SystemExit(f"measuring the machine's peak failed: {r.stderr.strip()[-500:]}") from None


# ---- main -----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="extra ONNX models to benchmark")
    ap.add_argument("--models", nargs="*", default=NAMES, choices=NAMES, metavar="NAME",
                    help=f"models the benchmark builds: {', '.join(NAMES)} (default: all)")
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--block", type=int, default=5,
                    help="timed runs of one engine before the next engine's turn (0: all at once)")
    ap.add_argument("--engines", nargs="*", default=list(ENGINES))
    ap.add_argument("--no-memory", action="store_true", help="skip the per-engine memory children")
    ap.add_argument("--json", default=str(ROOT / "build" / "bench_cpu.json"))
    ap.add_argument("--baseline-src", metavar="DIR",
                    help="another Ember checkout: adds ember-baseline (its Ember) and ember-child (this one's), "
                         "each in a child process")
    ap.add_argument("--baseline-cache", metavar="DIR", help="the baseline's EMBER_CACHE_DIR "
                    "(default: baseline-<hash of the checkout's path> under this checkout's cache root)")
    a = ap.parse_args(argv)
    baseline = Path(a.baseline_src).resolve() if a.baseline_src else None
    if baseline is not None and not (baseline / "src" / "ember" / "__init__.py").exists():
        ap.error(f"--baseline-src: no src/ember/__init__.py in {baseline}")

    jobs: list[tuple[str, int, Path]] = []
    for batch in a.batch:
        if a.models:
            d = ensure_models(a.models, batch)
            jobs += [(n, batch, d / f"{n}.onnx") for n in a.models]
    jobs += [(Path(p).stem, 0, Path(p)) for p in a.paths]

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    peak, sgemm = fma_peak(a.threads), sgemm_peak(a.threads)
    print(f"machine fp32 peak ({a.threads} threads): {peak:.1f} GFLOP/s of vector FMAs "
          f"(numpy's sgemm: {sgemm:.1f})"
          + (f"; load average {load_start:.2f} on {os.cpu_count()} CPUs" if load_start is not None else ""),
          flush=True)
    results = []
    for name, batch, path in jobs:
        feeds = inputs_for(path)
        flops = count_flops(path)
        if not batch:      # a model given by path: its first input's leading dimension
            first = next(iter(feeds.values()), None)
            batch = int(first.shape[0]) if first is not None and first.ndim else 1
        row = {"model": name, "batch": batch, "gflops": flops / 1e9, "engines": {}}
        fns, setups = {}, {}
        for eng in a.engines:
            try:
                fns[eng], setups[eng] = ENGINES[eng](path, a.threads)
            except Exception as e:  # an engine that is not installed or cannot run the model
                row["engines"][eng] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
        children = {}
        if baseline is not None:
            cache = Path(a.baseline_cache) if a.baseline_cache else baseline_cache(baseline)
            for eng, src, eng_cache in (("ember-baseline", baseline, cache), ("ember-child", ROOT, None)):
                try:
                    children[eng] = fns[eng] = ChildEmber(src / "src", eng_cache, path, a.threads, feeds)
                    setups[eng] = children[eng].setup_s
                except Exception as e:
                    row["engines"][eng] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
        try:
            times = time_runs(fns, feeds, a.warmup, a.runs, a.block)
            outputs = {eng: as_arrays(children[eng].outputs() if eng in children else fn(feeds))
                       for eng, fn in fns.items()}
        finally:
            for child in children.values():
                child.close()
        for eng, ts in times.items():
            med = statistics.median(ts)
            q = np.percentile(ts, [10, 90])
            row["engines"][eng] = {"median_ms": med * 1e3, "p10_ms": q[0] * 1e3, "p90_ms": q[1] * 1e3,
                                   "setup_s": setups[eng], "gflops_per_s": flops / med / 1e9,
                                   "diff_vs_ort": max_difference(outputs[eng], outputs.get("onnxruntime"))}
            if eng in children:
                cpu = children[eng].cpu_seconds
                row["engines"][eng].update(module=children[eng].module_file,
                                           cpu_median_ms=statistics.median(cpu) * 1e3,
                                           cpu_p10_ms=np.percentile(cpu, 10) * 1e3,
                                           cpu_p90_ms=np.percentile(cpu, 90) * 1e3)
            if eng == "ember-baseline":
                row["engines"][eng]["diff_vs_current"] = max_difference(outputs[eng], outputs.get("ember-child"))
            if not a.no_memory and eng in ENGINES:
                row["engines"][eng]["peak_mib"] = peak_memory(eng, path, a.threads)
        order = a.engines + list(children)
        row["engines"] = {eng: row["engines"][eng] for eng in order if eng in row["engines"]}
        results.append(row)
        _print_row(row, peak)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    Path(a.json).write_text(json.dumps({"threads": a.threads, "peak_gflops": peak, "sgemm_gflops": sgemm, "cpus": os.cpu_count(),
                                        "loadavg_start": load_start, "loadavg_end": load_end,
                                        "baseline_src": str(baseline) if baseline else None,
                                        "results": results}, indent=1))
    if load_end is not None:
        print(f"\nload average at the end: {load_end:.2f} on {os.cpu_count()} CPUs")
    print(f"wrote {a.json}")
    return 0


def _print_row(row: dict, peak: float) -> None:
    ort = row["engines"].get("onnxruntime", {}).get("median_ms")
    print(f"\n{row['model']} (batch {row['batch']}, {row['gflops']:.2f} GFLOP)")
    print(f"  {'engine':14s} {'median ms':>10s} {'p10-p90 ms':>15s} {'vs ort':>7s} {'GFLOP/s':>8s} {'% peak':>7s}"
          f" {'setup s':>8s} {'peak MiB':>9s} {'max diff':>9s}")
    for eng, r in row["engines"].items():
        if "error" in r:
            print(f"  {eng:14s} {r['error']}")
            continue
        ratio = f"{r['median_ms'] / ort:.2f}x" if ort else "-"
        mem = r.get("peak_mib")
        diff = r.get("diff_vs_ort")
        print(f"  {eng:14s} {r['median_ms']:10.2f} {r['p10_ms']:7.2f}-{r['p90_ms']:<7.2f} {ratio:>7s} "
              f"{r['gflops_per_s']:8.1f} {100 * r['gflops_per_s'] / peak:6.1f}% {r['setup_s']:8.2f} "
              f"{(f'{mem:.0f}' if mem is not None else '-'):>9s} {(f'{diff:.1e}' if diff is not None else '-'):>9s}",
              flush=True)
    base, cur = row["engines"].get("ember-baseline", {}), row["engines"].get("ember-child", {})
    if "median_ms" in base and "median_ms" in cur:
        d = base.get("diff_vs_current")
        print(f"  this checkout / baseline: {cur['median_ms'] / base['median_ms']:.3f}x"
              f" (outputs' max difference {f'{d:.1e}' if d is not None else '-'}); CPU time per run"
              f" {cur['cpu_median_ms']:.2f} / {base['cpu_median_ms']:.2f} ms ="
              f" {cur['cpu_median_ms'] / base['cpu_median_ms']:.3f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())

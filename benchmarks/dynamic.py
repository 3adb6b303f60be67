#!/usr/bin/env python3
"""Dynamic against static artifacts: the cost of compiling a model once with open sizes.

    python benchmarks/dynamic.py                         # ResNet-50 and BERT-base, all sizes
    python benchmarks/dynamic.py --models resnet50 --sizes 1x3x224x224 --runs 30
    python benchmarks/dynamic.py --profile               # also the kernels' times, side by side

For each model of benchmarks/models.py built with ``--dynamic`` (ResNet-50 with open batch,
height and width; BERT-base with open batch and sequence), one artifact is compiled from
NAME_dyn.onnx with no ``shapes=`` and, for every size, a static one from the same file with the
size pinned (``shapes=``; at the size of the static export NAME.onnx, from that file).  Each size runs both, interleaved in rounds of ``--block`` runs in this
process (a busy stretch of the machine slows both alike), and the table shows their median
latencies, the spread (p10-p90), the ratio dynamic / static and how far the dynamic artifact is
from onnxruntime on that size.  Compile times are printed as they happen (``--no-cache``: cold).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: the sizes of the comparison: the first of each model is the one the done-when line names
SIZES = {
    "resnet50": ["1x3x224x224", "2x3x320x256", "1x3x640x640"],
    "bert_base": ["1x128", "1x8", "4x384"],
}


def feeds_for(name: str, size: tuple, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    if name == "bert_base":
        b, s = size
        mask = np.ones((b, s), np.int64)
        mask[:, s - s // 4:] = 0                 # the last quarter is padding, as in models.py
        return {"input_ids": rng.integers(0, 30522, (b, s)).astype(np.int64), "attention_mask": mask}
    return {"input": rng.standard_normal(size).astype(np.float32)}


def pinned_shapes(name: str, size: tuple) -> dict:
    if name == "bert_base":
        return {"input_ids": size, "attention_mask": size}
    return {"input": size}


def native_size(path: Path) -> tuple:
    """The static export's first input shape."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return tuple(d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim)


def max_rel_error(got: dict, want: list) -> float:
    worst = 0.0
    for g, w in zip(got.values(), want):
        scale = max(float(np.abs(w).max()), 1e-6)
        worst = max(worst, float(np.abs(np.asarray(g, np.float64) - w).max()) / scale)
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--sizes", nargs="*", help="sizes as BxCxHxW or BxS (default: every size of the model)")
    ap.add_argument("--out", default=str(ROOT / "build" / "models"), help="the models folder")
    ap.add_argument("--runs", type=int, default=20, help="timed runs per artifact and size")
    ap.add_argument("--block", type=int, default=2, help="runs per artifact in each round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="threads per artifact (0: the runtime's default)")
    ap.add_argument("--no-cache", action="store_true", help="compile cold (times the compiler)")
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with onnxruntime")
    ap.add_argument("--profile", action="store_true", help="compile with profile=True; print the kernels")
    args = ap.parse_args(argv)

    import ember
    import models as model_set
    from cpu import time_runs

    out = Path(args.out)
    for name in args.models:
        if not model_set.is_built(name, out, dynamic=True):
            model_set.update_manifest(out, {name: model_set.build(name, out, dynamic=True)})

    def compile_(path, **kw):
        t0 = time.perf_counter()
        m = ember.compile(str(path), cache=not args.no_cache, profile=args.profile, **kw)
        if args.threads:
            m.num_threads = args.threads
        return m, time.perf_counter() - t0

    rows = []
    for name in args.models:
        path = out / f"{name}_dyn.onnx"
        dyn, t_dyn = compile_(path)
        print(f"{name}: dynamic artifact compiled in {t_dyn:.1f} s", flush=True)
        for text in args.sizes or SIZES[name]:
            size = tuple(int(d) for d in text.split("x"))
            if len(size) != (2 if name == "bert_base" else 4):
                continue
            native = out / f"{name}.onnx"
            if native_size(native) == size:       # the static export itself
                static, t_static = compile_(native)
            else:                                  # the same graph with the size pinned
                static, t_static = compile_(path, shapes=pinned_shapes(name, size))
            feeds = feeds_for(name, size)
            err = float("nan")
            if not args.no_check:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                want = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)
                err = max_rel_error(dyn.run(feeds), want)
            before = (dict(static.profile()), dict(dyn.profile())) if args.profile else None
            ts = time_runs({"static": static.run, "dynamic": dyn.run}, feeds, args.warmup, args.runs, args.block)
            med = {k: statistics.median(v) * 1e3 for k, v in ts.items()}
            spread = {k: (np.percentile(v, 10) * 1e3, np.percentile(v, 90) * 1e3) for k, v in ts.items()}
            rows.append((name, text, med, spread, med["dynamic"] / med["static"], err, t_static))
            print(f"  {text:>12}: static {med['static']:8.2f} ms ({spread['static'][0]:.2f}-{spread['static'][1]:.2f}), "
                  f"dynamic {med['dynamic']:8.2f} ms ({spread['dynamic'][0]:.2f}-{spread['dynamic'][1]:.2f}), "
                  f"ratio {med['dynamic'] / med['static']:.3f}, max rel. error vs onnxruntime {err:.1e}, "
                  f"static compile {t_static:.1f} s", flush=True)
            if args.profile:
                calls = args.warmup + args.runs + -(-args.runs // max(args.block, 1))   # with the settling runs
                _print_profile(before, static.profile(), dyn.profile(), calls)
    print("\nmodel       size          static ms  dynamic ms  dynamic/static")
    for name, text, med, _, ratio, _, _ in rows:
        print(f"{name:<11} {text:<13} {med['static']:9.2f}  {med['dynamic']:10.2f}  {ratio:14.3f}")
    return 0


def _print_profile(before, static: dict, dyn: dict, runs: int) -> None:
    """Per-kernel milliseconds per run of this size, the dynamic artifact's largest first, with the
    static artifact's kernel of the same name beside it."""
    s = {k: (v - before[0].get(k, 0.0)) * 1e3 / runs for k, v in static.items()}
    d = {k: (v - before[1].get(k, 0.0)) * 1e3 / runs for k, v in dyn.items()}
    print(f"    {'kernel':<60} {'static':>8} {'dynamic':>8}")
    for k in sorted(d, key=d.get, reverse=True)[:25]:
        print(f"    {k[:60]:<60} {s.get(k, float('nan')):8.3f} {d[k]:8.3f}")
    print(f"    {'total':<60} {sum(s.values()):8.3f} {sum(d.values()):8.3f}")


if __name__ == "__main__":
    sys.exit(main())

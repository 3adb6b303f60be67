#!/usr/bin/env python3
"""The corpus table: every real model of tests/corpus (registry-shipped trained models and
transformers exports by both exporters) compiled once by Ember with no ``shapes=`` and run at
each of its sizes, next to onnxruntime in the same process (warm, the same number of threads,
onnxruntime's spinning threads off).

    python benchmarks/corpus.py                       # all models, 2 threads, markdown table
    python benchmarks/corpus.py --only bert_ts magika --runs 50
    python benchmarks/corpus.py --json build/corpus.json

Per model: source, exporter, the sizes tried, whether it compiled (or the error it stops at),
the largest relative error against onnxruntime per size, and Ember's and onnxruntime's median
latency per size.  Build the corpus first (``make corpus``)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus.catalog import default_out, missing, models  # noqa: E402
from tests.corpus.check import check  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _size(size: dict) -> str:
    return " ".join("x".join(map(str, v)) or "()" for v in size.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(default_out()), help="the corpus folder")
    ap.add_argument("--only", nargs="*", help="these models only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per size and engine")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    import onnxruntime

    import ember

    folder = Path(args.out)
    gone = missing(folder)
    print(f"CPU: {cpu_name()}; {args.threads} threads; onnxruntime {onnxruntime.__version__} "
          f"(session.intra_op.allow_spinning=0); median of {args.runs} warm runs\n")
    print("| model | source | exporter | size (inputs) | compiled | max rel. error | Ember ms | onnxruntime ms |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    passed = 0
    chosen = [m for m in models() if not args.only or m.name in args.only]
    for m in chosen:
        head = f"| {m.name} | {m.source} | {m.exporter} |"
        if m.name in gone and not (folder / m.file).exists():
            print(f"{head} - | not built: {gone[m.name]} | | | |")
            continue
        r = check(m, folder, threads=args.threads, timing=True, runs=args.runs)
        passed += r.ok
        rows.append({"model": m.name, "source": m.source, "exporter": m.exporter, "compiled": r.compiled,
                     "ok": r.ok, "error": r.error, "compile_s": r.compile_s,
                     "sizes": [{"size": {k: list(v) for k, v in s.size.items()}, "error": s.error,
                                "problem": s.problem, "ember_ms": s.ember_ms, "ort_ms": s.ort_ms}
                               for s in r.sizes]})
        if not r.compiled:
            sizes = "; ".join(_size(s) for s in m.sizes)
            print(f"{head} {sizes} | no: {_cell(r.error)} | | | |")
            continue
        for i, s in enumerate(r.sizes):
            first = head if i == 0 else "| | | |"
            status = f"yes ({r.compile_s:.0f} s)" if i == 0 else ""
            err = f"{s.error:.1e}" if s.error is not None else "-"
            if s.problem:
                err = f"{err} **{_cell(s.problem)}**"
            ems = f"{s.ember_ms:.2f}" if s.ember_ms is not None else "-"
            oms = f"{s.ort_ms:.2f}" if s.ort_ms is not None else "-"
            print(f"{first} {_size(s.size)} | {status} | {err} | {ems} | {oms} |", flush=True)
    print(f"\n{passed} of {len(chosen)} models compile and match onnxruntime at every size "
          f"(ember {ember.__version__ if hasattr(ember, '__version__') else ''})".rstrip())
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "models": rows},
                                              indent=1))
    return 0


def _cell(text: str | None, limit: int = 220) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


if __name__ == "__main__":
    sys.exit(main())

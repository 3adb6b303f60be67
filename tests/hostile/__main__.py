"""``python -m tests.hostile``: run the hostile cases and print a table per kind."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .case import KIND_TITLES, KINDS, select
from .suite import (PRELOAD, STILL_GOOD, check_cache, cold_children, make_run_dir, run_cases, run_one,
                    snapshot_cache, table, user_cache_changes, write_results)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.hostile", description=__doc__)
    ap.add_argument("--kind", action="append", choices=KINDS, help="only this kind (repeatable)")
    ap.add_argument("-k", action="append", dest="patterns", metavar="TEXT",
                    help="only cases whose name contains TEXT (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    ap.add_argument("--json", type=Path, help="write every case's result to this file")
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (cases, cache)")
    ap.add_argument("-v", action="store_true", help="print every case as it finishes")
    ap.add_argument("--ort", action="store_true",
                    help="also run onnxruntime on the same cases (the artifacts kind has no equivalent)")
    args = ap.parse_args(argv)

    cases = select(args.kind, args.patterns)
    if args.list:
        for c in cases:
            print(f"{c.name}  [{c.expect}]")
        print(f"{len(cases)} cases")
        return 0
    run_dir = make_run_dir()
    t0 = time.perf_counter()

    known = {c.name: c.known for c in cases if c.known}

    def progress(r, who=""):
        if args.v or r.verdict == "FAIL":
            mark = " (known failure)" if r.case in known and r.verdict == "FAIL" else ""
            print(f"{who}{r.verdict}{mark} {r.case} ({r.seconds:.1f} s) {r.reason} {r.detail[:160]}".rstrip(),
                  flush=True)

    before = snapshot_cache()
    try:
        results = run_cases(cases, run_dir, progress=progress)
        problems = check_cache(run_dir / "cache")
        good = run_one(STILL_GOOD, run_dir, run_dir / "cache")
        if good.verdict != "PASS":
            problems.append(f"after the suite the cache gives: {good.reason}: {good.detail}")
        problems += user_cache_changes(before)
        cold = cold_children(results)
        if cold:
            problems.append(f"{len(cold)} cases ran in children that imported Ember themselves (the fork server "
                            f"had not loaded {PRELOAD}), e.g. {cold[:3]}")
        ort_results = None
        if args.ort:
            ort_results = run_cases(cases, run_dir, mode="ort", progress=lambda r: progress(r, "onnxruntime: "))
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"run folder: {run_dir}")
    if args.json:
        write_results(args.json, ember=results, ort=ort_results)
    print()
    print(table(results))
    if ort_results:
        print("\nonnxruntime on the same cases (any exception counts as a refusal; skip: no equivalent):")
        print(table(ort_results))
    print(f"\n{len(results)} cases in {time.perf_counter() - t0:.0f} s; kinds: " +
          "; ".join(f"{k} = {v}" for k, v in KIND_TITLES.items()))
    for p in problems:
        print(f"cache: {p}")
    for r in results:
        if r.case in known:
            print(f"known failure: {r.case}: {known[r.case]}" if r.verdict == "FAIL" else
                  f"known failure that passes now (remove the mark): {r.case}")
    unexpected = [r for r in results if (r.verdict == "FAIL") != (r.case in known) and r.verdict != "SKIP"]
    return 1 if unexpected or problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compare a run of the ONNX conformance runner with the committed baseline.

    check_conformance.py RESULTS.json BASELINE.json            # exit 1 on a regression
    check_conformance.py RESULTS.json BASELINE.json --update   # write RESULTS as the new baseline

RESULTS.json is what ``tests/onnx/conformance.py --json`` writes.  A run with every input at
run time (``--runtime-inputs``) has its own baseline, ``tests/conformance_baseline_runtime.json``;
the mode is recorded in both files and ``--update`` refuses to mix them.  A *regression* is a test that
passed in the baseline and does not pass now; tests the run left out (``--filter``, fewer
``--suites``) are not regressions.  Tests that pass now but not in the baseline are reported so
that the baseline can be raised: after ``make conformance`` (a full run of every suite),
``--update`` writes ``build/conformance.json`` as ``tests/conformance_baseline.json``.  It refuses
a run that was filtered or left out a suite the baseline has, since writing it would drop those
tests from the baseline.

The baseline keeps only what the comparison (and the tool's own ``--baseline``) reads: for every
test its name and status, one test per line so that a change of status is a one-line diff.  The
node tests are named ``test_*``, the others ``SUITE/test_*``.
"""

from __future__ import annotations

import argparse
import json
import sys


def load_cases(path: str) -> dict[str, str]:
    """Test name -> status from a results or baseline file."""
    with open(path) as f:
        doc = json.load(f)
    return {c["name"]: c["status"] for c in doc["cases"]}


def compare(results: dict[str, str], baseline: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(regressed, newly passing, not in baseline) test names, sorted."""
    regressed = sorted(n for n, s in results.items() if baseline.get(n) == "pass" and s != "pass")
    fixed = sorted(n for n, s in results.items() if n in baseline and baseline[n] != "pass" and s == "pass")
    new = sorted(n for n in results if n not in baseline)
    return regressed, fixed, new


def suite_of(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "node"


def partial_run(results_path: str, baseline_path: str) -> str | None:
    """Why the results cannot replace the baseline (a filtered run, a suite left out), or None."""
    with open(results_path) as f:
        doc = json.load(f)
    if doc.get("filter") or doc.get("exclude"):
        return f"the run was filtered (--filter {doc.get('filter')!r}, --exclude {doc.get('exclude')!r})"
    try:
        old = {suite_of(n) for n in load_cases(baseline_path)}
        with open(baseline_path) as f:
            old_mode = json.load(f).get("mode", "default")
    except FileNotFoundError:
        return None
    if doc.get("mode", "default") != old_mode:
        return f"the run is in mode {doc.get('mode', 'default')!r}, the baseline in {old_mode!r}"
    missing = sorted(old - {suite_of(c["name"]) for c in doc["cases"]} - set(doc.get("suites") or ()))
    if missing:
        return f"the run left out the suite(s) {', '.join(missing)} of the baseline"
    return None


def write_baseline(results_path: str, path: str) -> None:
    with open(results_path) as f:
        doc = json.load(f)
    cases = sorted(({"name": c["name"], "status": c["status"]} for c in doc["cases"]), key=lambda c: c["name"])
    passed = sum(c["status"] == "pass" for c in cases)
    suites = sorted({suite_of(c["name"]) for c in cases}, key=lambda t: (t != "node", t))
    head = {"tool": doc.get("tool"), "tool_version": doc.get("tool_version"), "backend": doc.get("backend"),
            "mode": doc.get("mode", "default"),
            "versions": {k: v for k, v in doc.get("versions", {}).items() if k == "onnx"},
            "suites": suites, "summary": {"passed": passed, "failed": len(cases) - passed}}
    with open(path, "w") as f:
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "cases": [\n  '
                + ",\n  ".join(json.dumps(c) for c in cases) + "\n ]\n}\n")


def report(results: dict[str, str], baseline: dict[str, str]) -> int:
    """Print the comparison of ``results`` with ``baseline`` (test name -> status); 1 on a regression."""
    regressed, fixed, new = compare(results, baseline)
    passed = sum(s == "pass" for s in results.values())
    print(f"conformance: {passed} of {len(results)} passed; vs baseline: {len(regressed)} regressed, "
          f"{len(fixed)} newly passing, {len(new)} not in the baseline")
    suites = sorted({suite_of(n) for n in results}, key=lambda t: (t != "node", t))
    if len(suites) > 1:
        print("  " + ", ".join(f"{t} {sum(s == 'pass' for n, s in results.items() if suite_of(n) == t)}/"
                               f"{sum(suite_of(n) == t for n in results)}" for t in suites))
    for n in regressed:
        print(f"  REGRESSED {n}: {results[n]}")
    if fixed:
        print(f"  newly passing (raise the baseline with --update): {', '.join(fixed[:20])}"
              + (f", ... ({len(fixed) - 20} more)" if len(fixed) > 20 else ""))
    return 1 if regressed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("baseline")
    p.add_argument("--update", action="store_true", help="write the results as the new baseline")
    p.add_argument("--force", action="store_true", help="--update even from a filtered or partial run")
    args = p.parse_args(argv)
    if args.update:
        why = None if args.force else partial_run(args.results, args.baseline)
        if why:
            print(f"not updating {args.baseline}: {why} (--force to write it anyway)", file=sys.stderr)
            return 2
        write_baseline(args.results, args.baseline)
        print(f"wrote {args.baseline}")
        return 0
    return report(load_cases(args.results), load_cases(args.baseline))


if __name__ == "__main__":
    sys.exit(main())

"""Runs cases in a pool of two workers, judges them, and tabulates the results."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import tempfile
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .case import EITHER, KINDS, REFUSE, RUN, Case, register_extra, timeout_scale

#: Address space a case may add to what the child uses when it starts.
MEM_BYTES = int(os.environ.get("HOSTILE_MEM_MB", "2048")) << 20
WORKERS = int(os.environ.get("HOSTILE_WORKERS", "2"))

#: Failure reasons, in table order.
REASONS = ("crash", "hang", "memory", "leak", "accepted", "refused-valid", "wrong", "harness")


@dataclass
class Result:
    case: str
    kind: str
    expect: str
    verdict: str        # PASS, FAIL, SKIP
    reason: str         # "" when PASS; one of REASONS when FAIL
    detail: str
    seconds: float
    #: forked from a fork server that had loaded ``PRELOAD`` (False: the child imported it all;
    #: None: the child wrote no outcome)
    warm: bool | None = None


_ctx = None

#: The module the fork server imports before it forks the first case.
PRELOAD = __package__ + ".warm"


def context():
    """The forkserver context, its server started with Ember, onnx, numpy and what each case
    would otherwise do first in its own child (``warm.py``) loaded.

    Python starts the server with ``python -c`` and, before 3.12, without this process's
    ``sys.path``; it ignores a preload it cannot import.  Under pytest this package is
    ``hostile`` (found through ``tests/`` on pytest's path), so that server imported nothing and
    every case's child imported Ember, onnx and onnxruntime again (seconds a case).  The server
    is therefore started here with the folder above this package on its ``PYTHONPATH``; each
    case's child reports whether it was forked from a loaded server (``Result.warm``)."""
    global _ctx
    if _ctx is None:
        from multiprocessing import forkserver

        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([PRELOAD])
        root = str(Path(__file__).resolve().parents[__package__.count(".") + 1])
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *([saved] if saved else [])])
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        _ctx = ctx
    return _ctx


def _start(target, args, timeout: float) -> tuple[int | None, bool]:
    """Runs ``target(*args)`` in a fresh child; (exit code, timed out)."""
    p = context().Process(target=target, args=args, daemon=True)
    p.start()
    p.join(timeout)
    timed_out = p.is_alive()
    if timed_out:
        for sig_target in (lambda: os.killpg(p.pid, signal.SIGKILL), p.kill):
            try:
                sig_target()
            except (ProcessLookupError, PermissionError):
                pass
        p.join(10)
    else:   # the case's own process group may still hold children (a C compiler)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return p.exitcode, timed_out


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_one(case: Case, run_dir: Path, cache_dir: Path, mode: str = "ember") -> Result:
    """Runs and judges one case: Ember (``mode="ember"``) or onnxruntime (``"ort"``)."""
    from .child import run_case
    from .oracle import run_oracle

    case_dir = run_dir / ("cases" if mode == "ember" else "ort-cases") / case.name.replace("/", "__")
    case_dir.mkdir(parents=True, exist_ok=True)
    out = case_dir / "outcome.json"
    t0 = time.perf_counter()
    timeout = case.timeout * timeout_scale()
    code, timed_out = _start(run_case, (case.name, str(run_dir), str(case_dir), str(out), MEM_BYTES,
                                        str(cache_dir), mode), timeout)
    rec = json.loads(out.read_text()) if out.exists() else None
    oracle = None
    if rec and rec.get("status") == "ran" and rec.get("oracle_model"):
        oout = case_dir / "oracle.json"
        ocode, otimed = _start(run_oracle, (rec["oracle_model"], rec["feeds"], rec["outputs"], str(oout),
                                            MEM_BYTES), 60 * timeout_scale())
        oracle = json.loads(oout.read_text()) if oout.exists() else {
            "status": "error", "message": "onnxruntime timed out" if otimed else f"onnxruntime died ({ocode})"}
    verdict, reason, detail = judge(case, code, timed_out, timeout, rec, oracle)
    return Result(case.name, case.kind, case.expect, verdict, reason, detail, time.perf_counter() - t0,
                  warm=rec.get("warm") if rec else None)


def judge(case: Case, code, timed_out: bool, timeout: float, rec: dict | None, oracle: dict | None):
    """(verdict, reason, detail) of one case."""
    if timed_out:
        return "FAIL", "hang", f"no answer after {timeout:.0f} s"
    if rec is None:
        if code is not None and code < 0:
            name = _signal_name(code)
            if name == "SIGKILL":
                return "FAIL", "memory", "killed (SIGKILL: out of memory?)"
            return "FAIL", "crash", f"the child died of {name}"
        return "FAIL", "crash", f"the child exited with status {code} without an answer"
    status = rec["status"]
    if status == "skipped":
        return "SKIP", "", rec.get("message", "")
    if status == "harness":
        return "FAIL", "harness", f"the suite's setup failed: {rec.get('type')}: {rec.get('message')}"
    if status == "raised":
        what = f"{rec['type']}: {rec['message']}"
        at = f" (at {' <- '.join(reversed(rec.get('where', [])))})"
        if rec["memory"]:
            return "FAIL", "memory", what + at
        if not rec["ember"]:
            return "FAIL", "leak", what + at
        if case.expect == RUN:
            return "FAIL", "refused-valid", what
        return "PASS", "", what
    # it ran
    if case.expect == REFUSE:
        return "FAIL", "accepted", "accepted and ran an invalid case"
    if "mismatch" in rec:
        if rec["mismatch"]:
            return "FAIL", "wrong", rec["mismatch"]
        return "PASS", "", "ran; agrees with the reference"
    if oracle is None or oracle.get("status") == "error":
        return "FAIL", "harness", f"no reference: {(oracle or {}).get('message')}"
    if oracle["status"] == "refused":
        if case.expect == EITHER:
            return "FAIL", "accepted", f"ran a model onnxruntime refuses ({oracle['message'][:200]})"
        return "FAIL", "harness", f"onnxruntime refuses a case that must run: {oracle['message'][:200]}"
    if oracle["mismatch"]:
        return "FAIL", "wrong", oracle["mismatch"] + " (onnxruntime)"
    return "PASS", "", "ran; agrees with onnxruntime"


def make_run_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ember-hostile-"))


def run_cases(cases: list[Case], run_dir: Path, *, progress=None, mode: str = "ember") -> list[Result]:
    """Runs ``cases`` two at a time, after building the prepared artifacts their kinds use
    (``prepare.py``) in a child of their own; results in case order."""
    from .prepare import USED_BY, build_all

    cache_dir = run_dir / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    needed = sorted({n for c in cases for n in USED_BY.get(c.kind, ())})
    if needed:
        _start(build_all, (str(run_dir), str(cache_dir), needed), 300 * timeout_scale())
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(run_one, c, run_dir, cache_dir, mode) for c in cases]
        results = []
        for f in futures:
            r = f.result()
            if progress:
                progress(r)
            results.append(r)
    return results


def table(results: list[Result]) -> str:
    """One row per kind: cases, passed, skipped, failed by reason."""
    by_kind: dict[str, list[Result]] = OrderedDict((k, []) for k in KINDS)
    for r in results:
        by_kind[r.kind].append(r)
    head = ["kind", "cases", "pass", "fail", *REASONS, "skip"]
    rows = [head]
    total = Counter()
    for kind, rs in by_kind.items():
        if not rs:
            continue
        c = Counter(r.reason for r in rs if r.verdict == "FAIL")
        row = {"kind": kind, "cases": len(rs), "pass": sum(r.verdict == "PASS" for r in rs),
               "fail": sum(r.verdict == "FAIL" for r in rs), "skip": sum(r.verdict == "SKIP" for r in rs),
               **{k: c[k] for k in REASONS}}
        for k, v in row.items():
            if k != "kind":
                total[k] += v
        rows.append([str(row[k]) for k in head])
    rows.append(["total", *[str(total[k]) for k in head[1:]]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(s.rjust(w) if i else s.ljust(w) for i, (s, w) in enumerate(zip(r, widths)))
    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows[1:-1]]
    lines += ["  ".join("-" * w for w in widths), fmt(rows[-1])]
    return "\n".join(lines)


def cold_children(results: list[Result]) -> list[str]:
    """The cases whose child was forked from a fork server that had not loaded ``PRELOAD``."""
    return [r.case for r in results if r.warm is False]


def check_cache(cache_dir: Path) -> list[str]:
    """Problems with the run's compile cache after the cases: entries that do not verify,
    leftover temporary files."""
    from ember.runtime import verify_artifact
    from ember.errors import EmberError

    problems = []
    if not cache_dir.exists():
        return problems
    for p in sorted(cache_dir.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(cache_dir)
        if p.name.endswith(".tmp") or p.name.startswith("."):
            problems.append(f"{rel}: a temporary file was left behind")
        elif p.suffix in (".so", ".ember"):
            try:
                verify_artifact(p)
            except EmberError as e:
                problems.append(f"{rel}: {e}")
    return problems


def snapshot_cache() -> dict[str, tuple]:
    """(size, mtime) of every entry in the user's compile cache (as this process's environment
    names it); temporary files and folders (names starting with '.') are not entries."""
    from ember.toolchain.cache import cache_dir

    root = cache_dir()
    if not root.is_dir():
        return {}
    out = {}
    for p in root.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        try:
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
        except OSError:
            pass
    return out


def user_cache_changes(before: dict[str, tuple]) -> list[str]:
    """Artifacts in the user's cache, new or changed since ``before``, that do not verify.
    (Other processes may share that cache and add whole entries; none may be damaged.)"""
    from ember.errors import EmberError
    from ember.runtime import verify_artifact

    after = snapshot_cache()
    changes = []
    for p, v in sorted(after.items()):
        if before.get(p) != v and p.endswith((".so", ".ember")):
            try:
                verify_artifact(p)
            except EmberError as e:
                changes.append(f"{p}: damaged during the suite: {e}")
    return changes


def _still_good(ctx, state):
    """After the suite: the run's cache still compiles correct modules (cache hits of the
    prepared models included)."""
    import numpy as np

    from . import models as M
    from .case import Ran
    from .prepare import strings_model

    x = M.rng(5).standard_normal((2, 3)).astype(np.float32)
    y = M.rng(6).standard_normal((2, 3)).astype(np.float32)
    out, exp = {}, {}
    a = M.compile_path(M.write_model(ctx, M.add_model(), "add.onnx"))
    out["z"], exp["z"] = a.run({"x": x, "y": y})["z"], x + y
    g = M.compile_path(M.write_model(ctx, M.gather_model(), "gather.onnx"))
    idx = np.array([4, 0, -1], np.int64)
    out["g"], exp["g"] = g.run({"idx": idx})["y"], np.arange(20, dtype=np.float32).reshape(5, 4)[idx]
    s = M.compile_path(M.write_model(ctx, strings_model(), "strings.onnx"))
    r = s.run({"s": np.array(["A", "b", "C"], dtype=object), "x": x})
    out["s"], exp["s"] = r["y"], np.array(["a", "b", "c"], dtype=object)
    out["r"], exp["r"] = r["z"], np.maximum(x, 0)
    return Ran(out, expected=exp)


STILL_GOOD = register_extra(Case("suite/cache-still-good", RUN, _still_good, timeout=60))


def write_results(path: Path, **runs: list[Result]) -> None:
    """Every case's result, per run ("ember", "ort"), as JSON."""
    path.write_text(json.dumps({k: [r.__dict__ for r in v] for k, v in runs.items() if v is not None}, indent=1))

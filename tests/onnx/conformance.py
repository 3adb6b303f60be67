#!/usr/bin/env python3
"""Run the ONNX backend test suites that ship with the installed ``onnx`` package against a backend.

    python tests/onnx/conformance.py                                  # the node suite, Ember
    python tests/onnx/conformance.py --suites all --json build/conformance.json \\
        --baseline tests/conformance_baseline.json                    # what `make conformance` does
    python tests/onnx/conformance.py --filter 'test_conv|test_gemm' -v
    python tests/onnx/conformance.py --backend some.module --suites simple,pytorch-operator

Suites: ``node`` (one test per op and variant), ``simple``, ``pytorch-converted`` and
``pytorch-operator``: folders under ``onnx/backend/test/data`` with a ``model.onnx`` and
``test_data_set_*/{input,output}_*.pb`` per case.  Recent onnx wheels ship no node folder; the
node cases are then written once, in the same layout, from the package's own case definitions
(``onnx.backend.test.loader``) into ``build/onnx-cases/onnx-VERSION/node``.  ``all`` runs the four.

The backend is a module (or object) with the ONNX backend API, ``ember.onnx.backend`` by default:
``prepare(model, device)`` returns a rep whose ``run(inputs)`` takes the inputs in graph-input
order and returns the outputs in graph-output order.  A case is *skipped* only when the backend
says so (``is_compatible(model, device)`` is false, or it raises ``unittest.SkipTest``).

Each case runs in one of ``--jobs`` worker processes, with ``--timeout`` seconds for prepare and
every run: a case that crashes its worker (a signal, an exit) is a ``crash``, one that runs over
its time a ``timeout``; the worker is then replaced and the run goes on.  What the backend prints
goes to a log per worker, not to the terminal.

Outputs are compared as onnx's own backend test runner compares them: as many outputs as
expected; sequences item by item; the same shape; strings exactly; otherwise the same dtype and
``numpy.testing.assert_allclose`` with the case's tolerances (rtol 1e-3, atol 1e-7 unless the
case declares others; at least two bfloat16 ulps for bfloat16), NaN where NaN is expected.
Statuses: pass, fail (outputs differ), error (the backend raised), crash, timeout, skip.

Printed: progress on stderr, a table per suite and the failing cases on stdout.  ``--json``
writes every case's name (node cases ``test_*``, the others ``SUITE/test_*``), suite, op types,
status, message and time, one case per line: the format ``check_conformance.py`` reads, so that
``--baseline`` (or ``check_conformance.py RESULTS BASELINE``) finds regressions and ``--update``
can make the run the new baseline.  Exit status: with ``--baseline``, 1 when a test that passes
in the baseline does not pass now; without it, 1 when any case failed; 2 when the run could not
start (a backend that does not load, a bad option).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# this checkout's ember before any installed one; check_conformance sits next to this file
for _p in (str(ROOT / "src"), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SUITES = ("node", "simple", "pytorch-converted", "pytorch-operator")
STATUSES = ("pass", "fail", "error", "crash", "timeout", "skip")
NOT_PASSED = ("fail", "error", "crash", "timeout")
RTOL, ATOL = 1e-3, 1e-7           # onnx's defaults for a backend test case
TOOL, TOOL_VERSION = "ember-conformance", "1"
MESSAGE_CHARS = 300


# ---- the cases ------------------------------------------------------------------------------------

def data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def _op_types(model) -> list[str]:
    return sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                   for n in model.graph.node})


def _tolerances(folder: Path) -> tuple[float, float]:
    """A file case's rtol and atol: its data.json's where it has one, else onnx's defaults."""
    meta = folder / "data.json"
    if not meta.exists():
        return RTOL, ATOL
    with open(meta) as f:
        data = json.load(f)
    return float(data.get("rtol", RTOL)), float(data.get("atol", ATOL))


def _folder_cases(suite: str, root: Path) -> list[dict]:
    import onnx

    cases = []
    for folder in sorted(p for p in root.iterdir() if (p / "model.onnx").is_file()):
        name = folder.name if suite == "node" else f"{suite}/{folder.name}"
        rtol, atol = _tolerances(folder)
        model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        cases.append({"name": name, "suite": suite, "ops": _op_types(model), "dir": str(folder),
                      "rtol": rtol, "atol": atol})
    return cases


def node_case_folder() -> Path:
    """The node cases as files, in the layout of the other suites: the package's own folder where
    it ships one, else written once per onnx version from onnx's case definitions (computing
    their expected outputs takes a while) into build/ (``$EMBER_ONNX_CASES`` moves it)."""
    import onnx

    packaged = data_dir() / "node"
    if packaged.is_dir() and any(packaged.iterdir()):
        return packaged
    root = Path(os.environ.get("EMBER_ONNX_CASES", ROOT / "build" / "onnx-cases"))
    folder = root / f"onnx-{onnx.__version__}" / "node"
    if not folder.is_dir():
        print(f"writing onnx {onnx.__version__}'s node cases to {folder} (once) ...", file=sys.stderr, flush=True)
        _write_node_cases(folder)
    return folder


def _write_node_cases(folder: Path) -> None:
    """Every case of onnx's definitions as model.onnx, test_data_set_*/{input,output}_*.pb and,
    where its tolerances are not the defaults, data.json; written into a temporary folder that
    is then renamed (a run that finds the folder finds it whole)."""
    import shutil
    import warnings

    from onnx.backend.test.loader import load_node_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        defined = load_node_model_tests()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".node-", dir=folder.parent))
    for case in defined:
        case_dir = tmp / case.name
        case_dir.mkdir()
        (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
        if (case.rtol, case.atol) != (RTOL, ATOL):
            (case_dir / "data.json").write_text(json.dumps({"rtol": case.rtol, "atol": case.atol}))
        for k, (inputs, outputs) in enumerate(case.data_sets):
            ds = case_dir / f"test_data_set_{k}"
            ds.mkdir()
            for kind, values, infos in (("input", inputs, case.model.graph.input),
                                        ("output", outputs, case.model.graph.output)):
                for j, value in enumerate(values):
                    _, encode, _ = _codec(infos[j].type)
                    (ds / f"{kind}_{j}.pb").write_bytes(encode(value, infos[j].name).SerializeToString())
    try:
        tmp.rename(folder)
    except OSError:                 # another run wrote it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def discover(suites, keep=None, drop=None) -> list[dict]:
    """The cases of ``suites`` whose name matches ``keep`` and not ``drop`` (compiled regexes)."""
    cases = []
    for suite in suites:
        folder = node_case_folder() if suite == "node" else data_dir() / suite
        if folder.is_dir() and any(folder.iterdir()):
            found = _folder_cases(suite, folder)
        else:
            raise SystemExit(f"error: the installed onnx has no {suite!r} suite ({folder})")
        cases += [c for c in found if (keep is None or keep.search(c["name"]))
                  and (drop is None or not drop.search(c["name"]))]
    return cases


# ---- one case (in a worker) -----------------------------------------------------------------------

# how a value of each kind of ONNX type is stored: proto class, value -> proto, proto -> value
def _codec(type_proto):
    import numpy as np
    import onnx
    from onnx import numpy_helper as nh

    kind = type_proto.WhichOneof("value")
    if kind == "sequence_type":
        return onnx.SequenceProto, nh.from_list, nh.to_list
    if kind == "optional_type":
        return onnx.OptionalProto, nh.from_optional, nh.to_optional
    if kind == "map_type":
        return onnx.MapProto, nh.from_dict, nh.to_dict
    return onnx.TensorProto, (lambda v, name: v if isinstance(v, onnx.TensorProto) else
                              nh.from_array(np.asarray(v), name)), nh.to_array


def _read_pb(path: Path, type_proto):
    """An input or output file, as the value of ONNX type ``type_proto``."""
    cls, _, decode = _codec(type_proto)
    proto = cls()
    proto.ParseFromString(path.read_bytes())
    return decode(proto)


def _folder_data_sets(folder: Path, model) -> list[tuple[list, list]]:
    sets = []
    for ds in sorted(folder.glob("test_data_set_*")):
        n_in = len(list(ds.glob("input_*.pb")))
        n_out = len(list(ds.glob("output_*.pb")))
        sets.append(([_read_pb(ds / f"input_{k}.pb", model.graph.input[k].type) for k in range(n_in)],
                     [_read_pb(ds / f"output_{k}.pb", model.graph.output[k].type) for k in range(n_out)]))
    return sets


def _as_array(value):
    import numpy as np
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def check_outputs(expected, actual, rtol: float, atol: float, where: str = "output") -> None:
    """Raise AssertionError where ``actual`` differs from ``expected`` (see the module docstring)."""
    import numpy as np

    if expected is None or actual is None:
        if expected is not None or actual is not None:
            raise AssertionError(f"{where}: expected {type(expected).__name__}, got {type(actual).__name__}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            raise AssertionError(f"{where}: the map's keys differ")
        for key in expected:
            check_outputs(expected[key], actual[key], rtol, atol, f"{where}[{key!r}]")
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            got = f"{len(actual)} items" if isinstance(actual, (list, tuple)) else type(actual).__name__
            raise AssertionError(f"{where}: expected a sequence of {len(expected)} items, got {got}")
        for k, (e, a) in enumerate(zip(expected, actual)):
            check_outputs(e, a, rtol, atol, f"{where}[{k}]")
        return
    expected, actual = _as_array(expected), _as_array(actual)
    if actual.shape != expected.shape:
        raise AssertionError(f"{where}: shape {actual.shape}, expected {expected.shape}")
    if expected.dtype == object or expected.dtype.kind in "SU":
        if not np.array_equal(actual.astype(object), expected.astype(object)):
            raise AssertionError(f"{where}: strings differ")
        return
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{where}: dtype {actual.dtype}, expected {expected.dtype}")
    if expected.dtype.name == "bfloat16":
        rtol = max(rtol, 2.0 ** -6)
    if expected.dtype.kind == "V":     # ml_dtypes' narrow floats: compare their values
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    try:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
    except AssertionError as exc:
        detail = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith(("Mismatched", "Max"))]
        raise AssertionError(f"{where}: not close (rtol {rtol:g}, atol {atol:g}): {'; '.join(detail)}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:MESSAGE_CHARS]


def run_case(backend, case: dict, device: str) -> dict:
    """Prepare and run one case on ``backend``; returns its status and message."""
    import onnx

    try:
        folder = Path(case["dir"])
        model = onnx.load(str(folder / "model.onnx"))
        data_sets = _folder_data_sets(folder, model)
    except Exception as exc:       # the case's files, not the backend
        return {"status": "error", "message": f"reading the case: {_one_line(exc)}"}
    try:
        compatible = getattr(backend, "is_compatible", None)
        if callable(compatible) and not compatible(model, device):
            return {"status": "skip", "message": "the backend says it is not compatible"}
        rep = backend.prepare(model, device)
        results = [rep.run(inputs) for inputs, _ in data_sets]
    except unittest.SkipTest as exc:
        return {"status": "skip", "message": _one_line(exc)}
    except Exception as exc:
        return {"status": "error", "message": _one_line(exc)}
    for k, ((_, expected), actual) in enumerate(zip(data_sets, results)):
        try:
            actual = list(actual)
            if len(actual) != len(expected):
                raise AssertionError(f"{len(actual)} outputs, expected {len(expected)}")
            for j, (e, a) in enumerate(zip(expected, actual)):
                check_outputs(e, a, case["rtol"], case["atol"], f"output {j}")
        except Exception as exc:
            return {"status": "fail", "message": f"data set {k}: {str(exc)[:MESSAGE_CHARS]}"}
    return {"status": "pass", "message": ""}


def load_backend(spec: str):
    """``MODULE`` or ``MODULE:ATTR``: an object with ``prepare``."""
    module_name, _, attr = spec.partition(":")
    obj = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    if not callable(getattr(obj, "prepare", None)):
        raise TypeError(f"{spec} has no prepare(model, device)")
    return obj


def _serve(conn, spec: str, device: str, log_path: str) -> None:
    """A worker: load the backend, then run the cases the parent sends until it sends None."""
    os.setsid()                     # its own process group: a timeout kills the compilers it started too
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        backend = load_backend(spec)
    except BaseException as exc:
        conn.send({"fatal": f"cannot load backend {spec!r}: {_one_line(exc)}"})
        return
    import numpy
    import onnx

    versions = {"onnx": onnx.__version__, "numpy": numpy.__version__}
    top = sys.modules.get(spec.partition(":")[0].split(".")[0])
    if getattr(top, "__version__", None):
        versions[top.__name__] = top.__version__
    conn.send({"ready": versions})
    while (case := conn.recv()) is not None:
        print(f"--- {case['name']}", flush=True)
        start = time.perf_counter()
        try:
            reply = run_case(backend, case, device)
        except BaseException as exc:
            reply = {"status": "error", "message": _one_line(exc)}
        reply["time_s"] = round(time.perf_counter() - start, 3)
        sys.stdout.flush()
        conn.send(reply)


# ---- the pool of workers (parent) -----------------------------------------------------------------

class Worker:
    def __init__(self, ctx, spec: str, device: str, log_path: str):
        self.log_path = log_path
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, spec, device, log_path), daemon=True)
        self.proc.start()
        child.close()
        self.case: dict | None = None
        self.started = self.deadline = 0.0

    def kill(self) -> None:
        for kill in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), self.proc.kill):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.join()
        self.conn.close()

    def why_dead(self) -> str:
        self.proc.join(5)
        code = self.proc.exitcode
        if code is None:
            self.kill()
            why = "the worker stopped answering"
        elif code < 0:
            try:
                why = f"worker killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"worker killed by signal {-code}"
        else:
            why = f"worker exited with status {code}"
        last = self.last_log_line()
        return f"{why} ({last})" if last else why

    def last_log_line(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 2000))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
        except OSError:
            return ""
        lines = [ln for ln in lines if ln and not ln.startswith("--- ")]
        return lines[-1][:MESSAGE_CHARS] if lines else ""


class StartError(Exception):
    pass


def run_pool(cases: list[dict], spec: str, device: str, jobs: int, timeout: float, on_result,
             start_timeout: float = 300.0) -> tuple[list[dict], dict]:
    """Run ``cases`` on ``jobs`` workers; ``on_result(result)`` after each.  Returns the results
    (the case's name, suite and ops with status, message and time) and the workers' versions."""
    ctx = multiprocessing.get_context("spawn")
    logs = tempfile.mkdtemp(prefix="ember-conformance-")
    todo = collections.deque(cases)
    slots: list[Worker | None] = [None] * max(1, min(jobs, len(cases)))
    results, versions = [], {}

    def finish(worker: Worker, reply: dict) -> None:
        case = worker.case
        worker.case = None
        reply.setdefault("time_s", round(time.monotonic() - worker.started, 3))
        res = {"name": case["name"], "suite": case["suite"], "ops": case["ops"], **reply}
        results.append(res)
        on_result(res)

    def start(index: int) -> Worker:
        worker = Worker(ctx, spec, device, os.path.join(logs, f"worker{index}.log"))
        if not worker.conn.poll(start_timeout):
            worker.kill()
            raise StartError(f"the backend worker did not start within {start_timeout:g} s")
        try:
            hello = worker.conn.recv()
        except EOFError:
            raise StartError(f"the backend worker failed to start: {worker.why_dead()}") from None
        if "fatal" in hello:
            worker.kill()
            raise StartError(hello["fatal"])
        versions.update(hello["ready"])
        return worker

    try:
        while todo or any(w is not None and w.case is not None for w in slots):
            for i, w in enumerate(slots):
                if todo and (w is None or w.case is None):
                    if w is None:
                        w = slots[i] = start(i)
                    w.case = todo.popleft()
                    w.started = time.monotonic()
                    w.deadline = w.started + timeout
                    w.conn.send(w.case)
            busy = [w for w in slots if w is not None and w.case is not None]
            wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=min(wait, 1.0))
            for i, w in enumerate(slots):
                if w is None or w.case is None:
                    continue
                if w.conn in ready:
                    try:
                        finish(w, w.conn.recv())
                        continue
                    except (EOFError, OSError):
                        why = w.why_dead()
                        w.kill()
                        finish(w, {"status": "crash", "message": why})
                elif time.monotonic() >= w.deadline:
                    w.kill()
                    finish(w, {"status": "timeout", "message": f"not done within {timeout:g} s"})
                else:
                    continue
                slots[i] = None
    finally:
        for w in slots:
            if w is None:
                continue
            if w.case is None:
                try:
                    w.conn.send(None)
                    w.proc.join(10)
                except (OSError, ValueError):
                    pass
            w.kill()
        for log in Path(logs).glob("*.log"):
            log.unlink()
        os.rmdir(logs)
    return results, versions


# ---- reporting ------------------------------------------------------------------------------------

def suite_table(results: list[dict], suites) -> str:
    rows = [("suite", "cases", *STATUSES)]
    counts = {s: collections.Counter(r["status"] for r in results if r["suite"] == s) for s in suites}
    counts["total"] = collections.Counter(r["status"] for r in results)
    for suite, c in counts.items():
        rows.append((suite, str(sum(c.values())), *(str(c[s]) for s in STATUSES)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}" + "".join(f"{v:>9}" for v in r[1:]) for r in rows)


def write_json(path: str, head: dict, results: list[dict]) -> None:
    """The results, one case per line (a change of status is a one-line diff), written whole."""
    keys = ("name", "suite", "ops", "status", "message", "time_s")
    text = (json.dumps(head, indent=1)[:-2] + ',\n "cases": [\n  '
            + ",\n  ".join(json.dumps({k: r[k] for k in keys}) for r in results) + "\n ]\n}\n")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="ember.onnx.backend", metavar="MODULE[:ATTR]",
                    help="what has prepare(model, device) (default: %(default)s)")
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--suites", default="node", help=f"comma-separated from {', '.join(SUITES)}, or all "
                                                      "(default: node)")
    ap.add_argument("--filter", metavar="REGEX", help="only the cases whose name matches")
    ap.add_argument("--exclude", metavar="REGEX", help="leave out the cases whose name matches")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="workers (default: CPUs)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default: 60)")
    ap.add_argument("--json", metavar="OUT", help="write every case's result here")
    ap.add_argument("--baseline", metavar="JSON", help="a baseline (or an earlier --json): report "
                                                       "regressions; exit 1 on one")
    ap.add_argument("--show-failures", type=int, default=30, metavar="N",
                    help="list the first N cases that did not pass (default: 30)")
    ap.add_argument("--runtime-inputs", action="store_true",
                    help="every input at run time: Ember's backend compiles each model once, as "
                         "ember.compile does, and does not specialize (sets EMBER_BACKEND_SPECIALIZE=0)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's result")
    a = ap.parse_args(argv)

    suites = list(SUITES) if a.suites == "all" else [s.strip() for s in a.suites.split(",") if s.strip()]
    if not suites or set(suites) - set(SUITES):
        ap.error(f"--suites: choose from {', '.join(SUITES)} or all")
    try:
        keep = re.compile(a.filter) if a.filter else None
        drop = re.compile(a.exclude) if a.exclude else None
    except re.error as exc:
        ap.error(f"bad regex: {exc}")
    cases = discover(suites, keep, drop)
    if not cases:
        print("error: no case matches", file=sys.stderr)
        return 2

    import onnx

    if a.runtime_inputs:            # the workers inherit it
        os.environ["EMBER_BACKEND_SPECIALIZE"] = "0"
    mode = "runtime-inputs" if a.runtime_inputs else "default"
    print(f"onnx {onnx.__version__}: {len(cases)} cases ({', '.join(suites)}), backend {a.backend} ({mode}), "
          f"{a.jobs} workers, {a.timeout:g} s per case", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    last_progress = [t0]
    done = collections.Counter()

    def on_result(res: dict) -> None:
        done[res["status"]] += 1
        n = sum(done.values())
        if a.verbose or res["status"] in ("crash", "timeout"):
            print(f"[{n}/{len(cases)}] {res['status']:7} {res['name']}"
                  + (f": {res['message']}" if res["message"] else ""), file=sys.stderr, flush=True)
        if time.monotonic() - last_progress[0] >= 15 or n == len(cases):
            last_progress[0] = time.monotonic()
            print(f"[{n}/{len(cases)}] {done['pass']} passed, {sum(done[s] for s in NOT_PASSED)} failed, "
                  f"{done['skip']} skipped ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        results, versions = run_pool(cases, a.backend, a.device, a.jobs, a.timeout, on_result)
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results.sort(key=lambda r: r["name"])
    duration = time.monotonic() - t0

    if a.json:
        head = {"tool": TOOL, "tool_version": TOOL_VERSION, "backend": a.backend, "device": a.device,
                "mode": mode, "suites": suites, "filter": a.filter, "exclude": a.exclude,
                "versions": {"python": sys.version.split()[0], **versions}, "started": started,
                "duration_s": round(duration, 1), "jobs": a.jobs, "timeout_s": a.timeout,
                "summary": {"passed": done["pass"], "failed": sum(done[s] for s in NOT_PASSED),
                            "skipped": done["skip"], **{s: done[s] for s in STATUSES}}}
        write_json(a.json, head, results)

    print(suite_table(results, suites))
    failed = [r for r in results if r["status"] in NOT_PASSED]
    if failed and a.show_failures > 0:
        print(f"\nnot passed ({len(failed)}):")
        for r in failed[:a.show_failures]:
            print(f"  {r['status']:7} {r['name']}: {r['message']}")
        if len(failed) > a.show_failures:
            print(f"  ... and {len(failed) - a.show_failures} more" + (f" (in {a.json})" if a.json else ""))
    print(f"\n{done['pass']} passed, {len(failed)} failed, {done['skip']} skipped in {duration:.0f} s "
          f"(backend {a.backend}, onnx {onnx.__version__})")
    if a.baseline:
        import check_conformance

        return check_conformance.report({r["name"]: r["status"] for r in results},
                                        check_conformance.load_cases(a.baseline))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

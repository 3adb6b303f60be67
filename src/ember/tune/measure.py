"""One measurement of ``ember tune``, run in a child process: compile a model with knobs set on
some of its kernels, run it on seeded inputs, time every kernel, and compare the outputs with
the untuned model's.

    python -m ember.tune.measure REQUEST.json RESULT.json

The request names the model, the target, the compile options, the knobs per workload
(``kernel_knobs``), how many runs to time and, optionally, the untuned outputs to compare with
(``reference``, an .npz), where to save this run's outputs (``save_outputs``), where to build
its library (``library_at``: it never goes into the compile cache), where to keep a copy of it
(``keep_library``) and whether to measure the machine's limits as well
(``machine``: :func:`.roofline.measure_machine`, on the thread count the model ran on).  The result
(written to a temporary file, then renamed) gives each workload's time per call (the median
over the runs, from the per-kernel profile read after each), the whole model's median time per run (with ``paired``, the same of the untuned model, timed in turn
with it, the median of each run's time over the untuned run's after it, ``paired_ratio``),
the process's CPU time per run (``cpu_ms``, ``paired_cpu_ms``: all its threads; other work on
the machine disturbs it less than the wall time), the thread count and every workload's description (``driver.kernels.Workload``).
Outputs that differ from the reference exit with status 3 (:data:`WRONG`), naming the output;
a candidate that crashes the compiler or the run ends the process however it ends: the parent
(:mod:`ember.tune.tuner`) only trusts a result file and a zero status.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

#: exit status of a run whose outputs differ from the reference
WRONG = 3


def measure(req: dict) -> dict:
    from ..benchmark import random_inputs
    from ..driver.compile import build_library, generate, to_graph
    from ..driver.program import needs_program
    from ..errors import EmberError
    from ..runtime import load
    from ..target import resolve
    from ..toolchain.cc import second_name

    tgt = resolve(req.get("target", "cpu"))
    if req.get("knobs"):
        from ..schedules.knobs import check_knobs

        tgt = tgt.with_knobs(check_knobs(req["knobs"]))
    t0 = time.perf_counter()
    graph = to_graph(req["model"], req.get("shapes"), req.get("bounds"))
    if needs_program(graph):
        raise EmberError(f"model '{graph.name}' has host steps (string ops): ember tune cannot time it")
    cm = generate(graph, tgt, int(req.get("opt_level", 3)), profile=True, kernel_knobs=req.get("kernel_knobs") or {})
    # each candidate's library is used once: it goes to a file of this trial's (``library_at``,
    # which the parent removes even after a crash; else a temporary file), not into the cache,
    # which it would fill and from which removing it could pull an entry from under another
    # process that found the same one
    if req.get("library_at"):
        name = req["library_at"]
    else:
        fd, name = tempfile.mkstemp(prefix="ember-trial-", suffix=".so")
        os.close(fd)
    lib = Path(name)
    try:
        build_library(cm, graph.name, tgt, None, lambda msg: None, tuple(req.get("cflags", ())), store_at=lib)
        compile_s = time.perf_counter() - t0
        if req.get("keep_library"):
            second_name(lib, Path(req["keep_library"]))
        module = load(lib)
    except BaseException:
        lib.unlink(missing_ok=True)
        raise
    if req.get("drop_library", True):
        lib.unlink(missing_ok=True)
    if req.get("threads"):
        module.num_threads = int(req["threads"])
    feeds = random_inputs(module, seed=int(req.get("seed", 0)), dims=req.get("sizes") or {})
    outs = module.run(feeds)
    if req.get("reference"):
        _compare(outs, np.load(req["reference"]), float(req.get("rtol", 1e-3)), float(req.get("atol", 1e-4)))
    if req.get("save_outputs"):
        _save_npz(req["save_outputs"], outs)
    # the untuned model beside it (``paired``: its library, kept by the first measurement), run
    # in turn with it, so each kernel is compared with its defaults at the same moments
    base = load(req["paired"]) if req.get("paired") else None
    if base is not None and req.get("threads"):
        base.num_threads = int(req["threads"])
    for _ in range(int(req.get("warmup", 2))):
        module.run(feeds)
        if base is not None:
            base.run(feeds)
    runs = max(1, int(req.get("runs", 10)))
    workloads = cm.workloads or {}
    timed = [(module, {key: [] for key in workloads}, [])]
    if base is not None:
        timed.append((base, {key: [] for key in workloads}, []))
    cpu: list[list[float]] = [[] for _ in timed]     # the process's CPU time per run (every thread)
    before = [m.profile() for m, _, _ in timed]
    for _ in range(runs):
        for i, (m, per_run, totals) in enumerate(timed):
            c, t = time.process_time(), time.perf_counter()
            m.run(feeds)
            totals.append((time.perf_counter() - t) * 1e3)
            cpu[i].append((time.process_time() - c) * 1e3)
            after = m.profile()
            for key, w in workloads.items():
                spent = sum(after.get(g, 0.0) - before[i].get(g, 0.0) for g in w.groups)
                per_run[key].append(1e3 * spent / len(w.groups))
            before[i] = after
    # medians over the runs: a run the machine interrupted does not count
    out = {"compile_s": compile_s, "total_ms": float(np.median(timed[0][2])), "runs": runs,
           "workloads": {key: asdict(w) for key, w in workloads.items()},
           "ms": {key: float(np.median(v)) for key, v in timed[0][1].items()}}
    out["threads"] = module.num_threads
    if req.get("machine"):
        # the limits the kernels' times are shown against, on this machine and thread count
        import subprocess

        from .roofline import measure_machine

        t = time.perf_counter()
        try:
            out["machine"] = asdict(measure_machine(module.num_threads))
        except (OSError, subprocess.CalledProcessError, EmberError) as e:
            out["machine_error"] = str(e)
        out["machine_s"] = time.perf_counter() - t
    if not req.get("drop_library", True):
        out["library"] = str(lib)
    out["cpu_ms"] = float(np.median(cpu[0]))
    if base is not None:
        out["paired_ms"] = {key: float(np.median(v)) for key, v in timed[1][1].items()}
        out["paired_total_ms"] = float(np.median(timed[1][2]))
        out["paired_cpu_ms"] = float(np.median(cpu[1]))
        # each run over the untuned run just after it: a busy stretch slows both
        out["paired_ratio"] = float(np.median(np.array(timed[0][2]) / np.maximum(np.array(timed[1][2]), 1e-9)))
    return out


def _compare(outs, ref, rtol: float, atol: float) -> None:
    for name, got in outs.items():
        if name not in ref:
            _wrong(f"output {name!r} is missing from the reference")
        want = ref[name]
        got = np.asarray(got)
        if got.shape != want.shape:
            _wrong(f"output {name!r} has shape {got.shape}, the untuned model's {want.shape}")
        if got.dtype.kind in "fc":
            ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        else:
            ok = np.array_equal(got, want)
        if not ok:
            err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
            _wrong(f"output {name!r} differs from the untuned model's (max abs difference {err:.3g})")


def _wrong(why: str):
    print(f"ember tune: {why}", file=sys.stderr, flush=True)
    sys.exit(WRONG)


def _save_npz(path: str, outs) -> None:
    tmp = f"{path}.tmp{os.getpid()}.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in outs.items()})
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as JSON at ``path``, written to a temporary file first, then renamed."""
    tmp = Path(f"{os.fspath(path)}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m ember.tune.measure REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    from ..errors import EmberError

    req = json.loads(Path(argv[0]).read_text())
    try:
        result = measure(req)
    except EmberError as e:
        print(f"ember tune: {e}", file=sys.stderr, flush=True)
        return 1
    write_json(argv[1], result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs one case in a child process under limits and writes what happened to a JSON file.

The parent (``suite.py``) starts :func:`run_case` in a fresh process forked from a server that
has already imported Ember, onnx and numpy (``multiprocessing``'s forkserver), so a case costs a
fork instead of a Python start-up.  The child makes itself a process group (so the parent can
kill whatever it started, the C compiler included), lowers its address-space limit to what it
uses now plus ``mem_bytes``, points Ember's cache at the run's folder, and does the case's one
thing.  Judging happens in the parent, which also sees signals and timeouts.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path

import numpy as np

# Imported here so that the fork server holds them already (see suite.py).
import ember  # noqa: F401
import ember.driver.compile  # noqa: F401
import ember.frontend  # noqa: F401
import ember.runtime  # noqa: F401
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
from ember.errors import EmberError

from .case import Ctx, Ran, Skip, lookup

RTOL, ATOL = 1e-4, 1e-5


def vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def limit_memory(mem_bytes: int) -> None:
    limit = vm_size() + mem_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))


def set_env(cache_dir: str) -> None:
    os.environ["EMBER_CACHE_DIR"] = cache_dir
    os.environ["XDG_CACHE_HOME"] = cache_dir
    os.environ.pop("EMBER_DUMP", None)


def write_json(path: str, record: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def describe_exception(e: BaseException, mode: str = "ember") -> dict:
    """What the parent needs to judge an exception.  ``refusal``: an EmberError (for
    onnxruntime, ``mode="ort"``, which has no such class: any exception but MemoryError)."""
    tb = traceback.extract_tb(e.__traceback__)
    where = [f"{Path(fr.filename).name}:{fr.lineno} {fr.name}" for fr in tb[-3:]]
    cls = type(e)
    refusal = isinstance(e, EmberError) if mode == "ember" else (
        isinstance(e, Exception) and not isinstance(e, MemoryError))
    return {"type": f"{cls.__module__}.{cls.__qualname__}".replace("builtins.", ""),
            "ember": refusal, "memory": isinstance(e, MemoryError),
            "message": str(e)[:500], "where": where}


def compare(outputs: dict, expected: dict) -> str | None:
    """None when ``outputs`` agree with ``expected``; else what differs."""
    if set(outputs) != set(expected):
        return f"outputs {sorted(outputs)} but the reference has {sorted(expected)}"
    for name, ref in expected.items():
        got = outputs[name]
        ref = np.asarray(ref)
        got = np.asarray(got)
        if got.shape != ref.shape:
            return f"output '{name}' has shape {got.shape}, the reference {ref.shape}"
        if got.dtype != ref.dtype:
            return f"output '{name}' has dtype {got.dtype}, the reference {ref.dtype}"
        if ref.dtype == object or ref.dtype.kind in "biuUS":
            if not np.array_equal(got, ref):
                return f"output '{name}' differs from the reference"
        elif not np.allclose(got.astype(np.float64), ref.astype(np.float64), rtol=RTOL, atol=ATOL, equal_nan=True):
            err = np.nanmax(np.abs(got.astype(np.float64) - ref.astype(np.float64))) if got.size else 0
            return f"output '{name}' differs from the reference (max abs error {err:.3g})"
    return None


def save_npz(path: Path, arrays: dict) -> str:
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return str(path)


def redirect_output(log: Path) -> None:
    """The child's stdout and stderr (warnings, the C compiler's messages) go to its log."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_case(name: str, run_dir: str, case_dir: str, out_path: str, mem_bytes: int, cache_dir: str,
             mode: str = "ember") -> None:
    """Runs case ``name`` (its ``act``, or with ``mode="ort"`` its ``ort``) and writes the
    outcome to ``out_path``; never returns."""
    os.setpgid(0, 0)
    redirect_output(Path(case_dir) / "child.log")
    set_env(cache_dir)
    # whether the fork server had loaded the suite's preload (``suite.PRELOAD``) before this fork
    record: dict = {"case": name, "warm": __package__ + ".warm" in sys.modules}
    try:
        case = lookup(name)
        ctx = Ctx(Path(case_dir), Path(run_dir))
        act = case.act if mode == "ember" else case.ort
        if act is None:
            record.update(status="skipped", message="onnxruntime has no equivalent")
            return
        try:
            state = case.setup(ctx)
        except Skip as e:
            record.update(status="skipped", message=str(e))
            return
        except BaseException as e:
            record.update(status="harness", **describe_exception(e))
            return
        limit_memory(mem_bytes)
        try:
            ran = act(ctx, state)
        except BaseException as e:
            record.update(status="raised", **describe_exception(e, mode))
            return
        if not isinstance(ran, Ran):
            record.update(status="harness", type="harness", message=f"act returned {type(ran).__name__}")
            return
        record["status"] = "ran"
        if ran.expected is not None:
            record["mismatch"] = compare(ran.outputs, ran.expected)
        else:
            d = Path(case_dir)
            record["outputs"] = save_npz(d / "ember_outputs.npz", ran.outputs)
            record["feeds"] = save_npz(d / "feeds.npz", ran.feeds or {})
            record["oracle_model"] = ran.oracle_model
    except BaseException as e:   # the harness itself
        record.update(status="harness", **describe_exception(e))
    finally:
        write_json(out_path, record)
        os._exit(0)

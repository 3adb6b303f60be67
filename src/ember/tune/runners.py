"""Where ``ember tune`` measures its trials: a *runner* takes trial requests and gives back each
one's outcome; the tuner (:mod:`.tuner`) keeps up to :attr:`Runner.slots` trials in flight.

Every trial, wherever it runs, is one child process (``python -m ember.tune.measure``, or the
runner's ``child`` command) started by :func:`run_trial` in a work folder of the machine that
measures: a crash kills only that child, a hang is killed with its process group at the timeout.
The folder holds what the trials of one tuning run share on that machine: the model file, the
untuned model's library (``untuned.so``, built by the first trial that asks for it: a trial is
timed in turn with it, ``paired``) and the untuned outputs a final check compares with.  What a
trial gives back is data (the measurement, and the outputs as .npz bytes when asked), never a
path on the measuring machine.

:class:`LocalRunner` measures on this machine, one trial at a time (timings of trials that
overlap on one machine are worthless).  ``RayRunner`` (:mod:`.ray_runner`, ``pip install
ember[tune-ray]``) measures on the nodes of a Ray cluster, one trial per node at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EmberError
from .measure import WRONG

#: the untuned model's library in a work folder, timed in turn with each candidate
UNTUNED = "untuned.so"


@dataclass
class Done:
    """A finished trial: ``status`` is ok (``result`` is the measurement), crash, timeout, wrong or
    error (``result`` says why; the candidate is at fault), or lost (the machine or the runner
    failed, not the candidate: the tuner tries the trial again elsewhere); ``node`` names the
    machine that measured it."""

    ticket: int
    status: str
    result: Any
    node: str


class Runner(ABC):
    """Measures trials.  :meth:`start` prepares a tuning run and returns the tuning key of the
    target the trials measure (``driver.kernels.tuning_key``); :meth:`submit` hands a trial over
    and returns its ticket; :meth:`wait` returns the next finished trial (a :class:`Done`);
    :meth:`close` ends the run.  At most :attr:`slots` trials are in flight at once."""

    slots: int = 1

    def check(self, target: str) -> None:
        """Refuse (:class:`EmberError`) a target this runner cannot measure."""

    @abstractmethod
    def start(self, base: dict) -> str:
        """Prepare a tuning run of the request ``base`` (model, target, options); return the
        tuning key of the target the trials measure."""

    @abstractmethod
    def describe(self) -> str:
        """Where the trials are measured, in words."""

    @abstractmethod
    def submit(self, request: dict, timeout: float) -> int:
        """Hand over one trial, to end within ``timeout`` seconds; return its ticket."""

    @abstractmethod
    def wait(self) -> Done:
        """The next finished trial."""

    def close(self) -> None:
        """End the run: what it left on the machines that measured is removed."""


class LocalRunner(Runner):
    """Trials in child processes on this machine, one at a time (:meth:`wait` runs the one
    submitted).  ``child`` is the measuring command (default: ``python -m ember.tune.measure``)."""

    slots = 1

    def __init__(self, child: list[str] | None = None):
        self.child = list(child) if child else None
        self.work: Path | None = None
        self.queue: list[tuple[int, dict, float]] = []
        self.tickets = 0

    def check(self, target: str) -> None:
        from ..target import resolve

        tgt = resolve(target)
        if tgt.family != "cpu" or tgt.cross:
            raise EmberError(f"ember tune measures on this machine's CPU; it cannot tune for {target}")

    def start(self, base: dict) -> str:
        self.work = Path(tempfile.mkdtemp(prefix="ember-tune-"))
        return target_key(base)

    def describe(self) -> str:
        return "this machine"

    def submit(self, request: dict, timeout: float) -> int:
        self.tickets += 1
        self.queue.append((self.tickets, request, timeout))
        return self.tickets

    def wait(self) -> Done:
        ticket, request, timeout = self.queue.pop(0)
        status, result = run_trial(self.work, request, timeout, self.child)
        return Done(ticket, status, result, "local")

    def close(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None


def target_key(base: dict) -> str:
    """The tuning key of the target a request names (with its model-wide knobs), as resolved on
    the machine that calls this: ``cpu`` is that machine's processor."""
    from ..driver.kernels import tuning_key
    from ..schedules.knobs import check_knobs
    from ..target import resolve

    tgt = resolve(base.get("target", "cpu"))
    if base.get("knobs"):
        tgt = tgt.with_knobs(check_knobs(base["knobs"]))
    return tuning_key(tgt)


# ---- one trial, on the machine that measures ----------------------------------------------------

def run_trial(work: Path, request: dict, timeout: float, child: list[str] | None = None) -> tuple[str, Any]:
    """Measure ``request`` in a child process in the work folder ``work`` of this machine:
    ("ok", measurement) or (status, why) with status crash, timeout, wrong or error, or lost
    where the untuned model it is to be timed with fails here.

    Besides what :mod:`.measure` reads, a request may ask ``paired: true`` (time it in turn with
    the untuned model, whose library this folder keeps: built first when missing),
    ``keep_untuned: true`` (keep this trial's library as that one), ``save_outputs: true`` (the
    measurement gets the outputs as .npz bytes, ``outputs``) and ``reference_npz`` (bytes: the
    outputs to compare with).  The measurement gets ``wall_s``, the child's wall time."""
    work = Path(work)
    req = dict(request)
    untuned = work / UNTUNED
    if req.pop("paired", False):
        if not untuned.exists():
            base = {k: v for k, v in req.items() if k not in ("reference_npz", "save_outputs", "keep_untuned")}
            status, res = run_trial(work, {**base, "kernel_knobs": {}, "keep_untuned": True}, timeout, child)
            if status != "ok":      # this machine's fault, not the candidate's
                return "lost", f"the untuned model failed here ({status}: {res})"
        req["paired"] = str(untuned)
    if req.pop("keep_untuned", False):
        req["keep_library"] = str(untuned)
    ref = req.pop("reference_npz", None)
    if ref is not None:
        path = work / f"reference-{hashlib.sha256(ref).hexdigest()[:16]}.npz"
        if not path.exists():
            _write_bytes(path, ref)
        req["reference"] = str(path)
    fd, name = tempfile.mkstemp(prefix="trial-", dir=work)
    os.close(fd)
    trial = Path(name)
    req_path, out_path, outputs = trial.with_suffix(".json"), trial.with_suffix(".out.json"), trial.with_suffix(".npz")
    library = trial.with_suffix(".so")
    req["library_at"] = str(library)
    if req.pop("save_outputs", False):
        req["save_outputs"] = str(outputs)
    try:
        req_path.write_text(json.dumps(req))
        status, res = _run_child(child or [sys.executable, "-m", "ember.tune.measure"], req_path, out_path, timeout)
        if status == "ok" and "save_outputs" in req:
            res["outputs"] = outputs.read_bytes()
        return status, res
    finally:
        for p in (trial, req_path, out_path, outputs, library):
            p.unlink(missing_ok=True)


def _run_child(child: list[str], req_path: Path, out_path: Path, timeout: float) -> tuple[str, Any]:
    t = time.monotonic()
    # in a session of its own, so a hung child goes with the compilers it started
    p = subprocess.Popen([*child, str(req_path), str(out_path)], env=_env(), start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return "timeout", f"no result within {timeout:.0f} s"
    detail = err.decode(errors="replace").strip().splitlines()
    last = detail[-1] if detail else ""
    if p.returncode == 0 and out_path.exists():
        res = json.loads(out_path.read_text())
        res["wall_s"] = time.monotonic() - t
        return "ok", res
    if p.returncode == WRONG:
        return "wrong", last
    if p.returncode == 1:
        return "error", last
    why = f"signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
    return "crash", f"{why}: {last}" if last else why


def _env() -> dict:
    """The child's environment: this one, with the folder that holds this machine's ember first
    on the module path."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def model_file(work: Path, name: str, data: bytes) -> Path:
    """The model's bytes as a file named ``name`` in the work folder (written once)."""
    path = Path(work) / os.path.basename(name)
    if not path.exists():
        _write_bytes(path, data)
    return path

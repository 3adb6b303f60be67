"""Measure the trials of ``ember tune`` on the nodes of a Ray cluster (``ember tune MODEL --ray
[ADDRESS]``, ``tune(..., runner=RayRunner(address))``; ``pip install ember[tune-ray]``).

Each trial is a Ray task pinned to one node that asks for all of that node's CPUs, and this runner
keeps at most one trial per node in flight, so the measurements on one machine never overlap
(the times of trials that share a machine are worthless) while every node measures at once.
On the node the task runs :func:`.runners.run_trial`: the candidate is compiled and timed in a
child process there, so a crashing candidate kills only that child and a hanging one is killed at
its timeout; the Ray worker lives on.

Trials compile on the node that measures them, for that node's own processor: the head compiles
nothing, so the nodes may be another machine than the head (an aarch64 board under an x86
laptop) and every node compiles its trials at the same time.  The target is therefore always
``cpu``, each node's own; when the nodes are not all the same target, the tuner measures on the
largest group of alike nodes and says which it leaves out (the records are keyed by that
target).  Every node must run the same ember as the head (checked: a node whose ember sources
differ is left out), with a C compiler.  The request carries the model's bytes (put once in the
object store; each node writes them to a work folder of its own), and a trial's results come back
as data (the measurement, the untuned outputs as .npz bytes); nothing is read from or written to
a path on another machine.  A node that dies or fails outside the child loses its trial, which the
tuner measures again on another node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import EmberError, TargetError
from .runners import Done, Runner, model_file, run_trial, target_key

#: how long past its own timeout a trial may take before its node counts as lost (the node
#: kills the child at the timeout; this is for a node that stops answering)
GRACE_S = 120.0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EmberError("ember tune --ray measures on a Ray cluster, and Ray is not installed: "
                         "pip install ember[tune-ray]") from None
    return ray


def _reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse an address ``host:port`` (or ``ray://host:port``) where nothing answers: Ray itself
    would try again for minutes."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise EmberError(f"ember tune --ray: {address!r} is not a Ray cluster's address (HOST:PORT)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise EmberError(f"ember tune: cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def ember_fingerprint() -> str:
    """A hash of this ember's sources: nodes that measure must run the same compiler."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".c", ".h") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _work_dir(session: str, node_id: str) -> Path:
    # named for the node too: nodes of a test cluster share one machine's temporary folder
    return Path(tempfile.gettempdir()) / f"ember-tune-{session}-{node_id[:12]}"


def _probe(base: dict) -> dict:
    """On a node: what it is and the tuning key of the target the request names there."""
    from ..target import resolve

    out = {"host": socket.gethostname(), "ember": ember_fingerprint()}
    try:
        out["key"], out["target"] = target_key(base), str(resolve(base.get("target", "cpu")))
    except EmberError as e:
        out["why"] = str(e)
    return out


def _trial(session: str, node_id: str, model_name: str, model: bytes, request: dict, timeout: float,
           child: list[str] | None) -> tuple[str, Any]:
    """On a node: one trial in a child process (:func:`.runners.run_trial`)."""
    work = _work_dir(session, node_id)
    work.mkdir(parents=True, exist_ok=True)
    path = model_file(work, model_name, model)
    return run_trial(work, {**request, "model": str(path)}, timeout, child)


def _clean(session: str, node_id: str) -> None:
    shutil.rmtree(_work_dir(session, node_id), ignore_errors=True)


class RayRunner(Runner):
    """Trials as Ray tasks on the nodes of a cluster, one per node at a time.

    ``address`` is the cluster's (``ray.init(address=...)``); None connects to the cluster this
    process is already connected to, else one started on this machine (``ray start``,
    ``RAY_ADDRESS``), else starts Ray here.  ``child`` is the measuring command on the nodes
    (default: their ``python -m ember.tune.measure``).  Nodes without a CPU (a head kept for
    scheduling) measure nothing."""

    def __init__(self, address: str | None = None, *, child: list[str] | None = None):
        self.ray = _import_ray()
        self.address = address
        self.child = list(child) if child else None
        self.nodes: dict[str, dict] = {}          # node id -> {host, cpus, target}
        self.running: dict[Any, tuple[int, str, float]] = {}   # task -> (ticket, node id, deadline)
        self.tickets = 0
        self.owned = False
        self.left_out: list[str] = []

    @property
    def slots(self) -> int:
        return len(self.nodes)

    def check(self, target: str) -> None:
        if target.strip() not in ("cpu", "host"):
            raise TargetError(f"ember tune --ray compiles each trial on the node that measures it, for that node's "
                             f"own processor: the target is 'cpu' (the nodes'), not {target!r}")

    def start(self, base: dict) -> str:
        ray = self.ray
        if not ray.is_initialized():
            _reachable(self.address)
            try:
                ray.init(address=self.address, logging_level="WARNING", log_to_driver=False)
            except Exception as e:      # Ray raises ConnectionError, RuntimeError, ValueError, ...
                where = f"at {self.address}" if self.address else "on this machine"
                raise EmberError(f"ember tune: cannot connect to a Ray cluster {where}: {e}") from None
            self.owned = True
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.strategy = NodeAffinitySchedulingStrategy
        self.session = uuid.uuid4().hex[:12]
        with open(base["model"], "rb") as f:
            self.model_ref = ray.put(f.read())
        self.model_name = os.path.basename(base["model"])
        alive = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]
        if not alive:
            raise EmberError("ember tune: the Ray cluster has no node with a CPU to measure on")
        probe = ray.remote(_probe)
        pending = {probe.options(num_cpus=0, scheduling_strategy=self.strategy(n["NodeID"], soft=False)).remote(base): n
                   for n in alive}
        ours = ember_fingerprint()
        groups: dict[str, list] = {}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=120)
        for ref in late:
            self.left_out.append(f"{pending[ref]['NodeManagerAddress']}: no answer within 120 s")
            ray.cancel(ref, force=True)
        for ref in ready:
            n = pending[ref]
            name = f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})"
            try:
                got = ray.get(ref)
            except Exception as e:
                self.left_out.append(f"{name}: {type(e).__name__}: {str(e).strip().splitlines()[-1]}")
                continue
            if got["ember"] != ours:
                self.left_out.append(f"{name}: runs another version of ember")
            elif "why" in got:
                self.left_out.append(f"{name}: {got['why']}")
            else:
                groups.setdefault(got["key"], []).append((n["NodeID"], {"name": f"{got['host']} {name}",
                                                                        "cpus": n["Resources"]["CPU"],
                                                                        "target": got["target"]}))
        if not groups:
            raise EmberError("ember tune: no Ray node can measure: " + "; ".join(self.left_out))
        key = max(groups, key=lambda k: len(groups[k]))
        for k, members in groups.items():
            if k != key:
                self.left_out += [f"{info['name']}: another target ({info['target']})" for _, info in members]
        self.nodes = dict(groups[key])
        self.remote_trial = ray.remote(_trial)
        return key

    def describe(self) -> str:
        targets = {info["target"] for info in self.nodes.values()}
        text = (f"{len(self.nodes)} Ray node{'s' * (len(self.nodes) != 1)} "
                f"({', '.join(info['name'] for info in self.nodes.values())}; {', '.join(targets)})")
        if self.left_out:
            text += "; left out: " + "; ".join(self.left_out)
        return text

    def submit(self, request: dict, timeout: float) -> int:
        busy = {node for _, node, _ in self.running.values()}
        free = [node for node in self.nodes if node not in busy]
        if not free:
            raise EmberError("ember tune: a trial was submitted with every Ray node busy")
        node = free[0]
        self.tickets += 1
        # all of the node's CPUs: nothing else Ray schedules runs there while it measures
        ref = self.remote_trial.options(num_cpus=self.nodes[node]["cpus"], max_retries=0,
                                        scheduling_strategy=self.strategy(node, soft=False)).remote(
            self.session, node, self.model_name, self.model_ref, request, timeout, self.child)
        # a node's first paired trial builds the untuned model first, with the same timeout
        self.running[ref] = (self.tickets, node, time.monotonic() + 2 * timeout + GRACE_S)
        return self.tickets

    def wait(self) -> Done:
        ray = self.ray
        while True:
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=1.0)
            if ready:
                ref = ready[0]
                ticket, node, _ = self.running.pop(ref)
                name = self.nodes.get(node, {}).get("name", node[:8])
                try:
                    status, result = ray.get(ref)
                except Exception as e:  # the node or its worker failed, not the candidate
                    return self._lost(ticket, node, f"{type(e).__name__}: {str(e).strip().splitlines()[-1]}")
                if status == "lost":
                    return self._lost(ticket, node, result)
                return Done(ticket, status, result, name)
            now = time.monotonic()
            for ref, (ticket, node, deadline) in list(self.running.items()):
                if now > deadline:
                    del self.running[ref]
                    ray.cancel(ref, force=True)
                    return self._lost(ticket, node, "no answer from the node past the trial's timeout")

    def _lost(self, ticket: int, node: str, why: str) -> Done:
        info = self.nodes.pop(node, {"name": node[:8]})
        self.left_out.append(f"{info['name']}: {why}")
        if not self.nodes:
            raise EmberError(f"ember tune: every Ray node was lost; the last: {info['name']}: {why}")
        return Done(ticket, "lost", f"{info['name']}: {why}; measuring on the other nodes", info["name"])

    def close(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            return
        for ref in self.running:
            ray.cancel(ref, force=True)
        self.running.clear()
        session = getattr(self, "session", None)
        if session is not None and self.nodes:
            clean = ray.remote(_clean)
            refs = [clean.options(num_cpus=0, scheduling_strategy=self.strategy(node, soft=False)).remote(session, node)
                    for node in self.nodes]
            ray.wait(refs, num_returns=len(refs), timeout=30)
        if self.owned:
            ray.shutdown()

"""Tuning records: what ``ember tune`` measured, and what ``ember.compile(..., records=FILE)``
replays.

A records file holds JSON lines, one per measured candidate:

    {"v": 1, "workload": "<key>", "target": "<target key>", "kernel": "conv_12", "knobs": {...},
     "status": "ok", "ms": 0.0123, "base_ms": 0.0141, "detail": "", "defaults": false,
     "at": 1765000000.0}

``base_ms`` is the same kernel's time with its defaults, measured in turn with it (in one process,
the untuned model run after each run of the candidate's), so the two are compared at the same
moments of the machine; ``defaults`` marks the measurements of the defaults themselves.
``workload`` is the kernel's canonical content (``kernels.workload_key``: ops, attributes,
wiring and types, whatever its names) and ``target`` the target it ran on
(``kernels.tuning_key``); ``knobs`` are the schedule knobs set on that kernel alone; ``ms``
its time per call.  ``status`` is ``ok``, or why the candidate was skipped: ``crash`` (its
child process died), ``timeout``, ``wrong`` (its outputs differ from the untuned model's),
``error`` (the compiler refused it); ``detail`` says more.

Each record is appended with one ``write`` to a file opened for appending, so tuners that share
a file never interleave their lines; a line cut short (a tuner killed mid-write) or that is not
a record is skipped when reading (the next record starts on a line of its own).  Replaying takes, per workload of the target, the candidate with the
lowest median of ``ms / base_ms`` among those measured at least ``CONFIRMATIONS`` times, where
it is at least ``MIN_GAIN`` below 1, else the defaults (:func:`choose`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import EmberError

FORMAT = 1
STATUSES = ("ok", "crash", "timeout", "wrong", "error")

#: how much faster than a kernel's defaults its best candidate must measure to replace them
MIN_GAIN = 0.03

#: how often a candidate must have been measured to replace the defaults: the fastest of many
#: candidates measured once each is low by luck alone, so the tuner measures it again
CONFIRMATIONS = 2


def append(path: str | os.PathLike, workload: str, target: str, kernel: str, knobs: Mapping[str, Any],
           status: str, ms: float | None = None, detail: str = "", defaults: bool = False,
           base_ms: float | None = None) -> dict:
    """Append one record to ``path`` (created with its folder when missing); returns it.
    ``defaults``: the knobs are the kernel's defaults (a measurement of the untuned kernel);
    ``base_ms``: the kernel's time with its defaults, measured in turn with ``ms``."""
    if status not in STATUSES:
        raise ValueError(f"unknown record status {status!r}")
    rec = {"v": FORMAT, "workload": workload, "target": target, "kernel": kernel, "knobs": dict(knobs),
           "status": status, "ms": ms, "detail": detail[:2000], "defaults": bool(defaults),
           "base_ms": base_ms,
           "at": round(time.time(), 3)}
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line        # end a line cut short, so this record stays whole
        os.write(fd, line)
    finally:
        os.close(fd)
    return rec


def read(path: str | os.PathLike) -> Iterator[dict]:
    """Every well-formed record of ``path`` (none when it does not exist)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as e:
        raise EmberError(f"cannot read tuning records {os.fspath(path)!r}: {e.strerror}") from None
    with f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue            # a line cut short
            if _well_formed(rec):
                yield rec


def _well_formed(rec: Any) -> bool:
    return (isinstance(rec, dict) and rec.get("v") == FORMAT and isinstance(rec.get("workload"), str)
            and isinstance(rec.get("target"), str) and isinstance(rec.get("knobs"), dict)
            and rec.get("status") in STATUSES
            and (rec["status"] != "ok" or isinstance(rec.get("ms"), (int, float))))


def best(path: str | os.PathLike, target: str) -> dict[str, dict]:
    """The knobs each workload of ``target`` gets from ``path``: the candidate :func:`choose`
    picks from its ``ok`` records measured beside the defaults, else its defaults."""
    default_knobs: dict[str, dict] = {}
    ratios: dict[str, dict[tuple, list[float]]] = {}
    for rec in read(path):
        if rec["target"] != target or rec["status"] != "ok":
            continue
        w = rec["workload"]
        if rec.get("defaults"):
            default_knobs[w] = rec["knobs"]
        elif isinstance(rec.get("base_ms"), (int, float)) and rec["base_ms"] > 0:
            ratios.setdefault(w, {}).setdefault(frozen(rec["knobs"]), []).append(rec["ms"] / rec["base_ms"])
    out = {}
    for w in set(default_knobs) | set(ratios):
        pick = choose(ratios.get(w, {}))
        if pick is not None:
            out[w] = dict(pick)
        elif w in default_knobs:
            out[w] = default_knobs[w]
    return out


def choose(ratios: Mapping[tuple, list[float]]) -> tuple | None:
    """Which candidate (knobs as :func:`frozen`) replaces a kernel's defaults, given each one's
    times over the defaults' (measured in turn): the lowest median of those measured at least
    ``CONFIRMATIONS`` times, where it is at least ``MIN_GAIN`` below 1; None: keep the defaults."""
    scored = [(median(r), k) for k, r in ratios.items() if len(r) >= CONFIRMATIONS]
    if not scored:
        return None
    ratio, k = min(scored)
    return k if ratio < 1.0 - MIN_GAIN else None


def frozen(knobs: Mapping[str, Any]) -> tuple:
    """Knobs as a hashable value."""
    return tuple(sorted(knobs.items()))


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def replay_knobs(path: str | os.PathLike, target) -> dict[str, dict]:
    """What ``ember.compile(..., records=path)`` sets on each kernel for ``target``: the best
    records' knobs, each checked (:func:`~ember.schedules.knobs.check_kernel_knobs`); a record
    with knobs this compiler does not know is an error, naming the file."""
    from ..schedules.knobs import check_kernel_knobs
    from .kernels import tuning_key

    if not os.path.exists(path):
        raise EmberError(f"tuning records {os.fspath(path)!r} do not exist")
    out = {}
    for w, knobs in best(path, tuning_key(target)).items():
        try:
            out[w] = check_kernel_knobs(knobs)
        except EmberError as e:
            raise EmberError(f"tuning records {os.fspath(path)!r}: {e}") from None
    return out

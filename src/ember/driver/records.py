"""Tuning records: what ``ember tune`` measured, and what ``ember.compile(..., tuning=FILE)``
replays.

A records file is a SQLite database (the default, ``tuning/records.sqlite`` under the cache
directory) with one row per measured candidate in the table ``records``:

    workload, target, kernel, knobs (JSON), steps (JSON or NULL), status, ms, base_ms, detail,
    defaults, at

indexed by (target, workload).  ``base_ms`` is the same kernel's time with its defaults,
measured in turn with it (in one process, the untuned model run after each run of the
candidate's), so the two are compared at the same moments of the machine; ``defaults`` marks
the measurements of the defaults themselves.  ``workload`` is the kernel's canonical content
(``kernels.workload_key``: ops, attributes, wiring and types, whatever its names) and
``target`` the target it ran on (``kernels.tuning_key``); ``knobs`` are the schedule knobs set
on that kernel alone; ``steps`` the schedule its kernel was lowered with, as the list of
``Schedule.steps`` (``[stage, primitive, *arguments]``, replayable by :mod:`ember.te.replay`);
``ms`` its time per call.  ``status`` is ``ok``, or why the candidate was skipped: ``crash``
(its child process died), ``timeout``, ``wrong`` (its outputs differ from the untuned model's),
``error`` (the compiler refused it); ``detail`` says more.

Each record (or each batch of :func:`append_many`) is inserted in a transaction of its own, so
it is stored whole or not at all; the
database runs in write-ahead-log mode with a busy timeout (:data:`BUSY_TIMEOUT_S`), so tuners
that share a file wait for each other's writes instead of failing or damaging it (a file on a
network filesystem, where SQLite's locks may not hold, is not supported).  A file that is not a
SQLite database and not JSON lines, or a damaged database, is an :class:`~ember.errors.EmberError`
naming it.

Records of earlier Embers, JSON lines (one record per line, as dictionaries of the same fields
and ``"v": 1``), are still read and replayed, and appended to when a file holds them or its
name ends in ``.jsonl``: each record with one ``write`` to a file opened for appending (a line
cut short is skipped when reading); :func:`copy` moves them into a database.  Which a file is
goes by its content (SQLite's header, or a first line that is a JSON object), and by its name
when it is empty or missing.

Replaying takes, per workload of the target, the candidate with the lowest median of
``ms / base_ms`` among those measured at least ``CONFIRMATIONS`` times whose median is at least
``MIN_GAIN`` below 1 and clear of the noise of the workload's repeated measurements (:func:`bar`),
else the defaults (:func:`choose`), with the steps of its latest record that has them
(:func:`best_records`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..errors import EmberError

FORMAT = 1
STATUSES = ("ok", "crash", "timeout", "wrong", "error")

#: how much faster than a kernel's defaults its best candidate must measure to replace them
MIN_GAIN = 0.03

#: how often a candidate must have been measured to replace the defaults: the fastest of many
#: candidates measured once each is low by luck alone, so the tuner measures it again
CONFIRMATIONS = 2

#: a candidate whose gain is within the noise is measured again, up to this many times
MAX_CONFIRMATIONS = 4

#: how many standard deviations of a candidate's median ratio its gain must clear: the spread
#: of a kernel's repeated measurements (:func:`noise`) raises the bar above ``MIN_GAIN`` on a
#: busy machine, where two measurements of one candidate differ by tens of percent
NOISE_SIGMAS = 2.0

#: how long a writer waits for another's transaction before it gives up (seconds)
BUSY_TIMEOUT_S = 60.0

#: the version of the database's schema (SQLite's ``user_version``)
SCHEMA_VERSION = 1

_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    workload TEXT NOT NULL,
    target TEXT NOT NULL,
    kernel TEXT NOT NULL,
    knobs TEXT NOT NULL,
    steps TEXT,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    ms REAL,
    base_ms REAL,
    detail TEXT NOT NULL DEFAULT '',
    defaults INTEGER NOT NULL DEFAULT 0,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_key ON records (target, workload);
"""

_COLUMNS = ("workload", "target", "kernel", "knobs", "steps", "status", "ms", "base_ms", "detail", "defaults", "at")


def kind(path: str | os.PathLike) -> str:
    """``"sqlite"`` or ``"jsonl"``: what ``path`` holds (by its content; by its name when it is
    empty or missing).  Anything else is an error naming the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except FileNotFoundError:
        head = b""
    except OSError as e:
        raise EmberError(f"cannot read tuning records {os.fspath(path)!r}: {e.strerror}") from None
    if head.startswith(_SQLITE_HEADER):
        return "sqlite"
    if not head.strip():
        return "jsonl" if os.fspath(path).endswith((".jsonl", ".json")) else "sqlite"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    raise EmberError(f"tuning records {os.fspath(path)!r} are neither a SQLite database nor JSON lines")


def record(workload: str, target: str, kernel: str, knobs: Mapping[str, Any], status: str, ms: float | None = None,
           detail: str = "", defaults: bool = False, base_ms: float | None = None,
           steps: Iterable | None = None) -> dict:
    """One record (not stored: :func:`append_many`).  ``defaults``: the knobs are the kernel's
    defaults (a measurement of the untuned kernel); ``base_ms``: the kernel's time with its
    defaults, measured in turn with ``ms``; ``steps``: the schedule the kernel was lowered with
    (``Schedule.steps``)."""
    if status not in STATUSES:
        raise ValueError(f"unknown record status {status!r}")
    rec = {"v": FORMAT, "workload": workload, "target": target, "kernel": kernel, "knobs": dict(knobs),
           "status": status, "ms": ms, "detail": detail[:2000], "defaults": bool(defaults),
           "base_ms": base_ms, "at": round(time.time(), 3)}
    if steps is not None:
        rec["steps"] = [list(step) for step in steps]
    return rec


def append(path: str | os.PathLike, workload: str, target: str, kernel: str, knobs: Mapping[str, Any],
           status: str, ms: float | None = None, detail: str = "", defaults: bool = False,
           base_ms: float | None = None, steps: Iterable | None = None) -> dict:
    """Append one record (:func:`record`) to ``path`` (created with its folder when missing);
    returns it."""
    rec = record(workload, target, kernel, knobs, status, ms, detail, defaults, base_ms, steps)
    append_many(path, [rec])
    return rec


def append_many(path: str | os.PathLike, recs: Iterable[dict]) -> None:
    """Append ``recs`` (:func:`record`) to ``path``: to a database in one transaction (a
    transaction costs a sync of the file: tens of milliseconds), to JSON lines one by one."""
    recs = list(recs)
    if not recs:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind(p) == "jsonl":
        for rec in recs:
            _append_line(p, rec)
    else:
        _insert(p, recs)


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Append every well-formed record of ``src`` (either kind) to the database ``dst`` in one
    transaction; returns how many (JSON-lines records of earlier Embers, into a database)."""
    if kind(dst) != "sqlite":
        raise EmberError(f"tuning records {os.fspath(dst)!r} are JSON lines: copy into a SQLite database")
    recs = list(read(src))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    _insert(Path(dst), recs)
    return len(recs)


def _append_line(p: Path, rec: dict) -> None:
    line = (json.dumps(rec, sort_keys=True) + "\n").encode()
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line        # end a line cut short, so this record stays whole
        os.write(fd, line)
    finally:
        os.close(fd)


def _damaged(path, e: sqlite3.Error) -> EmberError:
    return EmberError(f"tuning records {os.fspath(path)!r} cannot be used (a damaged or locked SQLite database?): {e}")


@contextmanager
def _database(path: Path, write: bool) -> Iterator[sqlite3.Connection]:
    """A connection to the database at ``path`` (its schema created when ``write``), closed
    after use; SQLite's errors become an error naming the file."""
    try:
        con = _connect(path)
        try:
            _check_version(con, path)
            if write:
                _ensure_schema(con)
            yield con
        finally:
            con.close()
    except sqlite3.Error as e:
        raise _damaged(path, e) from None


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _check_version(con: sqlite3.Connection, path: Path) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise EmberError(f"tuning records {os.fspath(path)!r} have schema version {version}; this Ember reads "
                         f"up to {SCHEMA_VERSION}")


def _ensure_schema(con: sqlite3.Connection) -> None:
    # in WAL mode, NORMAL syncs at checkpoints, not at each commit: a record stays whole if the
    # tuner dies (the log is replayed, or cut at a commit), and may be lost only with the power
    con.execute("PRAGMA synchronous=NORMAL")
    if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                con.execute(statement)
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")


def _insert(path: Path, recs: list[dict]) -> None:
    with _database(path, write=True) as con, con:
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [(r["workload"], r["target"], r["kernel"], json.dumps(r["knobs"], sort_keys=True),
              json.dumps(r["steps"]) if r.get("steps") is not None else None, r["status"], r["ms"],
              r.get("base_ms"), r.get("detail", ""), int(bool(r.get("defaults"))), r.get("at", time.time()))
             for r in recs])


def read(path: str | os.PathLike, target: str | None = None) -> Iterator[dict]:
    """Every well-formed record of ``path`` (none when it does not exist); with ``target``,
    those of that target only."""
    if not os.path.exists(path):
        return
    if kind(path) == "jsonl":
        for rec in _read_lines(path):
            if target is None or rec["target"] == target:
                yield rec
        return
    yield from _read_sqlite(Path(path), target)


def _read_lines(path) -> Iterator[dict]:
    try:
        f = open(path, "rb")
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


def _read_sqlite(path: Path, target: str | None) -> Iterator[dict]:
    with _database(path, write=False) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "records" not in tables:
            if tables:
                raise EmberError(f"{os.fspath(path)!r} is a SQLite database without tuning records "
                                 f"(no table 'records')")
            return
        query = f"SELECT {', '.join(_COLUMNS)} FROM records"
        rows = con.execute(query + " WHERE target = ? ORDER BY id", (target,)) if target is not None \
            else con.execute(query + " ORDER BY id")
        rows = rows.fetchall()
    for row in rows:
        rec = dict(zip(_COLUMNS, row))
        try:
            rec["knobs"] = json.loads(rec["knobs"])
            rec["steps"] = json.loads(rec["steps"]) if rec["steps"] is not None else None
        except (TypeError, ValueError):
            continue
        if rec["steps"] is None:
            del rec["steps"]
        rec["v"] = FORMAT
        rec["defaults"] = bool(rec["defaults"])
        if _well_formed(rec):
            yield rec


def _well_formed(rec: Any) -> bool:
    return (isinstance(rec, dict) and rec.get("v") == FORMAT and isinstance(rec.get("workload"), str)
            and isinstance(rec.get("target"), str) and isinstance(rec.get("knobs"), dict)
            and rec.get("status") in STATUSES
            and (rec["status"] != "ok" or isinstance(rec.get("ms"), (int, float)))
            and (rec.get("steps") is None or _steps_well_formed(rec["steps"])))


def _steps_well_formed(steps: Any) -> bool:
    return isinstance(steps, list) and all(
        isinstance(st, list) and len(st) >= 2 and all(isinstance(x, (str, int)) and not isinstance(x, bool)
                                                       for x in st) for st in steps)


def best(path: str | os.PathLike, target: str) -> dict[str, dict]:
    """The knobs each workload of ``target`` gets from ``path``: the candidate :func:`choose`
    picks from its ``ok`` records measured beside the defaults, else its defaults."""
    return {w: r["knobs"] for w, r in best_records(path, target).items()}


def best_records(path: str | os.PathLike, target: str) -> dict[str, dict]:
    """What each workload of ``target`` gets from ``path``: ``{"knobs", "steps", "kernel",
    "defaults", "ratio", "default_ms"}``: the candidate :func:`choose` picks from its ``ok``
    records measured beside the defaults, else its defaults; ``steps`` those of the latest such
    record that has them (None when none has), ``ratio`` its median time over the defaults' (1.0
    for these), ``default_ms`` the median of the defaults' measured times per call (None: none)."""
    default_rec: dict[str, dict] = {}
    ratios: dict[str, dict[tuple, list[float]]] = {}
    latest: dict[tuple, dict] = {}          # (workload, frozen knobs) -> its latest ok record with steps
    kernel: dict[str, str] = {}
    default_ms: dict[str, list[float]] = {}
    for rec in read(path, target):
        if rec["target"] != target or rec["status"] != "ok":
            continue
        w = rec["workload"]
        kernel.setdefault(w, rec.get("kernel", ""))
        if rec.get("steps") is not None:
            latest[(w, frozen(rec["knobs"]))] = rec
        if rec.get("defaults"):
            default_rec[w] = rec
            if isinstance(rec.get("ms"), (int, float)) and rec["ms"] > 0:
                default_ms.setdefault(w, []).append(rec["ms"])
        elif isinstance(rec.get("base_ms"), (int, float)) and rec["base_ms"] > 0:
            ratios.setdefault(w, {}).setdefault(frozen(rec["knobs"]), []).append(rec["ms"] / rec["base_ms"])
    out = {}
    for w in set(default_rec) | set(ratios):
        pick = choose(ratios.get(w, {}))
        if pick is not None:
            knobs, ratio, is_default = dict(pick), median(ratios[w][pick]), False
        elif w in default_rec:
            knobs, ratio, is_default = default_rec[w]["knobs"], 1.0, True
        else:
            continue
        with_steps = latest.get((w, frozen(knobs)))
        out[w] = {"knobs": knobs, "steps": with_steps["steps"] if with_steps else None, "kernel": kernel[w],
                  "defaults": is_default, "ratio": ratio,
                  "default_ms": median(default_ms[w]) if w in default_ms else None}
    return out


def noise(ratios: Mapping[tuple, list[float]]) -> float:
    """The spread of one kernel's measurements: the median absolute deviation of each ratio of a
    candidate measured more than once from that candidate's median (0.0: none measured twice)."""
    devs = [abs(x - median(r)) for r in ratios.values() if len(r) >= 2 for x in r]
    return median(devs) if devs else 0.0


def bar(ratios: Mapping[tuple, list[float]], n: int) -> float:
    """The median ratio below which a candidate measured ``n`` times replaces the defaults: at
    least ``MIN_GAIN`` below 1, and ``NOISE_SIGMAS`` standard deviations of a median of ``n``
    (the kernel's :func:`noise`, a deviation of 1.4826 of it) below 1."""
    sigma = 1.4826 * noise(ratios) / max(1, n) ** 0.5
    return 1.0 - max(MIN_GAIN, NOISE_SIGMAS * sigma)


def choose(ratios: Mapping[tuple, list[float]]) -> tuple | None:
    """Which candidate (knobs as :func:`frozen`) replaces a kernel's defaults, given each one's
    times over the defaults' (measured in turn): the lowest median of those measured at least
    ``CONFIRMATIONS`` times and below their :func:`bar` (``MIN_GAIN`` below 1, more where the
    kernel's measurements spread); None: keep the defaults."""
    scored = [(median(r), k) for k, r in ratios.items() if len(r) >= CONFIRMATIONS and median(r) < bar(ratios, len(r))]
    return min(scored)[1] if scored else None


def frozen(knobs: Mapping[str, Any]) -> tuple:
    """Knobs as a hashable value."""
    return tuple(sorted(knobs.items()))


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def replay_knobs(path: str | os.PathLike, target) -> dict[str, dict]:
    """The knobs ``ember.compile(..., tuning=path)`` sets on each kernel for ``target``: the best
    records' knobs, each checked (:func:`~ember.schedules.knobs.check_kernel_knobs`); a record
    with knobs this compiler does not know is an error, naming the file."""
    return replay_schedules(path, target)[0]


def replay_schedules(path: str | os.PathLike, target) -> tuple[dict[str, dict], dict[str, list]]:
    """What ``ember.compile(..., tuning=path)`` gives each kernel for ``target``: the best
    records' knobs (as :func:`replay_knobs`), and the schedule steps of those that have them
    (replayed in their place where they apply: ``kernels.group_kernel``)."""
    from ..schedules.knobs import check_kernel_knobs
    from .kernels import tuning_key

    if not os.path.exists(path):
        raise EmberError(f"tuning records {os.fspath(path)!r} do not exist")
    knobs, steps = {}, {}
    for w, r in best_records(path, tuning_key(target)).items():
        try:
            knobs[w] = check_kernel_knobs(r["knobs"])
        except EmberError as e:
            raise EmberError(f"tuning records {os.fspath(path)!r}: {e}") from None
        if r["steps"] is not None:
            steps[w] = r["steps"]
    return knobs, steps

"""Tuning records (``driver/records.py``): the SQLite database (round trip, the rule that picks a
kernel's record, appends from concurrent processes, damaged files), the JSON-lines records of
earlier Embers (still read, replayed and appended to; copied into a database)."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ember.driver import records
from ember.errors import EmberError

SRC = str(Path(records.__file__).resolve().parents[2])
STEPS = [["mm", "split", "i1", 16], ["mm", "vectorized", "i1i"], ["mm#2", "compute_at", "i0o"]]


def test_sqlite_round_trip(tmp_path):
    f = tmp_path / "sub" / "t.sqlite"
    a = records.append(f, "w1", "t", "mm_0", {"matmul.rows": 4}, "ok", 2.0, defaults=True, steps=STEPS)
    b = records.append(f, "w1", "t", "mm_0", {"matmul.rows": 6}, "crash", None, "signal 6")
    assert f.read_bytes().startswith(b"SQLite format 3\x00") and records.kind(f) == "sqlite"
    got = list(records.read(f))
    for want, rec in zip([a, b], got):
        assert {k: rec.get(k) for k in want} == {k: want.get(k) for k in want}
    assert got[0]["steps"] == STEPS and "steps" not in got[1]
    assert list(records.read(f, "other")) == []
    con = sqlite3.connect(f)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert "records_by_key" in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert con.execute("PRAGMA user_version").fetchone()[0] == records.SCHEMA_VERSION
    finally:
        con.close()


@pytest.mark.parametrize("name", ["r.sqlite", "r.jsonl"])
def test_best_records_choose_by_paired_ratio_and_carry_steps(tmp_path, name):
    f = tmp_path / name
    records.append(f, "w", "t", "k", {"conv2d.rows": 6}, "ok", 1.0, defaults=True, steps=[["c", "split", "i3", 6]])
    records.append(f, "w", "t", "k", {"conv2d.rows": 3}, "ok", 0.5, base_ms=1.0, steps=[["c", "split", "i3", 3]])
    assert records.best_records(f, "t")["w"]["knobs"] == {"conv2d.rows": 6}      # measured once: not yet
    assert records.best_records(f, "t")["w"]["steps"] == [["c", "split", "i3", 6]]
    records.append(f, "w", "t", "k", {"conv2d.rows": 3}, "ok", 0.6, base_ms=1.0, steps=[["c", "split", "i3", 3]])
    r = records.best_records(f, "t")["w"]
    assert r["knobs"] == {"conv2d.rows": 3} and r["steps"] == [["c", "split", "i3", 3]]
    assert r["ratio"] == pytest.approx(0.55) and not r["defaults"] and r["kernel"] == "k"
    assert r["default_ms"] == pytest.approx(1.0)
    assert records.best(f, "t") == {"w": {"conv2d.rows": 3}}
    records.append(f, "w2", "t", "k2", {"matmul.rows": 2}, "ok", 1.0, defaults=True)     # no steps recorded
    assert records.best_records(f, "t")["w2"]["steps"] is None


def test_jsonl_records_of_earlier_embers_still_replay(tmp_path):
    f = tmp_path / "old-records"            # no suffix: told apart by its content
    lines = [{"v": 1, "workload": "w", "target": "t", "kernel": "k", "knobs": {"matmul.rows": r}, "status": "ok",
              "ms": ms, "base_ms": base, "detail": "", "defaults": base is None, "at": 1.0}
             for r, ms, base in [(4, 1.0, None), (2, 0.5, 1.0), (2, 0.6, 1.0)]]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"v": 1, "work')    # and a torn line
    assert records.kind(f) == "jsonl"
    assert records.best(f, "t") == {"w": {"matmul.rows": 2}}
    assert records.best_records(f, "t")["w"]["steps"] is None
    records.append(f, "w", "t", "k", {"matmul.rows": 3}, "ok", 0.1, base_ms=1.0, steps=STEPS)
    assert records.kind(f) == "jsonl" and len(list(records.read(f))) == 4          # appended as a line
    db = tmp_path / "new.sqlite"
    assert records.copy(f, db) == 4
    assert records.best(db, "t") == records.best(f, "t")
    assert [r.get("steps") for r in records.read(db)] == [None, None, None, STEPS]


_WRITER = """
import sys
from ember.driver import records
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    records.append(path, f"w{i % 5}", "t", who, {"matmul.rows": i}, "ok", 1.0 + i, base_ms=2.0,
                   steps=[["mm", "split", "i1", i + 1]])
"""


def test_concurrent_appends_from_two_processes(tmp_path):
    f = tmp_path / "shared.sqlite"
    n = 60
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(f), who, str(n)], env=env, stderr=subprocess.PIPE)
             for who in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    got = list(records.read(f))
    assert len(got) == 2 * n
    for who in ("a", "b"):
        mine = [r for r in got if r["kernel"] == who]
        assert [r["knobs"]["matmul.rows"] for r in mine] == list(range(n))       # each whole, in order
        assert all(r["steps"] == [["mm", "split", "i1", r["knobs"]["matmul.rows"] + 1]] for r in mine)
    con = sqlite3.connect(f)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def test_damaged_or_foreign_files_are_errors_naming_them(tmp_path):
    noise = tmp_path / "noise.sqlite"
    noise.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(EmberError, match="noise.sqlite.*neither"):
        list(records.read(noise))
    with pytest.raises(EmberError, match="noise.sqlite"):
        records.append(noise, "w", "t", "k", {}, "ok", 1.0)

    damaged = tmp_path / "damaged.sqlite"
    records.append(damaged, "w", "t", "k", {}, "ok", 1.0)
    for suffix in ("-wal", "-shm"):
        Path(f"{damaged}{suffix}").unlink(missing_ok=True)
    data = bytearray(damaged.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)          # SQLite's header kept, its pages overwritten
    damaged.write_bytes(bytes(data))
    with pytest.raises(EmberError, match="damaged.sqlite"):
        list(records.read(damaged))
    with pytest.raises(EmberError, match="damaged.sqlite"):
        records.append(damaged, "w", "t", "k", {}, "ok", 1.0)

    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(EmberError, match="foreign.db.*no table 'records'"):
        list(records.read(foreign))


def test_a_database_of_a_later_schema_is_refused(tmp_path):
    f = tmp_path / "later.sqlite"
    records.append(f, "w", "t", "k", {}, "ok", 1.0)
    con = sqlite3.connect(f)
    con.execute(f"PRAGMA user_version = {records.SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(EmberError, match="later.sqlite.*schema version"):
        list(records.read(f))


@pytest.mark.parametrize("name", ["b.sqlite", "b.jsonl"])
def test_a_batch_is_appended_whole(tmp_path, name):
    f = tmp_path / name
    batch = [records.record(f"w{i}", "t", "k", {"matmul.rows": i}, "ok", 1.0, base_ms=2.0, steps=STEPS)
             for i in range(5)]
    records.append_many(f, batch)
    records.append_many(f, [])
    assert [{k: r.get(k) for k in batch[0]} for r in records.read(f)] == batch
    with pytest.raises(ValueError, match="status"):
        records.record("w", "t", "k", {}, "fine")

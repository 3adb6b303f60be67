"""The comparison of a conformance run with the committed baseline."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import check_conformance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(path, cases):
    with open(path, "w") as f:
        json.dump({"tool": "onnx_conformance", "cases": [{"name": n, "status": s, "message": ""}
                                                          for n, s in cases.items()]}, f)


def test_regressions_fail_and_filtered_runs_do_not(tmp_path, capsys):
    base, res = tmp_path / "base.json", tmp_path / "res.json"
    write(base, {"a": "pass", "b": "pass", "c": "error", "d": "fail"})
    write(res, {"a": "pass", "c": "pass", "e": "error"})        # b not run: not a regression
    assert check_conformance.main([str(res), str(base)]) == 0
    out = capsys.readouterr().out
    assert "0 regressed, 1 newly passing, 1 not in the baseline" in out
    write(res, {"a": "crash", "b": "pass"})
    assert check_conformance.main([str(res), str(base)]) == 1
    assert "REGRESSED a: crash" in capsys.readouterr().out


def test_update_writes_a_small_baseline(tmp_path):
    res, base = tmp_path / "res.json", tmp_path / "base.json"
    write(res, {"b": "fail", "a": "pass"})
    assert check_conformance.main([str(res), str(base), "--update"]) == 0
    doc = json.loads(base.read_text())
    assert doc["cases"] == [{"name": "a", "status": "pass"}, {"name": "b", "status": "fail"}]
    assert doc["summary"] == {"passed": 1, "failed": 1}
    assert check_conformance.load_cases(str(base)) == {"a": "pass", "b": "fail"}


def test_committed_baseline_is_well_formed():
    path = os.path.join(ROOT, "tests", "conformance_baseline.json")
    cases = check_conformance.load_cases(path)
    assert len(cases) > 1000
    assert set(cases.values()) <= {"pass", "fail", "error", "crash", "timeout", "skip"}
    assert "crash" not in cases.values() and "timeout" not in cases.values()

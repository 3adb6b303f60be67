"""The comparison of a conformance run with the committed baseline."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import check_conformance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(path, cases, **head):
    with open(path, "w") as f:
        json.dump({"tool": "onnx_conformance", **head, "cases": [{"name": n, "status": s, "message": ""}
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


def test_suites_are_counted_apart_and_compared_by_name(tmp_path, capsys):
    base, res = tmp_path / "base.json", tmp_path / "res.json"
    write(base, {"test_a": "pass", "simple/test_a": "pass", "pytorch-operator/test_b": "error"})
    write(res, {"test_a": "pass", "simple/test_a": "fail", "pytorch-operator/test_b": "pass"})
    assert check_conformance.main([str(res), str(base)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED simple/test_a: fail" in out and "REGRESSED test_a" not in out
    assert "node 1/1, pytorch-operator 1/1, simple 0/1" in out


def test_update_refuses_a_partial_run(tmp_path, capsys):
    base, res = tmp_path / "base.json", tmp_path / "res.json"
    write(base, {"test_a": "pass", "simple/test_a": "pass"})
    write(res, {"test_a": "pass"}, suites=["node"])              # the simple suite left out
    assert check_conformance.main([str(res), str(base), "--update"]) == 2
    assert "left out the suite(s) simple" in capsys.readouterr().err
    assert check_conformance.load_cases(str(base)) == {"test_a": "pass", "simple/test_a": "pass"}
    write(res, {"test_a": "pass", "simple/test_a": "pass"}, filter="test_a")
    assert check_conformance.main([str(res), str(base), "--update"]) == 2
    assert "filtered" in capsys.readouterr().err
    assert check_conformance.main([str(res), str(base), "--update", "--force"]) == 0
    write(res, {"test_a": "fail", "simple/test_a": "pass", "simple/test_b": "pass"},
          suites=["node", "simple"], filter=None)
    assert check_conformance.main([str(res), str(base), "--update"]) == 0
    doc = json.loads(base.read_text())
    assert doc["suites"] == ["node", "simple"] and doc["summary"] == {"passed": 2, "failed": 1}


def test_committed_baseline_is_well_formed():
    path = os.path.join(ROOT, "tests", "conformance_baseline.json")
    cases = check_conformance.load_cases(path)
    assert len(cases) > 1000
    assert set(cases.values()) <= {"pass", "fail", "error", "crash", "timeout", "skip"}
    assert "crash" not in cases.values() and "timeout" not in cases.values()
    # every suite that `make conformance` runs is in the baseline
    assert {check_conformance.suite_of(n) for n in cases} == {"node", "simple", "pytorch-converted",
                                                              "pytorch-operator"}


def test_update_refuses_a_run_of_another_mode(tmp_path, capsys):
    res, base = tmp_path / "res.json", tmp_path / "base.json"
    write(base, {"a": "pass"}, mode="default")
    write(res, {"a": "pass"}, mode="runtime-inputs")
    assert check_conformance.main([str(res), str(base), "--update"]) == 2
    assert "mode 'runtime-inputs'" in capsys.readouterr().err
    write(base, {"a": "fail"}, mode="runtime-inputs")
    assert check_conformance.main([str(res), str(base), "--update"]) == 0
    assert json.loads(base.read_text())["mode"] == "runtime-inputs"

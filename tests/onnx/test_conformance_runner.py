"""The ONNX conformance runner (tests/onnx/conformance.py): every status from a backend that
passes, fails, raises, skips, crashes and hangs on chosen cases; a crash or a hang costs only
its case; the JSON it writes is what check_conformance.py reads; outputs compared as onnx does."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import conformance  # noqa: E402

# A backend deciding by the model's first op: onnx's reference evaluator computes the outputs.
FAKE_BACKEND = textwrap.dedent("""
    import os, signal, time, unittest
    from onnx.reference import ReferenceEvaluator

    class Rep:
        def __init__(self, model):
            self.op = model.graph.node[0].op_type
            self.ref = ReferenceEvaluator(model)
            self.names = [i.name for i in model.graph.input]

        def run(self, inputs):
            if self.op == "Sigmoid":
                os.kill(os.getpid(), signal.SIGSEGV)
            if self.op == "Tanh":
                time.sleep(120)
            out = self.ref.run(None, dict(zip(self.names, inputs)))
            return [o + 1 for o in out] if self.op == "Relu" else out

    def prepare(model, device="CPU"):
        op = model.graph.node[0].op_type
        if op == "Neg":
            raise ValueError("no Neg here")
        if op == "Ceil":
            raise unittest.SkipTest("not today")
        return Rep(model)
""")

EXPECTED = {"test_abs": "pass", "test_ceil": "skip", "test_floor": "pass", "test_neg": "error",
            "test_relu": "fail", "test_sigmoid": "crash", "test_sin": "pass", "test_tanh": "timeout",
            "test_where_example": "pass"}


def test_every_status_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    (tmp_path / "fake_backend.py").write_text(FAKE_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))          # the workers start with this path
    out, base = tmp_path / "results.json", tmp_path / "base.json"
    base.write_text(json.dumps({"cases": [{"name": "test_abs", "status": "pass"},
                                          {"name": "test_neg", "status": "pass"}]}))
    names = "|".join(n[len("test_"):] for n in EXPECTED)
    rc = conformance.main(["--backend", "fake_backend", "--filter", f"^test_({names})$", "-j", "1",
                           "--timeout", "4", "--json", str(out), "--baseline", str(base)])
    printed = capsys.readouterr()
    assert rc == 1                                      # test_neg regressed
    assert "REGRESSED test_neg: error" in printed.out
    doc = json.loads(out.read_text())
    got = {c["name"]: c for c in doc["cases"]}
    assert {n: c["status"] for n, c in got.items()} == EXPECTED
    assert "SIGSEGV" in got["test_sigmoid"]["message"]
    assert "no Neg here" in got["test_neg"]["message"]
    assert got["test_relu"]["message"].startswith("data set 0: output 0: not close")
    assert doc["summary"]["passed"] == 4 and doc["summary"]["failed"] == 4 and doc["summary"]["skipped"] == 1
    assert doc["suites"] == ["node"] and doc["filter"]
    # check_conformance reads it: the filtered run is refused as a new baseline
    import check_conformance

    assert check_conformance.main([str(out), str(base)]) == 1
    assert check_conformance.main([str(out), str(base), "--update"]) == 2


def test_a_backend_that_does_not_load_stops_the_run(capsys):
    rc = conformance.main(["--backend", "no_such_backend_module", "--filter", "^simple/test_shrink$",
                           "--suites", "simple", "-j", "1"])
    assert rc == 2
    assert "cannot load backend 'no_such_backend_module'" in capsys.readouterr().err


def test_file_suites_are_found_with_their_names():
    cases = conformance.discover(["simple", "pytorch-operator"])
    names = {c["name"] for c in cases}
    assert "simple/test_single_relu_model" in names
    assert all(n.startswith(("simple/", "pytorch-operator/")) for n in names)
    relu = next(c for c in cases if c["name"] == "simple/test_single_relu_model")
    assert relu["ops"] == ["Relu"] and (relu["rtol"], relu["atol"]) == (1e-3, 1e-7)


@pytest.mark.parametrize("expected, actual, ok", [
    (np.float32([1, np.nan]), np.float32([1.0005, np.nan]), True),
    (np.float32([1, 2]), np.float32([1, 2.01]), False),
    (np.float32([1, 2]), np.float64([1, 2]), False),                       # dtype
    (np.float32([1, 2]), np.float32([[1, 2]]), False),                     # shape
    (np.array(["a", "b"], dtype=object), np.array(["a", "b"], dtype=object), True),
    (np.array(["a", "b"], dtype=object), np.array(["a", "c"], dtype=object), False),
    ([np.int64([1]), np.int64([2])], [np.int64([1]), np.int64([2])], True),
    ([np.int64([1]), np.int64([2])], [np.int64([1])], False),
    (None, None, True),
    (None, np.int64([1]), False),
    (np.array([1.0], ml_dtypes.bfloat16), np.array([1.0078125], ml_dtypes.bfloat16), True),  # 1 ulp
    (np.array([1.0], ml_dtypes.bfloat16), np.array([1.0625], ml_dtypes.bfloat16), False),
])
def test_outputs_are_compared_as_onnx_compares_them(expected, actual, ok):
    if ok:
        conformance.check_outputs(expected, actual, 1e-3, 1e-7)
    else:
        with pytest.raises(AssertionError):
            conformance.check_outputs(expected, actual, 1e-3, 1e-7)


def test_runtime_inputs_mode_reaches_the_workers_and_the_json(tmp_path, monkeypatch):
    (tmp_path / "mode_backend.py").write_text(textwrap.dedent("""
        import os
        from onnx.reference import ReferenceEvaluator

        class Rep:
            def __init__(self, model):
                self.ref, self.names = ReferenceEvaluator(model), [i.name for i in model.graph.input]

            def run(self, inputs):
                return self.ref.run(None, dict(zip(self.names, inputs)))

        def prepare(model, device="CPU"):
            if os.environ.get("EMBER_BACKEND_SPECIALIZE") != "0":
                raise ValueError("specializing")
            return Rep(model)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("EMBER_BACKEND_SPECIALIZE", "1")     # restored afterwards
    out = tmp_path / "results.json"
    args = ["--backend", "mode_backend", "--filter", "^test_abs$", "-j", "1", "--json", str(out)]
    assert conformance.main(args) == 1
    assert json.loads(out.read_text())["mode"] == "default"
    assert conformance.main(args + ["--runtime-inputs"]) == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "runtime-inputs" and doc["cases"][0]["status"] == "pass"

"""``ember.timings``: every compile says where its time went, step by step (``Module.timings``,
``ember compile --timings``); a step's time is its own (not its inner steps'), and the steps
with the ``other`` row add up to the whole compile."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.cli import main
from ember.timings import Timings


def _adds_up(t: Timings) -> None:
    rows = t.as_dict()
    total = rows.pop("total")
    for name, r in rows.items():
        assert r["wall"] >= 0 and r["cpu"] >= 0 and r["count"] >= 1, name
    assert sum(r["wall"] for r in rows.values()) == pytest.approx(total["wall"], abs=1e-6)
    # CPU seconds are counted in clock ticks: the rows may round above the total, never far
    assert sum(r["cpu"] for r in rows.values()) >= total["cpu"] - 1e-6


def test_a_step_inside_another_counts_for_itself_only():
    t = Timings()
    with t.step("outer"):
        time.sleep(0.02)
        with t.step("inner"):
            time.sleep(0.05)
        with t.step("inner"):
            time.sleep(0.05)
    t.note("inner", "twice")
    t.finish()
    inner, outer = t.steps["inner"], t.steps["outer"]
    assert inner.count == 2 and outer.count == 1 and inner.detail == "twice"
    assert inner.wall >= 0.1 and 0.02 <= outer.wall < inner.wall
    assert t.wall >= inner.wall + outer.wall
    _adds_up(t)
    table = t.table()
    assert table.splitlines()[0].split() == ["step", "wall", "s", "cpu", "s", "runs"]
    assert "inner" in table and "twice" in table and "other" in table and "total" in table


def test_a_step_that_raises_is_timed():
    t = Timings()
    with pytest.raises(ValueError), t.step("fails"):
        raise ValueError("no")
    assert t.steps["fails"].count == 1


def _cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32), "w")
    fc = numpy_helper.from_array((rng.standard_normal((3, 8)) * 0.3).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "timed_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, fc])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))     # empty: a cold compile
    monkeypatch.setenv("EMBER_RUNTIME_DIR", str(tmp_path / "runtime"))  # the runtime built here too
    path = tmp_path / "timed_cnn.onnx"
    onnx.save(_cnn(), str(path))
    return str(path)


def test_a_cold_compile_times_every_step_and_a_cached_one_only_loads(model_file):
    t0 = time.perf_counter()
    module = ember.compile(model_file)
    wall = time.perf_counter() - t0
    t = module.timings
    for step in ("cache key (hash the model)", "frontend (import the model)", "graph: verify",
                 "graph pass fold_constants", "graph pass layout_nchwc", "fusion", "memory plan", "constants",
                 "kernel lowering", "loop pass simplify_indices", "loop pass vectorize", "loop: verify",
                 "C generation", "C: build key (hash the sources and constants)",
                 "C: compile (and assemble the constants)", "C: link", "C: seal the artifact", "cache store", "load"):
        assert t.steps[step].count >= 1, step
    assert t.steps["loop pass unroll"].count == 2 * t.steps["loop pass vectorize"].count   # run twice per kernel
    kernels = module.metadata["kernels"]
    assert t.steps["kernel lowering"].count <= kernels
    # the kernels were compiled in the background while Python went on; the build found them
    background = t.steps["C: wait for the background compiles"].detail
    assert "compiled in the background" in background and "the runtime's 3" in background
    done_early = int(background.split(" C files")[0])
    assert f"{done_early} from the cache" in t.steps["C: compile (and assemble the constants)"].detail
    assert 0 < t.wall <= wall
    _adds_up(t)

    again = ember.compile(model_file).timings         # the whole model from the cache
    assert list(again.steps) == ["cache key (hash the model)", "load"]
    _adds_up(again)


def test_objects_from_the_cache_are_counted(model_file):
    ember.compile(model_file, cache=False)
    # another model of the same kernels but one: its other kernels' objects come from the cache
    mp = _cnn()
    mp.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.ones((3, 8), np.float32), "fc"))
    detail = ember.compile(mp, cache=False).timings.steps["C: compile (and assemble the constants)"].detail
    compiled, of = (int(w) for w in detail.split(" C files")[0].split(" of "))
    assert 0 <= compiled < of and f"{of - compiled} from the cache" in detail


def test_cli_prints_the_table(model_file, tmp_path, capsys):
    assert main(["compile", model_file, "-o", str(tmp_path / "m.ember"), "--timings"]) == 0
    out = capsys.readouterr().out
    assert "timings" in out and "kernel lowering" in out and "C: link" in out and "total" in out
    assert main(["compile", model_file, "-o", str(tmp_path / "m2.ember")]) == 0
    assert "kernel lowering" not in capsys.readouterr().out

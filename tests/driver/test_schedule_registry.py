"""``ember.schedules``: schedules found by target kind, then family, without editing an op; a
fallback to the default schedule is reported in the kernel, the dump and ``progress``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import ember
from ember import schedules
from ember.driver.compile import generate
from ember.errors import CodegenError, TargetError
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.schedules.cpu_loops import default_schedule
from ember.target import Target, host


@dataclasses.dataclass(frozen=True)
class _Board(Target):
    """A CPU of a new kind ("board") that shares the cpu schedules it has none of its own for."""

    @property
    def family(self) -> str:
        return "cpu"


def _like_host(cls=Target, **changes) -> Target:
    h = host()
    fields = {f.name: getattr(h, f.name) for f in dataclasses.fields(Target)}
    fields.update(changes)
    return cls(**fields)


def _matmul_softmax():
    rng = np.random.default_rng(0)
    b = GraphBuilder("mm")
    x = b.input("x", TensorType((16, 32), "float32"))
    w = b.const(rng.standard_normal((32, 48)).astype("float32"))
    y = b.op("softmax", [b.op("relu", [b.op("matmul", [x, w])])])
    graph = b.finish([y])
    return graph, {"x": rng.standard_normal((16, 32)).astype("float32")}


@pytest.fixture
def registry(monkeypatch):
    """The registry's tables, restored after the test (schedules registered by a test vanish)."""
    schedules._load()
    monkeypatch.setattr(schedules, "_SCHEDULES", dict(schedules._SCHEDULES))
    monkeypatch.setattr(schedules, "_DEFAULTS", dict(schedules._DEFAULTS))


def test_a_new_kind_registers_a_schedule_without_editing_an_op(registry, tmp_path):
    calls = []

    @schedules.register("board", "matmul", "matmul_packed")   # (a constant weight is packed at -O3)
    def board_matmul(a, s, anchor, target):
        calls.append(anchor.name)
        root = s.root
        _, vi = root.split(root.leaves[-1], target.lanes)
        root.vectorize(vi)

    target = _like_host(_Board, kind="board")
    assert schedules.lookup(target, "matmul") is board_matmul
    assert schedules.lookup(target, "softmax") is schedules.lookup(host(), "softmax")   # the family's
    assert schedules.default(target) is default_schedule
    assert "matmul" in schedules.registered("board") and "softmax" not in schedules.registered("board")
    graph, feed = _matmul_softmax()
    cm = generate(graph, target, 3)
    assert calls == ["matmul"]
    assert not any("schedule_fallback" in k.attrs for k in cm.kernels)
    module = ember.compile(graph, target=target, cache=False)
    np.testing.assert_allclose(module.run(feed)[graph.outputs[0].name], run_graph(graph, feed)[0],
                               rtol=1e-5, atol=1e-6)


def test_a_kind_without_schedules_is_an_error():
    with pytest.raises(TargetError, match="no schedules are registered for targets of kind 'nowhere'"):
        generate(_matmul_softmax()[0], _like_host(kind="nowhere"), 3)


def test_a_schedule_that_does_not_fit_falls_back_and_says_so(registry, tmp_path):
    def refuses(a, s, anchor, target):
        raise CodegenError("this instance is too narrow")

    schedules._SCHEDULES[("cpu", "matmul_packed")] = refuses
    graph, feed = _matmul_softmax()
    said = []
    module = ember.compile(graph, cache=False, dump=tmp_path, progress=said.append)
    np.testing.assert_allclose(module.run(feed)[graph.outputs[0].name], run_graph(graph, feed)[0],
                               rtol=1e-5, atol=1e-6)
    reason = "the cpu schedule of matmul_packed does not fit: this instance is too narrow"
    assert any(reason in m and "default schedule" in m for m in said), said
    dumped = [p.read_text() for p in tmp_path.glob("*.tir.txt")]
    assert any(f"# schedule fallback: {reason}" in text for text in dumped)
    cm = generate(graph, host(), 3)
    fallbacks = [k.attrs.get("schedule_fallback") for k in cm.kernels]
    assert fallbacks.count(reason) == 1 and fallbacks.count(None) == len(fallbacks) - 1   # softmax: its own


def test_a_kind_with_no_schedule_for_a_matmul_says_so(registry):
    schedules.register_default("bare")(default_schedule)
    said = []
    cm = generate(_matmul_softmax()[0], _like_host(kind="bare"), 3, progress=said.append)
    by_op = {k.comment.split(": fuses ")[1].split(" ")[0]: k.attrs.get("schedule_fallback") for k in cm.kernels}
    assert by_op == {"matmul_packed": "no bare schedule for matmul_packed", "softmax": None}   # softmax: a reduction
    assert any("no bare schedule for matmul_packed" in m for m in said)


def test_every_cpu_schedule_is_registered_apart_from_the_ops():
    from ember.ops import OPS

    assert not [op.name for op in OPS.values() if hasattr(op, "schedule")]
    assert {"conv2d_nchwc", "matmul", "matmul_packed", "attention", "winograd_input", "max_pool2d"} \
        <= set(schedules.registered("cpu"))
    with pytest.raises(ValueError, match="registered twice"):
        schedules.register("cpu", "matmul")(lambda *a: None)

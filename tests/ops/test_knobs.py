"""Schedule knobs: every choice a CPU schedule makes by a cost model can be set per compile
(``ember.compile(..., knobs=...)``); any valid value gives the reference's results, invalid
ones are refused by name, and the knobs are part of the cache key."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember.errors import TargetError
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.schedules.knobs import KNOBS, check_knobs
from ember.target import host


def _matmul_graph():
    b = GraphBuilder("knob_mm")
    x = b.input("x", TensorType((37, 64), "float32"))
    y = b.input("y", TensorType((64, 40), "float32"))
    return b.finish([b.op("relu", [b.op("matmul", [x, y], name="mm")])])


def _conv_graph():
    rng = np.random.default_rng(0)
    b = GraphBuilder("knob_conv")
    x = b.input("x", TensorType((1, 16, 13, 13), "float32"))
    w = b.const(rng.standard_normal((32, 16, 3, 3)).astype(np.float32) * 0.2)
    c = b.op("conv2d", [x, w], name="conv", strides=(2, 2), pads=(1, 1, 1, 1))
    p = b.op("max_pool2d", [c], name="pool", kernel=(2, 2), strides=(1, 1))
    return b.finish([p])


def _attention_graph():
    b = GraphBuilder("knob_attn")
    q = b.input("q", TensorType((2, 20, 16), "float32"))
    kt = b.input("kt", TensorType((2, 16, 32), "float32"))
    v = b.input("v", TensorType((2, 30, 16), "float32"))
    return b.finish([b.op("attention", [q, kt, v], name="attn", scale=0.25, keys=30)])


def _inputs(g, seed=1):
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def _kernels_text(folder):
    return "".join(p.read_text() for p in sorted(folder.glob("*.tir.txt")))


CASES = [
    (_matmul_graph, {"matmul.rows": 1}), (_matmul_graph, {"matmul.rows": 5, "matmul.vectors": 1}),
    (_matmul_graph, {"matmul.rows": 16, "matmul.vectors": 3}),
    (_matmul_graph, {"matmul.unroll": 4}), (_matmul_graph, {"matmul.rows": 3, "matmul.unroll": 8}),
    (_conv_graph, {"conv2d.unroll": 2}), (_conv_graph, {"conv2d.unroll": 8, "conv2d.order": "rows"}),
    (_conv_graph, {"conv2d.rows": 1}), (_conv_graph, {"conv2d.rows": 7, "conv2d.order": "rows"}),
    (_conv_graph, {"conv2d.order": "channels", "pool.rows": 3}), (_conv_graph, {"parallel_min": 0}),
    (_attention_graph, {"attention.rows": 1}), (_attention_graph, {"attention.rows": 7}),
]


@pytest.mark.parametrize("make,knobs", CASES, ids=[",".join(f"{k}={v}" for k, v in c[1].items()) for c in CASES])
def test_knobs_change_the_schedule_not_the_results(make, knobs, tmp_path):
    g = make()
    feeds = _inputs(g)
    want = run_graph(g, feeds)
    default = ember.compile(g, cache=False, dump=tmp_path / "default")
    tuned = ember.compile(g, cache=False, dump=tmp_path / "tuned", knobs=knobs)
    for m in (default, tuned):
        got = list(m.run(feeds).values())
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert _kernels_text(tmp_path / "tuned") != _kernels_text(tmp_path / "default")


def test_unknown_and_invalid_knobs_are_refused():
    g = _matmul_graph()
    with pytest.raises(TargetError, match="unknown schedule knob 'matmul.row'.*matmul.rows"):
        ember.compile(g, cache=False, knobs={"matmul.row": 4})
    for bad in ({"matmul.rows": 0}, {"matmul.rows": 2.5}, {"matmul.rows": True}, {"conv2d.order": "cols"}):
        with pytest.raises(TargetError, match="expects"):
            check_knobs(bad)
    assert check_knobs({"matmul.rows": 3, "conv2d.order": "rows"}) == {"matmul.rows": 3, "conv2d.order": "rows"}


def test_knobs_are_part_of_the_target_and_its_key():
    t = host()
    t4 = t.with_knobs({"matmul.rows": 4})
    assert t.knob("matmul.rows", 6) == 6 and t4.knob("matmul.rows", 6) == 4
    assert t4.with_knobs({"matmul.vectors": 1}).knobs == (("matmul.rows", 4), ("matmul.vectors", 1))
    assert len({t.key(), t4.key(), t.with_knobs({"matmul.rows": 5}).key()}) == 3
    assert all(len(v) == 3 and callable(v[2]) for v in KNOBS.values())


def test_command_line_knobs(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    from ember.cli import main

    info = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "y"], ["z"])], "mm",
                              [info("x", [37, 64]), info("y", [64, 40])], [info("z", [37, 40])])
    src = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "mm.so"
    assert main(["compile", str(src), "-o", str(out), "--knob", "matmul.rows=3"]) == 0
    assert main(["compile", str(src), "-o", str(out), "--knob", "matmul.rows=zero"]) == 1
    assert "matmul.rows" in capsys.readouterr().err

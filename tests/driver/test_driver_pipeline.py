"""``ember.driver.pipeline``: every pass, graph and loop IR, runs from one list with one
context; a disabled pass does not run, every pass is dumped, and the verification after each
pass names the one that broke its input."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember
from ember.driver import pipeline
from ember.driver.compile import generate
from ember.errors import CodegenError, EmberError, GraphError
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.target import host
from ember.tir.expr import Const, Var
from ember.tir.stmt import Seq, Store


def _conv_attention():
    """A 3x3 convolution (Winograd, packing, NCHWc at -O3) and a matmul -> softmax -> matmul
    (fused attention)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("pipe")
    x = b.input("x", TensorType((1, 16, 8, 8), "float32"))
    w = b.const((rng.standard_normal((16, 16, 3, 3)) * 0.2).astype("float32"))
    c = b.op("relu", [b.op("conv2d", [x, w], pads=(1, 1, 1, 1))])
    q = b.op("reshape", [c], shape=(16, 64))
    kt = b.op("transpose", [q], perm=(1, 0))
    s = b.op("softmax", [b.op("matmul", [q, kt])])
    y = b.op("matmul", [s, q])
    graph = b.finish([y])
    return graph, {"x": rng.standard_normal((1, 16, 8, 8)).astype("float32")}


def _ops(cm) -> set:
    return {n.op for n in cm.graph.nodes}


def test_disabled_passes_do_not_run_and_the_result_is_the_same():
    graph, feed = _conv_attention()
    full = generate(graph, host(), 3)
    assert {"winograd_input", "attention"} <= _ops(full)
    cm = generate(graph, host(), 3, disabled_passes=("winograd", "fuse_attention"))
    assert not {"winograd_input", "attention"} & _ops(cm) and "conv2d_nchwc" in _ops(cm)
    want = run_graph(graph, feed)[0]
    for disabled in (("winograd", "fuse_attention", "unroll"), ("layout_nchwc", "vectorize", "simplify_indices")):
        module = ember.compile(graph, cache=False, disabled_passes=disabled)
        np.testing.assert_allclose(module.run(feed)[graph.outputs[0].name], want, rtol=1e-4, atol=1e-4)
    unrolled = generate(graph, host(), 3, disabled_passes=("unroll",))
    assert any(" unrolled " in pipeline_text(k) for k in unrolled.kernels)
    assert not any(" unrolled " in pipeline_text(k) for k in full.kernels)


def pipeline_text(f) -> str:
    from ember.tir.printer import print_func

    return print_func(f)


def test_unknown_or_required_passes_cannot_be_disabled():
    with pytest.raises(EmberError, match="no pass named 'winogard'.*winograd"):
        pipeline.check_disabled(["winogard"])
    with pytest.raises(EmberError, match="'pair_saturation' cannot be disabled"):
        pipeline.check_disabled(["pair_saturation"])
    with pytest.raises(EmberError, match="no pass named"):
        ember.compile(_conv_attention()[0], cache=False, disabled_passes=("nothing",))


def test_every_pass_is_dumped(tmp_path):
    graph, _ = _conv_attention()
    ember.compile(graph, cache=False, dump=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    graph_stages = [re.match(r"\d{3}_(.*)\.graph\.txt$", n).group(1) for n in names if n.endswith(".graph.txt")]
    assert graph_stages[0] == "input"
    want = []
    for st in pipeline.graph_steps():             # all run at -O3; a pass twice in a row runs once
        if not want or want[-1] != st.name:
            want.append(st.name)
    assert graph_stages[1:] == want
    kernels = [re.match(r"\d{3}_kernel_\d{3}_(.*)\.tir\.txt$", n).group(1) for n in names
               if re.match(r"\d{3}_kernel_", n)]
    assert len(kernels) >= 3
    for k in kernels:
        for st in pipeline.LOOP_STEPS:
            assert any(n.endswith(f"_{st.name}.{k}.tir.txt") for n in names), (st.name, k)


def test_verification_names_a_graph_pass_that_breaks_the_graph():
    def backwards(g, ctx):
        g = g.copy()
        g.nodes.reverse()          # values used before they are defined
        return g

    broken = pipeline.Step("backwards", "graph", 0, backwards)
    graph, _ = _conv_attention()
    ctx = pipeline.Context(host(), 3)
    with pytest.raises(GraphError, match="pass 'backwards' produced a malformed graph"):
        pipeline.run_graph(graph, ctx, list(pipeline.graph_steps()[:3]) + [broken])


def test_verification_names_a_loop_pass_that_breaks_a_kernel(monkeypatch):
    def ghost(f, ctx):
        out = f.params[-1]
        f.body = Seq([f.body, Store(out, Var("ghost"), Const(0.0, out.dtype))])   # an unbound variable
        return f

    broken = pipeline.Step("ghost", "loop", 0, ghost)
    monkeypatch.setattr(pipeline, "LOOP_STEPS", pipeline.LOOP_STEPS[:2] + (broken,) + pipeline.LOOP_STEPS[2:])
    with pytest.raises(CodegenError, match="loop-IR pass 'ghost' produced a malformed kernel: .*variable ghost"):
        generate(_conv_attention()[0], host(), 3)
    # a disabled pass is not run, so it breaks nothing
    generate(_conv_attention()[0], host(), 3, disabled_passes=("ghost",))


def test_the_loop_verifier_checks_buffers_and_lanes():
    from ember.tir.expr import Ramp
    from ember.tir.stmt import Allocate, Buffer, For, PrimFunc
    from ember.tir.verify import verify_func

    out = Buffer("out", "float32", 16)
    tmp = Buffer("tmp", "float32", 16, scope="local")
    i = Var("i")
    verify_func(PrimFunc("ok", [out], For(i, 16, "serial", Store(out, i, Const(1.0, "float32")))))
    with pytest.raises(CodegenError, match="buffer tmp is used outside its allocation"):
        verify_func(PrimFunc("k", [out], Seq([Allocate(tmp, Seq([])), Store(tmp, Const(0), Const(1.0, "float32"))])))
    with pytest.raises(CodegenError, match="writes 1 lane"):
        verify_func(PrimFunc("k", [out], Store(out, Ramp(Const(0), 1, 8), Const(1.0, "float32"))))
    with pytest.raises(CodegenError, match="binds a variable an enclosing loop binds"):
        verify_func(PrimFunc("k", [out], For(i, 4, "serial", For(i, 4, "serial", Store(out, i, Const(1.0, "float32"))))))


def test_ember_passes_lists_the_pipeline(capsys):
    from ember.cli import main

    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    for st in pipeline.steps():
        assert re.search(rf"^{st.name}\s+{st.ir}\s", out, re.M)

"""``ember bisect`` and ``ember view``: a planted wrong pass and a planted wrong kernel are named
exactly (pass, kernel, node); a correct model reports no disagreement."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from ember import passes
from ember.cli import main
from ember.errors import InputError, TargetError
from ember.ops import get_op
from ember.passes.base import Pass
from ember.tools.bisect import DISAGREES, bisect, compare
from test_cli import tiny_cnn


def _add_to_sub(graph):
    """The planted fault: the first add becomes a sub (same types, so the graph still verifies)."""
    g = graph.copy()
    for n in g.nodes:
        if n.op == "add":
            n.op = "sub"
            break
    return g


@pytest.fixture
def wrong_pass(monkeypatch):
    monkeypatch.setitem(passes.PASSES, "add_to_sub", Pass("add_to_sub", 1, _add_to_sub))
    at = passes.PIPELINE.index("simplify") + 1
    monkeypatch.setattr(passes, "PIPELINE", passes.PIPELINE[:at] + ("add_to_sub",) + passes.PIPELINE[at:])


@pytest.fixture
def wrong_relu(monkeypatch):
    """The planted fault: relu's compute negates instead (its reference stays right)."""
    neg = get_op("neg")
    monkeypatch.setattr(get_op("relu"), "compute", lambda attrs, x: neg.compute({}, x))


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "tiny_cnn.onnx"
    onnx.save(tiny_cnn(), str(path))
    return str(path)


def test_correct_model_agrees():
    r = bisect(tiny_cnn())
    assert r.agrees and r.first_kernel is None and r.first_pass is None
    # the kernels: the padding, the convolution with its bias and relu, the pool, the flatten, the
    # fully connected layer (where the target blocks channels, NCHWc layout changes join them)
    names = [k.kernel.name for k in r.kernels]
    assert names[0].endswith("conv_pad") and names[-1] == "fc__fc_1" and len(names) == 5
    assert [k.kernel.index for k in r.kernels if "relu 'relu" in k.kernel.nodes] == [1]
    assert names[1].startswith("conv_2__conv_1") and "relu" in names[1]
    assert all(k.diff.ok for k in r.kernels)
    assert r.passes[0].name == "input" and len(r.passes) > 5
    assert r.passes[-1].diff.ok and r.passes[-1].name == "fuse_attention"
    assert "no disagreement" in str(r)


def test_names_the_wrong_pass_and_node(wrong_pass):
    r = bisect(tiny_cnn())
    assert not r.agrees
    fp = r.first_pass
    assert fp.name == "add_to_sub" and r.passes[fp.index - 1].name == "simplify"
    assert r.passes[fp.index - 1].diff.ok         # the bisection ran the graph before it
    assert all(p.diff.ok for p in r.passes[:fp.index] if p.diff is not None)
    assert fp.node.startswith("sub '") and "(value %" in fp.node
    assert len(fp.removed) == 1 and " add(" in fp.removed[0] and len(fp.added) == 1 and " sub(" in fp.added[0]
    # the kernels do what the (wrong) optimized graph says: the fault is in the pass, not a kernel
    assert r.first_kernel is None
    text = str(r)
    assert "first pass that disagrees: #%d add_to_sub" % fp.index in text


def test_names_the_wrong_kernel(wrong_relu):
    r = bisect(tiny_cnn())
    fk = r.first_kernel
    # (the relu is named relu_1 where the layout pass rewrote it into blocked channels)
    assert fk is not None and fk.kernel.index == 1 and fk.kernel.name.startswith("conv_2__conv_1")
    assert fk.value in ("relu", "relu_1") and f"relu '{fk.value}'" in fk.kernel.nodes
    assert r.kernels[0].diff.ok                   # the pad before it agrees
    assert "for parallel" in fk.kernel.loop_ir or "for " in fk.kernel.loop_ir
    assert f"EMBER_HIDDEN void {fk.kernel.c_name}(" in fk.kernel.c
    assert r.first_pass is None                   # every pass agrees with the frontend's graph
    assert f"first kernel that disagrees: #1 {fk.kernel.name} (value %{fk.value}:" in str(r)


def test_cli_exit_status_and_inputs(model_path, tmp_path, capsys, wrong_relu):
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["bisect", model_path, "--inputs", str(tmp_path / "in.npz")]) == DISAGREES
    out = capsys.readouterr().out
    assert "given inputs" in out and "conv_2__conv_1" in out and "<-- DISAGREES" in out
    np.savez(tmp_path / "bad.npz", y=x)
    assert main(["bisect", model_path, "--inputs", str(tmp_path / "bad.npz")]) == 1
    assert "missing x" in capsys.readouterr().err


def test_cli_agrees(model_path, capsys):
    assert main(["bisect", model_path]) == 0
    assert "no disagreement" in capsys.readouterr().out


def test_refuses_cross_targets_and_bad_inputs():
    with pytest.raises(TargetError):
        bisect(tiny_cnn(), target="aarch64-linux")
    with pytest.raises(InputError):
        bisect(tiny_cnn(), {"x": np.zeros((1, 3, 16, 16), np.float32), "z": np.zeros(1)})


def test_compare():
    a = np.array([1.0, 2.0, np.nan, np.inf], np.float32)
    assert compare(a, a.copy(), 1e-3, 1e-4).ok
    d = compare(a + np.float32([0, 1, 0, 0]), a, 1e-3, 1e-4)
    assert not d.ok and d.bad == 1 and d.max_abs == 1.0
    assert not compare(np.zeros(3), np.zeros(4), 1e-3, 1e-4).ok
    assert not compare(np.array([1, 2]), np.array([1, 3]), 0, 0).ok
    assert not compare(np.array([np.nan]), np.array([1.0]), 1e-3, 1e-4).ok


def test_view(model_path, capsys):
    assert main(["view", model_path]) == 0
    out = capsys.readouterr().out
    assert "pack_weights" in out and "conv_2__conv_1" in out and "relu 'relu" in out
    assert main(["view", model_path, "--after", "input"]) == 0
    out = capsys.readouterr().out
    # the convolution as the target runs it: packed weights, or blocked channels (NCHWc)
    assert "%relu = relu(" in out and "conv2d_packed" not in out and "conv2d_nchwc" not in out
    assert main(["view", model_path, "--after", "pack_weights", "--kernel", "fc__fc_1"]) == 0
    out = capsys.readouterr().out
    assert ("conv2d_packed" in out or "conv2d_nchwc" in out) and "EMBER_HIDDEN void fc__fc_1(" in out
    assert "loop IR:" in out
    assert main(["view", model_path, "--kernel", "nope"]) == 1
    assert "no kernel 'nope'" in capsys.readouterr().err
    assert main(["view", model_path, "--target", "aarch64-linux", "--profile"]) == 1
    assert "needs this machine's target" in capsys.readouterr().err
    assert main(["view", model_path, "--profile", "--runs", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["kernel", "ms/run", "share"] and lines[-1].startswith("total")
    rows = [float(line.split()[1]) for line in lines[1:-1]]
    assert len(rows) == 5 and rows == sorted(rows, reverse=True)


def test_a_model_that_fails_to_run_does_not_agree(monkeypatch):
    from ember.errors import IndexOutOfRangeError
    from ember.runtime.module import Module

    def fail(self, feeds):
        raise IndexOutOfRangeError("index 9 out of range")

    monkeypatch.setattr(Module, "run", fail)
    r = bisect(tiny_cnn())
    assert not r.agrees and "out of range" in r.run_error and not r.kernels
    assert len(r.passes) > 5 and r.first_pass is None
    assert "failed to run" in str(r)

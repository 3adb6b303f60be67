"""The demo CNN and a small transformer block compiled for every cross target (at -O1, to keep
compile times small), run under qemu user mode (Linux targets) or Node.js (wasm32), and matched
against the reference interpreter on the host.  Skipped, with the reason, where zig, qemu or
Node.js is missing (``make cross-deps`` installs them)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.errors import ArtifactError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from ember.runtime import pattern_array
from ember.runtime.cross import CrossArtifact
from ember.target import resolve

from .cross import ROOT, artifact_name, missing, run_artifact

#: (target, model): both models on every target, the demo CNN on the feature variants too
CASES = [(t, m) for t in ["aarch64-linux", "armv7-linux", "riscv64-linux", "wasm32"] for m in ("demo_cnn", "transformer_block")]
CASES += [("aarch64-linux+dotprod", "demo_cnn"), ("riscv64-linux+v", "demo_cnn")]
#: float32 results differ from the reference by rounding only (FMA, vector exp/erf, summation order)
TOLERANCE = 1e-3


def demo_cnn() -> onnx.ModelProto:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    return demo.build_model()


def transformer_block(seq: int = 16, dim: int = 32, ffn: int = 64) -> onnx.ModelProto:
    """One pre-softmax-scaled attention head, residual, LayerNorm, a GELU (erf) feed-forward
    network, residual, LayerNorm: matmuls, softmax (exp, max), erf, reductions."""
    rng = np.random.default_rng(1)
    inits = []

    def w(name, *shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name))
        return name

    def c(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    n = helper.make_node
    nodes = [
        n("MatMul", ["x", w("wq", dim, dim)], ["q"]), n("MatMul", ["x", w("wk", dim, dim)], ["k"]),
        n("MatMul", ["x", w("wv", dim, dim)], ["v"]),
        n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), n("MatMul", ["q", "kt"], ["s0"]),
        n("Mul", ["s0", c("scale", 1 / np.sqrt(dim))], ["s"]), n("Softmax", ["s"], ["p"], axis=-1),
        n("MatMul", ["p", "v"], ["a"]), n("MatMul", ["a", w("wo", dim, dim)], ["o"]),
        n("Add", ["x", "o"], ["r1"]),
        n("LayerNormalization", ["r1", c("ln1_g", np.ones(dim)), c("ln1_b", np.zeros(dim))], ["h"], axis=-1),
        n("MatMul", ["h", w("w1", dim, ffn)], ["f1"]), n("Add", ["f1", c("bf1", rng.standard_normal(ffn) * 0.1)], ["f2"]),
        n("Div", ["f2", c("sqrt2", np.sqrt(2.0))], ["g0"]), n("Erf", ["g0"], ["g1"]),
        n("Add", ["g1", c("one", 1.0)], ["g2"]), n("Mul", ["f2", "g2"], ["g3"]), n("Mul", ["g3", c("half", 0.5)], ["g"]),
        n("MatMul", ["g", w("w2", ffn, dim)], ["f3"]), n("Add", ["h", "f3"], ["r2"]),
        n("LayerNormalization", ["r2", c("ln2_g", np.ones(dim)), c("ln2_b", np.zeros(dim))], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "transformer_block",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


MODELS = {"demo_cnn": demo_cnn, "transformer_block": transformer_block}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cross")


def _reference(model):
    g = from_onnx(model)
    feeds = {v.name: pattern_array(v.type) for v in g.inputs}
    return g, run_graph(g, feeds)


@pytest.mark.slow
@pytest.mark.parametrize("spec, model_name", CASES)
def test_cross_build_runs_and_matches_the_reference(spec, model_name, work):
    target = resolve(spec)
    why = missing(target)
    if why:
        pytest.skip(why)
    model = MODELS[model_name]()
    graph, expected = _reference(model)
    art = ember.compile(model, target=spec, cflags=("-O1",))
    assert isinstance(art, CrossArtifact)
    assert art.metadata["target"] == spec and art.metadata["triple"] == target.triple
    path = art.save(work / artifact_name(model_name, target))
    with pytest.raises(ArtifactError, match=f"artifact for {re.escape(spec)}\\b.*cannot be loaded here"):
        ember.load(path)                   # another machine's code: refused, never dlopen'ed
    saved = CrossArtifact(path, spec)      # the saved copy runs under the emulator
    outs = run_artifact(saved, {v.name: pattern_array(v.type) for v in graph.inputs})
    printed = saved.last.printed
    for got, want in zip(outs, expected):
        err = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
        print(f"{spec} {model_name}: max error {err:.2e}")
        assert err <= TOLERANCE, f"{spec} {model_name}: max error {err} (printed: {printed})"


def tiny_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("spec, feature, lacking_cpu", [
    ("aarch64-linux+dotprod", "dotprod", "cortex-a72"), ("armv7-linux", "vfpv4", "cortex-a8"),
    ("riscv64-linux+v", "v", "rv64")])
def test_cross_artifact_checks_the_processor_at_load(spec, feature, lacking_cpu, work):
    """A cross artifact embeds the load-time check of its target's extensions: under qemu with a
    processor that lacks one, the C example stops naming it instead of dying of an illegal
    instruction; with one that has it, it runs."""
    from ember.toolchain.emulator import QEMU, runner_binary, target_machine

    target = resolve(spec)
    why = missing(target)
    if why:
        pytest.skip(why)
    art = ember.compile(tiny_model(), target=spec, cflags=("-O1",))
    path = art.save(work / artifact_name("tiny", target))
    qemu, libc, good_cpu = QEMU[target_machine(target)]
    exe = str(runner_binary(target))
    bad = subprocess.run([qemu, "-L", libc, "-cpu", lacking_cpu, exe, str(path), "--iters", "1"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and f"compiled for a processor with {feature}, which this one lacks" in bad.stderr, \
        bad.stderr
    good = subprocess.run([qemu, "-L", libc, "-cpu", good_cpu, exe, str(path), "--iters", "1"],
                          capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr


def quantized_conv(cin: int = 16, cout: int = 16, size: int = 8) -> onnx.ModelProto:
    """A uint8 x int8 QLinearConv (the layout that uses the 8-bit dot product of four where the
    target has one: ARM sdot with +dotprod, usdot with +i8mm), then a ReLU-free requantize.
    Weights are small, so that no pair of products leaves int16 (x86 without VNNI saturates)."""
    rng = np.random.default_rng(2)
    w = rng.integers(-20, 21, size=(cout, cin, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(v, dtype=d), n) for n, v, d in [
        ("xs", 0.02, np.float32), ("xz", 100, np.uint8), ("ws", 0.01, np.float32), ("wz", 0, np.int8),
        ("ys", 0.2, np.float32), ("yz", 120, np.uint8)]]
    inits += [numpy_helper.from_array(w, "w"),
              numpy_helper.from_array(rng.integers(-500, 500, size=cout).astype(np.int32), "bias")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"], ["y"],
                            pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, cin, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, cout, size, size])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("spec", ["aarch64-linux", "aarch64-linux+dotprod", "aarch64-linux+i8mm", "wasm32"])
def test_quantized_conv_uses_each_dot_product(spec, work):
    """The uint8 x int8 convolution through NEON's sdot (with the unsigned correction), usdot,
    and the generic C: the same integers as the reference."""
    target = resolve(spec)
    why = missing(target)
    if why:
        pytest.skip(why)
    model = quantized_conv()
    graph, expected = _reference(model)
    art = ember.compile(model, target=spec, cflags=("-O1",))
    (got,) = run_artifact(art, {v.name: pattern_array(v.type) for v in graph.inputs})
    diff = np.abs(got.astype(np.int32) - expected[0].astype(np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99, f"{spec}: {diff.max()} max, {(diff > 0).sum()} differ"


def small_mlp() -> onnx.ModelProto:
    """MatMul, Add, Relu, Softmax on [4, 8]: compiles in seconds for every target."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    n = helper.make_node
    graph = helper.make_graph([n("MatMul", ["x", "w"], ["m"]), n("Add", ["m", "b"], ["a"]), n("Relu", ["a"], ["r"]),
                               n("Softmax", ["r"], ["y"], axis=-1)], "small_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("spec", ["aarch64-linux", "armv7-linux", "riscv64-linux", "wasm32"])
def test_ember_run_compiles_for_the_target_and_runs_under_its_emulator(spec, work, capsys):
    """``ember run --target T MODEL`` compiles for T and runs the artifact here (qemu user mode,
    Node.js) on the arrays of an .npz file; ``ember run ARTIFACT`` runs a saved cross artifact."""
    from ember.cli import main

    target = resolve(spec)
    why = missing(target)
    if why:
        pytest.skip(why)
    model = small_mlp()
    onnx.save(model, work / "small_mlp.onnx")
    x = np.random.default_rng(4).standard_normal((4, 8)).astype(np.float32)
    np.savez(work / "mlp_in.npz", x=x)
    (want,) = run_graph(from_onnx(model), {"x": x})
    out = work / f"mlp_out_{spec}.npz"
    args = ["--inputs", str(work / "mlp_in.npz"), "--output", str(out)]
    assert main(["run", str(work / "small_mlp.onnx"), "--target", spec, "--opt-level", "1", "--iters", "2", *args]) == 0
    assert f"ran under {'Node.js' if spec == 'wasm32' else 'qemu-'}" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(out)["y"], want, rtol=1e-4, atol=1e-6)
    if spec == "wasm32":
        saved = work / "small_mlp.wasm"
        assert main(["compile", str(work / "small_mlp.onnx"), "--target", spec, "--opt-level", "1", "-o", str(saved)]) == 0
        out.unlink()
        assert main(["run", str(saved), *args]) == 0
        np.testing.assert_allclose(np.load(out)["y"], want, rtol=1e-4, atol=1e-6)
        with pytest.raises(ember.errors.InputError, match="input 'x' has shape"):
            ember.runtime.cross.CrossArtifact(saved, spec).run({"x": x[:2]})
        cut = work / "cut.wasm"
        cut.write_bytes(saved.read_bytes()[:-100])
        capsys.readouterr()
        assert main(["run", str(cut), *args]) == 1           # truncated: refused before it runs
        assert "E303" in capsys.readouterr().err

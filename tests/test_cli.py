"""The ``ember`` command line: info, compile + run, bench, and how errors are reported."""

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ember.cli import main


def tiny_cnn() -> onnx.ModelProto:
    """conv3x3 + relu, global average pool, flatten, gemm: 1x3x16x16 -> 1x4."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "conv_w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "conv_b"),
        numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32) * 0.3, "fc_w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "tiny_cnn.onnx"
    onnx.save(tiny_cnn(), str(path))
    return str(path)


def run_cli(*args, env=None):
    """Run ``ember`` in a fresh interpreter, as a user would."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "ember.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=600)


def test_info(model_path, capsys):
    assert main(["info", model_path]) == 0
    out = capsys.readouterr().out
    assert "float32[1, 3, 16, 16]" in out and "float32[1, 4]" in out
    assert "ONNX ops (5 nodes" in out and "260 weights" in out
    for op in ("Conv", "Relu", "GlobalAveragePool", "Gemm"):
        assert op in out
    assert "Ember graph" in out and "conv2d" in out
    assert "parameters" in out and "FLOPs" in out


def test_compile_and_run_match_onnxruntime(model_path, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    artifact = tmp_path / "tiny_cnn.ember"
    assert main(["compile", model_path, "-o", str(artifact)]) == 0
    captured = capsys.readouterr()
    assert artifact.exists()
    assert "arena" in captured.out and "compiled in" in captured.out

    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    out_npz = tmp_path / "out.npz"
    assert main(["run", str(artifact), "--inputs", str(tmp_path / "in.npz"),
                 "--output", str(out_npz), "--threads", "1"]) == 0
    assert "y  float32[1, 4]" in capsys.readouterr().out

    expected = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with np.load(out_npz) as got:
        assert list(got.files) == ["y"]
        np.testing.assert_allclose(got["y"], expected, rtol=1e-4, atol=1e-5)


def test_bench(model_path, capsys):
    assert main(["bench", model_path, "--runs", "3", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "ember" in out
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    assert "onnxruntime" in out and "ratio" in out


def test_bench_profile(model_path, capsys):
    """``ember bench --profile`` ends with each kernel's time, share and GFLOP/s, sorted, the
    kernels' own operations over their own time."""
    assert main(["bench", model_path, "--runs", "3", "--warmup", "1", "--threads", "1", "--profile"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("per kernel"):].splitlines()[1:]
    assert table[0].split()[:5] == ["kernel", "ms/run", "share", "GFLOP/s", "fuses"] and table[-1].startswith("total")
    rows = table[1:-1]
    times = [float(r.split()[1]) for r in rows]
    assert rows and times == sorted(times, reverse=True)
    # a kernel that computes (a convolution or a matmul) has a rate; the total is the sum of
    # the kernels' operations over the sum of their times
    rates = [r.split()[3] for r in rows]
    assert any(x != "-" and float(x) > 0 for x in rates)
    assert float(table[-1].split()[3]) > 0


def dynamic_mlp() -> onnx.ModelProto:
    """x [batch, seq, 4] -> matmul -> relu -> softmax: a model with symbolic dimensions."""
    w = numpy_helper.from_array(np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "dyn_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 6])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_model_info_compile_run_bench(tmp_path, capsys):
    path = tmp_path / "dyn.onnx"
    onnx.save(dynamic_mlp(), str(path))
    assert main(["info", str(path), "--bound", "seq=32"]) == 0
    out = capsys.readouterr().out
    assert "float32[batch, seq, 4]" in out and "symbols     batch planned for 64 (default), seq planned for 32" in out
    artifact = tmp_path / "dyn.ember"
    assert main(["compile", str(path), "-o", str(artifact), "--bound", "batch=2", "--bound", "seq=32"]) == 0
    assert "symbols    batch planned for 2, seq planned for 32" in capsys.readouterr().out
    for b, s in ((1, 3), (2, 32), (3, 40)):      # past the planned sizes too: the arena grows
        np.savez(tmp_path / "in.npz", x=np.ones((b, s, 4), np.float32))
        assert main(["run", str(artifact), "--inputs", str(tmp_path / "in.npz")]) == 0
        assert f"y  float32[{b}, {s}, 6]" in capsys.readouterr().out
    assert main(["bench", str(path), "--runs", "2", "--warmup", "0", "--threads", "1", "--size", "seq=5",
                 "--bound", "seq=8"]) == 0
    assert "sizes     batch=1, seq=5 (batch planned for 64, seq planned for 8)" in capsys.readouterr().out


def test_missing_model_is_a_clean_error(tmp_path):
    for cmd in (["info"], ["compile", "-o", str(tmp_path / "out.ember")], ["bench"]):
        r = run_cli(*cmd, str(tmp_path / "missing.onnx"))
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("ember: error:") and "missing.onnx" in r.stderr
        assert "Traceback" not in r.stderr


def test_corrupt_model_and_missing_artifact(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00 this is not a protobuf \xff" * 10)
    r = run_cli("info", str(bad))
    assert r.returncode == 1 and "ember: error:" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", str(tmp_path / "nothing.ember"), "--inputs", str(tmp_path / "in.npz"))
    assert r.returncode == 1 and "ember: error:" in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path):
    r = run_cli("info", str(tmp_path / "missing.onnx"), env={"EMBER_DEBUG": "1"})
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ember: error:" in r.stderr


def test_unsupported_op_is_reported(tmp_path):
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")
    graph = helper.make_graph([node], "odd",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    r = run_cli("info", str(path))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ember: error:" in r.stderr and "Frobnicate" in r.stderr and "Traceback" not in r.stderr


def test_tuning_option_and_its_old_name_records(tmp_path, capsys):
    from ember.cli import _parser

    for cmd in (["compile", "m.onnx", "-o", "m.ember"], ["run", "m.onnx"], ["bench", "m.onnx"], ["tune", "m.onnx"]):
        for flag in ("--tuning", "--records"):
            assert _parser().parse_args(cmd + [flag, "t.sqlite"]).tuning == "t.sqlite"
    assert main(["tune"]) == 1
    assert "needs a model file (or --show KERNEL)" in capsys.readouterr().err
    missing = tmp_path / "none.sqlite"
    assert main(["tune", "--show", "conv_0", "--tuning", str(missing)]) == 1
    assert "none.sqlite" in capsys.readouterr().err
    noise = tmp_path / "noise.sqlite"
    noise.write_bytes(b"\x00\x01not records" * 64)
    assert main(["tune", "--show", "conv_0", "--tuning", str(noise)]) == 1
    assert "noise.sqlite" in capsys.readouterr().err

"""The benchmark's own models and command line: benchmarks/models.py exports tiny ViT, GPT-2, T5
encoder and MobileViT configurations (the same code as the full-size ones) that Ember compiles and that match
onnxruntime, and benchmarks/cpu.py answers --help."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


#: ops each tiny model's graph must have (T5 normalizes by the root mean square, written out;
#: MobileViT mixes convolutions with transformer blocks)
TINY_OPS = {"vit": {"MatMul", "Softmax", "LayerNormalization"},
            "gpt2": {"MatMul", "Softmax", "LayerNormalization"},
            "t5_encoder": {"MatMul", "Softmax", "ReduceMean", "Sqrt", "Log", "Where"},
            "mobilevit": {"Conv", "MatMul", "Softmax", "LayerNormalization", "Sigmoid"}}


@pytest.mark.parametrize("name", sorted(TINY_OPS))
def test_tiny_model_compiles_and_matches_onnxruntime(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    if name in ("t5_encoder", "mobilevit"):
        pytest.importorskip("transformers")
    models = _load("ember_bench_models", BENCH / "models.py")
    entry = models.build(name, str(tmp_path), batch=2, tiny=True)
    assert entry["batch"] == 2 and entry["config"] == models.config_of(name, tiny=True)
    onnx_path = tmp_path / f"{name}.onnx"
    inputs = dict(np.load(tmp_path / f"{name}.inputs.npz"))
    want = dict(np.load(tmp_path / f"{name}.outputs.npz"))
    assert set(entry["op_types"]) >= TINY_OPS[name]

    got = ember.compile(onnx_path).run(inputs)
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape
        assert rel_error(got[key], want[key]) <= 1e-3, key


def test_tiny_models_are_seeded():
    torch = pytest.importorskip("torch")
    models = _load("ember_bench_models", BENCH / "models.py")
    a, ia, _, _ = models.make("gpt2", batch=1, tiny=True)
    b, ib, _, _ = models.make("gpt2", batch=1, tiny=True)
    assert torch.equal(ia["input_ids"], ib["input_ids"])
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_cpu_benchmark_help():
    r = subprocess.run([sys.executable, str(BENCH / "cpu.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--models" in r.stdout and "vit" in r.stdout and "gpt2" in r.stdout


def test_tflite_benchmark_help():
    r = subprocess.run([sys.executable, str(BENCH / "tflite.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--forms" in r.stdout and "efficientnetb0" in r.stdout and "resnet50" in r.stdout
    assert "float16" in r.stdout and "transformer" in r.stdout


def test_torch_frontend_benchmark_help():
    r = subprocess.run([sys.executable, str(BENCH / "torch_frontend.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--models" in r.stdout and "gpt2_kv_cache" in r.stdout and "llama" in r.stdout


def test_torch_frontend_benchmark_rows(capsys):
    """A tiny Llama with grouped-query attention and a tiny GPT-2 decoding step through the
    PyTorch frontend: a row per engine, Ember's output close to torch's."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    bench = _load("ember_bench_torch_frontend", BENCH / "torch_frontend.py")
    assert bench.main(["--models", "llama", "gpt2_kv_cache", "--tiny", "--engines", "torch", "ember",
                       "--runs", "1", "--warmup", "1", "--threads", "1"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [(m, e) for m in ("llama", "gpt2_kv_cache")
                                                            for e in ("torch", "ember")]
    for r in rows[1::2]:
        assert float(r[2]) > 0 and float(r[6].split()[-1]) <= 1e-4, r


def test_dynamic_benchmark_help_and_feeds():
    r = subprocess.run([sys.executable, str(BENCH / "dynamic.py"), "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "--sizes" in r.stdout and "static" in r.stdout
    dyn = _load("ember_bench_dynamic", BENCH / "dynamic.py")
    assert set(dyn.SIZES) <= set(_load("ember_bench_models", BENCH / "models.py").MODELS)
    feeds = dyn.feeds_for("bert_base", (4, 384))
    assert feeds["input_ids"].shape == (4, 384) and (feeds["attention_mask"][:, -96:] == 0).all()
    assert dyn.feeds_for("resnet50", (2, 3, 320, 256))["input"].shape == (2, 3, 320, 256)


def test_cpu_benchmark_knows_its_models():
    cpu = _load("ember_bench_cpu", BENCH / "cpu.py")
    assert {"resnet50", "mobilenet_v2", "bert_base", "vit", "gpt2", "t5_encoder", "mobilevit"} <= set(cpu.NAMES)
    assert set(cpu.NAMES) <= set(cpu.model_set().MODELS)


def test_engines_are_timed_in_rounds_of_blocks():
    """Warm-up runs of every engine, then rounds of blocks: before each block one untimed run
    (after a pause, so the engine timed before has gone idle), then the block's timed runs."""
    cpu = _load("ember_bench_cpu", BENCH / "cpu.py")
    calls = []
    fns = {name: (lambda feeds, name=name: calls.append(name)) for name in ("a", "b")}
    times = cpu.time_runs(fns, {}, warmup=2, runs=5, block=3, settle=0)
    # the order turns round every round: a b, then b a
    assert calls == ["a"] * 2 + ["b"] * 2 + ["a"] * 4 + ["b"] * 4 + ["b"] * 3 + ["a"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 5, "b": 5}
    calls.clear()
    times = cpu.time_runs(fns, {}, warmup=1, runs=3, block=0, settle=0)
    assert calls == ["a", "b"] + ["a"] * 4 + ["b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_fma_peak_is_measured():
    """The benchmark's arithmetic peak comes from a C kernel of independent vector FMAs built
    here, timed on the given number of threads."""
    cpu = _load("ember_bench_cpu", BENCH / "cpu.py")
    one = cpu.fma_peak(1)
    assert np.isfinite(one) and one > 0.1


# ---- benchmarks/gpu.py: cannot time anything here without a GPU; its arguments, its refusal
# without a CUDA device and its OpenCL path on tiny models are tested -----------------------------

def _gpu_bench():
    return _load("ember_bench_gpu", BENCH / "gpu.py")


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--device", "opencl", "--arch", "sm_80"],
                                  ["--arch", "80"], ["--models", "vgg"], ["--dtypes", "bfloat16"],
                                  ["--runs", "x"]])
def test_gpu_benchmark_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _gpu_bench().parse(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def test_gpu_benchmark_defaults():
    args = _gpu_bench().parse([])
    assert (args.models, args.batch, args.dtypes, args.device) == (["resnet50", "bert_base"], [1, 32],
                                                                   ["float32", "float16"], "cuda")
    assert args.engines == ["ember", "torch", "torch.compile", "onnxruntime"]


def test_gpu_benchmark_refuses_without_cuda(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert _gpu_bench().main(["--models", "resnet50", "--batch", "1"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda cannot run here" in err and "no CUDA device" in err


def test_gpu_benchmark_on_opencl(tmp_path, capsys):
    """The OpenCL path on a tiny ResNet: Ember's rows match torch (fp16 within half precision),
    the engines without OpenCL say so instead of a number."""
    pytest.importorskip("torch")
    from ember.runtime import opencl

    if not opencl.available():
        pytest.skip("no OpenCL device (or tensorflow imported in this process: runtime.opencl.llvm_conflict)")
    out = tmp_path / "rows.json"
    assert _gpu_bench().main(["--device", "opencl", "--tiny", "--models", "resnet50", "--batch", "1",
                              "--runs", "1", "--warmup", "1", "--json", str(out)]) == 0
    rows = {(r["dtype"], r["engine"]): r for r in json.loads(out.read_text())["rows"]}
    assert rows[("float32", "ember")]["rel_error"] <= 1e-4
    assert 0 < rows[("float16", "ember")]["rel_error"] <= 1e-2
    assert rows[("float32", "ember")]["ms"] > 0
    for dtype in ("float32", "float16"):
        for engine in ("torch", "torch.compile", "onnxruntime"):
            assert "skipped" in rows[(dtype, engine)] and "ms" not in rows[(dtype, engine)]

"""Whole models: ResNet-50, MobileNetV2 and BERT-base compile and match onnxruntime's outputs
(stored next to each model by benchmarks/models.py: ``make models``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import ember

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))
NAMES = ["resnet50", "mobilenet_v2", "bert_base"]


def _paths(name):
    onnx_path = MODELS / f"{name}.onnx"
    if not onnx_path.exists():
        pytest.skip(f"{onnx_path} not built (make models)")
    return onnx_path, MODELS / f"{name}.inputs.npz", MODELS / f"{name}.outputs.npz"


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_model_matches_onnxruntime(name, tmp_path):
    onnx_path, inputs_path, outputs_path = _paths(name)
    module = ember.compile(onnx_path)
    inputs = dict(np.load(inputs_path))
    want = dict(np.load(outputs_path))
    got = module.run(inputs)
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape
        assert rel_error(got[key], want[key]) <= 1e-3, key
    # the artifact round-trips through a file and still runs on 1 and 2 threads
    saved = tmp_path / f"{name}.so"
    module.save(saved)
    again = ember.load(saved)
    for threads in (1, 2):
        again.num_threads = threads
        out = again.run(inputs)
        for key in want:
            assert rel_error(out[key], want[key]) <= 1e-3


@pytest.mark.slow
def test_second_compile_is_a_cache_hit():
    onnx_path, _, _ = _paths("mobilenet_v2")
    ember.compile(onnx_path)
    steps: list[str] = []
    ember.compile(onnx_path, progress=steps.append)
    assert any("found in cache" in s for s in steps), steps

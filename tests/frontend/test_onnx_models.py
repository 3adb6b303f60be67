"""Whole models through the frontend and the reference interpreter, against onnxruntime's stored
outputs (the test models of ``benchmarks/models.py``: ``make models``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ember.frontend import from_onnx
from ember.graph import run_graph
from ember.graph.verify import verify

ROOT = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("EMBER_MODELS_DIR", ROOT / "build" / "models"))


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest magnitude of the expected output."""
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "bert_base"])
def test_model_reference_matches_onnxruntime(name):
    path = MODELS / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not built (make models)")
    graph = from_onnx(path)
    verify(graph)
    inputs = dict(np.load(MODELS / f"{name}.inputs.npz"))
    want = dict(np.load(MODELS / f"{name}.outputs.npz"))
    assert [v.name for v in graph.inputs] == list(inputs)
    assert [v.name for v in graph.outputs] == list(want)
    got = run_graph(graph, inputs)
    for v, arr in zip(graph.outputs, got):
        assert arr.shape == want[v.name].shape and arr.dtype == want[v.name].dtype
        assert rel_error(arr, want[v.name]) <= 1e-3, v.name

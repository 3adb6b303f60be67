"""The acceptance case of dynamic shapes: BERT-base exported with symbolic batch and sequence
length, compiled once, runs at several sizes and matches onnxruntime on the same model.

The dynamic model is built by benchmarks/models.py (--dynamic) into build/models_dyn
(git-ignored) when absent; that needs torch and transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("EMBER_DYN_MODELS_DIR", ROOT / "build" / "models_dyn"))
MAKE_MODELS = ROOT / "benchmarks" / "models.py"
SIZES = [(1, 8), (1, 128), (1, 384), (4, 128), (2, 57)]


def dynamic_bert() -> Path:
    path = MODELS / "bert_base_dyn.onnx"
    if path.exists():
        return path
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    MODELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(MAKE_MODELS), "--out", str(MODELS), "--only", "bert_base", "--dynamic"],
                   check=True, capture_output=True)
    return path


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.slow
def test_bert_dynamic_compiled_once_runs_every_size():
    ort = pytest.importorskip("onnxruntime")
    path = dynamic_bert()
    module = ember.compile(path, bounds={"batch": 4})
    assert module.symbols == {"batch": 4, "seq": 512}
    assert module.limits == {"seq": 512}                  # seq limited by the 512 positions; batch planned for 4
    assert [str(t) for t in module.input_types] == ["int64[batch, seq]"] * 2
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, seq in SIZES + [(6, 8)]:                  # past the planned batch: the arena grows
        ids = rng.integers(0, 30522, (batch, seq)).astype(np.int64)
        mask = np.ones((batch, seq), np.int64)
        mask[:, seq - seq // 4:] = 0          # a padded tail, so the mask matters
        feeds = {"input_ids": ids, "attention_mask": mask}
        want = dict(zip(("last_hidden_state", "pooler_output"), sess.run(None, feeds)))
        got = module.run(feeds)
        for key in want:
            assert got[key].shape == want[key].shape, (batch, seq, key)
            assert rel_error(got[key], want[key]) <= 1e-4, (batch, seq, key)
    with pytest.raises(ember.errors.InputError, match="seq = 513, above its limit 512"):
        module.run({"input_ids": np.zeros((1, 513), np.int64), "attention_mask": np.ones((1, 513), np.int64)})

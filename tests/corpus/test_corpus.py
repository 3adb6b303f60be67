"""The corpus of real models (``catalog.py``): each compiled once with ``ember.compile(path)`` and
no ``shapes=``, run at three or more input sizes from that one artifact, and compared with
onnxruntime.  ``make corpus`` (a dependency of ``make test``) fetches and exports them into
$EMBER_CORPUS_DIR (default build/corpus); a model that could not be made is skipped with the
build's reason.  A model Ember stops at today is a strict xfail naming the error: when it is
fixed the test passes and the xfail must be removed from ``catalog.FAILS``."""

from __future__ import annotations

import json
import os

import pytest

from .catalog import SLOW_COMPILES, default_out, models
from .check import check

CORPUS = default_out()


def _params():
    for m in models():
        marks = [pytest.mark.slow]
        if m.fails:
            marks.append(pytest.mark.xfail(strict=True, reason=m.fails))
        if m.name in SLOW_COMPILES and not os.environ.get("EMBER_TEST_LARGE"):
            marks.append(pytest.mark.skip(reason=f"{SLOW_COMPILES[m.name]}; EMBER_TEST_LARGE=1 runs it"))
        yield pytest.param(m, id=m.name, marks=marks)


def _skip_reason(model) -> str:
    try:
        why = json.loads((CORPUS / "missing.json").read_text()).get(model.name)
    except (OSError, ValueError):
        why = None
    return f"{CORPUS / model.file} is not there: {why or 'the corpus is not built (make corpus)'}"


@pytest.mark.parametrize("model", list(_params()))
def test_model_matches_onnxruntime_at_every_size(model):
    if not (CORPUS / model.file).exists():
        pytest.skip(_skip_reason(model))
    assert len(model.sizes) >= 3
    result = check(model, CORPUS)
    assert result.compiled, result.error
    assert result.ok, result.error

"""The tuner's cost model: predicts how much faster than its defaults a kernel runs with a
candidate's knobs, trained on the measurements as they come.

It is a random forest of scikit-learn (``pip install ember[tune]``); without scikit-learn,
:func:`load` returns None and the tuner searches at random.  Features: the kernel's lead op,
its output's size, its default knob values and the candidate's; the target: the log of the
candidate's time over the default's, so kernels of every size teach the same model.
"""

from __future__ import annotations

import math
import zlib

from ..schedules.knobs import KNOBS

#: measurements before the model is trusted to rank candidates
MIN_SAMPLES = 8


def _value(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        values = KNOBS[name][2].candidates
        return float(values.index(v)) if v in values else -1.0
    return math.log2(v + 1.0)


def features(workload: dict, default: dict, knobs: dict) -> list[float]:
    row = [float(zlib.crc32(workload["op"].encode()) % 1009), math.log2(workload["elements"] + 1.0)]
    for name in sorted(KNOBS):
        row.append(_value(name, default[name]) if name in default else -1.0)
        row.append(_value(name, knobs[name]) if name in knobs else -1.0)
    return row


class CostModel:
    def __init__(self, seed: int = 0):
        from sklearn.ensemble import RandomForestRegressor

        self._new = lambda: RandomForestRegressor(n_estimators=40, min_samples_leaf=2, random_state=seed, n_jobs=1)
        self.rows: list[list[float]] = []
        self.ys: list[float] = []
        self.forest = None

    def add(self, workload: dict, default: dict, knobs: dict, ratio: float) -> None:
        """One measurement: the candidate ``knobs`` took ``ratio`` times its defaults' time."""
        if ratio > 0:
            self.rows.append(features(workload, default, knobs))
            self.ys.append(math.log(ratio))

    def fit(self) -> None:
        if len(self.rows) >= MIN_SAMPLES:
            self.forest = self._new().fit(self.rows, self.ys)

    @property
    def ready(self) -> bool:
        return self.forest is not None

    def predict(self, workload: dict, default: dict, candidates: list[dict]) -> list[float]:
        """The predicted log time ratio (candidate over default) of each candidate."""
        return list(self.forest.predict([features(workload, default, c) for c in candidates]))


def load(seed: int = 0) -> CostModel | None:
    """A new cost model, or None when scikit-learn is not installed."""
    try:
        return CostModel(seed)
    except ImportError:
        return None

"""Timing helpers shared by ``ember bench``, ``examples/`` and ``benchmarks/``.

* :func:`time_callable` runs a function a number of times and summarizes the latencies;
* :func:`time_runs` times several engines taking turns in blocks, so that a busy stretch of the
  machine slows them alike;
* :func:`onnxruntime_session` opens an onnxruntime session configured like Ember's run (the
  given number of intra-op threads, one inter-op thread, every graph optimization), so the two
  are compared on equal terms;
* :func:`random_inputs` makes seeded inputs of the right shapes and dtypes for a signature.

onnxruntime is optional: :func:`onnxruntime_available` says whether it can be imported.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .graph.types import is_float, np_dtype


@dataclass(frozen=True)
class TimingStats:
    """Latencies of repeated runs, in milliseconds."""

    samples: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def p10(self) -> float:
        return float(np.percentile(self.samples, 10))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples, 90))

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))

    def __str__(self) -> str:
        return (f"median {self.median:.3f} ms  p10 {self.p10:.3f} ms  p90 {self.p90:.3f} ms  "
                f"({self.runs} runs)")


def time_callable(fn: Callable[[], Any], warmup: int = 5, runs: int = 30) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed one by one."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return TimingStats(tuple(samples))


def time_runs(fns: dict, feeds, warmup: int, runs: int, block: int = 5,
              settle: float = 0.05) -> dict[str, list[float]]:
    """Latencies in seconds of each engine's ``fn`` (called with ``feeds``): every engine's warm-up
    runs, then rounds in which each engine in turn does ``block`` timed runs (``block=0``: all
    its runs in one go).

    Rounds spread every engine's runs over the whole measurement, so a stretch in which the
    machine is busy with something else slows all engines alike instead of the one that happened
    to be timed then; the order of the engines turns round every round (A B C, C B A, ...), so
    that no engine always follows the same one.  Before each block the process sleeps ``settle``
    seconds and the engine does one untimed run: the engine timed before must not share the cores
    with it (onnxruntime's thread pool keeps spinning for work after a run), and the engine's own
    pool is awake again when its timed runs start."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(feeds)
    out: dict[str, list[float]] = {name: [] for name in fns}
    size = block if block > 0 else runs
    order = list(fns.items())
    while any(len(ts) < runs for ts in out.values()):
        for name, fn in order:
            n = min(size, runs - len(out[name]))
            if n <= 0:
                continue
            if len(fns) > 1:
                time.sleep(settle)
                fn(feeds)
            timed = getattr(fn, "timed", None)      # an engine that times its runs itself
            for _ in range(n):
                if timed is not None:
                    out[name].append(timed(feeds))
                    continue
                t0 = time.perf_counter()
                fn(feeds)
                out[name].append(time.perf_counter() - t0)
        order.reverse()
    return out


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def onnxruntime_session(model: "str | os.PathLike | Any", threads: int):
    """An onnxruntime CPU session for ``model`` (a path or an ``onnx.ModelProto``) that uses
    ``threads`` intra-op threads, one inter-op thread and all graph optimizations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _size_of(d: Any, dims: Mapping[str, int]) -> int:
    """A symbolic dimension's size with its symbols from ``dims`` (1 when not given)."""
    from .symbolic import as_dim

    d = as_dim(d)
    if isinstance(d, int):
        return d
    return d.evaluate({s: int(dims.get(s, 1)) for s in d.symbols()})


def random_inputs(signature: Any, seed: int = 0, dims: Mapping[str, int] | None = None,
                  int_high: int = 2) -> dict[str, np.ndarray]:
    """Seeded random inputs for ``signature``: a Module (``input_names`` and ``input_types``),
    or a mapping from names to types with ``.shape`` and ``.dtype`` (or ``(shape, dtype)``).

    Floats are standard normal; integers are drawn from ``[0, int_high)`` so they are valid as
    indices, token ids, masks and segment ids alike; booleans are fair coin flips; strings are
    such integers written out (``"0"``, ``"1"``).  Symbolic
    dimensions take their size from ``dims`` (1 when not given)."""
    rng = np.random.default_rng(seed)
    dims = dims or {}
    out = {}
    for name, (shape, dtype) in _signature(signature).items():
        shape = tuple(d if isinstance(d, int) else _size_of(d, dims) for d in shape)
        dt = np_dtype(dtype)
        if is_float(dtype):
            arr = rng.standard_normal(shape).astype(dt)
        elif dt.kind in "iu":
            arr = rng.integers(0, int_high, size=shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.random(shape) < 0.5
        elif dtype == "string":
            arr = np.empty(shape, dtype=object)
            arr.reshape(-1)[:] = [str(k) for k in rng.integers(0, int_high, size=arr.size)]
        else:
            raise TypeError(f"cannot make random inputs of dtype {dtype} for input '{name}'")
        out[name] = arr
    return out


def _signature(sig: Any) -> dict[str, tuple[Sequence, str]]:
    if hasattr(sig, "input_names") and hasattr(sig, "input_types"):
        return {n: (t.shape, str(t.dtype)) for n, t in zip(sig.input_names, sig.input_types)}
    out = {}
    for name, t in dict(sig).items():
        shape, dtype = (t.shape, t.dtype) if hasattr(t, "shape") else t
        out[name] = (tuple(shape), str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype)
    return out

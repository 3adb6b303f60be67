"""One corpus model against onnxruntime: compiled once by Ember with no ``shapes=``, then run at
each of its sizes from that one artifact, every output compared with onnxruntime's on the same
inputs; optionally both timed (warm, same process, the same number of threads, onnxruntime's
spinning threads off).  Used by the test and by ``benchmarks/corpus.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .catalog import Model, make_inputs


@dataclass
class SizeResult:
    size: dict
    error: float | None = None              # max over outputs of the relative error
    problem: str | None = None              # why this size does not match (None: it does)
    ember_ms: float | None = None
    ort_ms: float | None = None


@dataclass
class Result:
    model: Model
    compiled: bool = False
    error: str | None = None                # the compile error, or the first size's problem
    compile_s: float | None = None
    sizes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.compiled and all(s.problem is None for s in self.sizes)


def relative_error(got: np.ndarray, want: np.ndarray, scale: float = 0.0) -> float:
    """max |got - want| relative to the largest |want|, or to ``scale`` where that is larger
    (the range of an output that is a probability: at inputs that leave it all near 0, the
    absolute accuracy of onnxruntime's reduced-precision Sigmoid is no relative one)."""
    got = np.asarray(got)
    want = np.asarray(want)
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(got, want) else float("inf")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if np.isnan(diff).any():
        return 0.0 if np.array_equal(np.isnan(got), np.isnan(want)) and \
            np.nanmax(diff, initial=0.0) == 0 else float("inf")
    return float(diff.max(initial=0.0) / max(float(np.abs(want).max(initial=0.0)), scale, 1e-30))


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3         # its warnings about declared output shapes it ignores
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def input_types(path: Path) -> dict:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    return {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
            for v in proto.graph.input if v.name not in inits}


def check(model: Model, folder: Path, threads: int = 2, timing: bool = False, runs: int = 20,
          budget_s: float = 2.0) -> Result:
    """Compile MODEL (a file under FOLDER) once and compare it with onnxruntime at every size;
    with TIMING, also the median latency of both engines (about BUDGET_S seconds of runs each)."""
    import ember
    from ember.benchmark import time_callable

    path = Path(folder) / model.file
    result = Result(model)
    sess = ort_session(path, threads)
    names = [o.name for o in sess.get_outputs()]
    types = input_types(path)
    t0 = time.perf_counter()
    try:
        module = ember.compile(path)
    except Exception as e:               # the report names the error; the test fails or xfails
        result.error = f"{type(e).__name__}: {e}"
        return result
    result.compiled = True
    result.compile_s = time.perf_counter() - t0
    module.num_threads = threads
    for i, size in enumerate(model.sizes):
        row = SizeResult(size)
        result.sizes.append(row)
        feeds = make_inputs(model, size, types, seed=i)
        want = dict(zip(names, sess.run(names, feeds)))
        try:
            got = module.run(feeds)
        except Exception as e:
            row.problem = f"{type(e).__name__}: {e}"
        else:
            if sorted(got) != sorted(want):
                row.problem = f"outputs {sorted(got)}, onnxruntime's {sorted(want)}"
            else:
                bad = [k for k in want if np.shape(got[k]) != np.shape(want[k])]
                if bad:
                    row.problem = "; ".join(f"output {k} has shape {np.shape(got[k])}, onnxruntime's "
                                            f"{np.shape(want[k])}" for k in bad)
                else:
                    errs = {k: relative_error(got[k], want[k], model.scale) for k in want}
                    row.error = max(errs.values())
                    worst = max(errs, key=errs.get)
                    if not row.error <= model.tol:
                        row.problem = (f"output {worst} differs from onnxruntime's by {row.error:.2e} "
                                       f"(relative to its largest value{f' or {model.scale:g}' if model.scale else ''}; "
                                       f"tolerance {model.tol:.0e})")
        if timing and row.problem is None:
            # up to RUNS timed runs each, fewer (at least 3) where one run takes long
            once = time_callable(lambda: module.run(feeds), warmup=1, runs=1).median
            n = max(3, min(runs, int(budget_s * 1e3 / max(once, 1e-3))))
            row.ember_ms = time_callable(lambda: module.run(feeds), warmup=2, runs=n).median
            row.ort_ms = time_callable(lambda: sess.run(names, feeds), warmup=3, runs=n).median
        if row.problem and result.error is None:
            result.error = f"at {_fmt(size)}: {row.problem}"
    return result


def _fmt(size: dict) -> str:
    return ", ".join(f"{k}{list(v)}" for k, v in size.items())

"""Differential testing of compiled graphs against the reference interpreter.

A :class:`Batch` collects *cases*: each case builds a small sub-graph (its own inputs, one or
more ops, one or more outputs) through a :class:`CaseBuilder`.  ``Batch.check()`` puts every
case into one graph, compiles it once (cheap C flags), runs it on seeded random inputs and
compares each output with :func:`ember.graph.run_graph`.  When the combined graph fails to
compile, every case is compiled alone so that the report names each failing case.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import ember
from ember.graph import GraphBuilder, TensorType, run_graph
from ember.graph.types import is_float, is_narrow, np_dtype

CFLAGS = ("-O1",)

#: default tolerances per float dtype: (rtol, atol); bfloat16: the compiled code keeps float32
#: inside a kernel and rounds when it stores, the reference rounds after every op
TOL = {"float32": (1e-5, 1e-6), "float64": (1e-12, 1e-13), "float16": (2e-3, 1e-3), "bfloat16": (2 ** -6, 1e-6)}


def random_array(rng: np.random.Generator, shape, dtype: str, low=None, high=None) -> np.ndarray:
    """Random data of ``dtype``: normal floats (uniform in [low, high) when given), small ints,
    booleans."""
    shape = tuple(shape)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if is_float(dtype):
        if low is not None:
            a = rng.uniform(low, high, shape)
        else:
            a = rng.standard_normal(shape)
        return np.asarray(a).astype(np_dtype(dtype))
    lo = -50 if low is None else low
    hi = 50 if high is None else high
    if dtype.startswith("uint"):
        lo = max(lo, 0)
    return rng.integers(lo, hi, shape).astype(dtype)


@dataclass
class _Out:
    label: str
    name: str
    rtol: float | None
    atol: float | None


class CaseBuilder:
    """What a case function sees: make inputs (with data), add ops, mark outputs."""

    def __init__(self, batch: "Batch", b: GraphBuilder, label: str, feeds: dict, outs: list):
        self.batch = batch
        self.b = b
        self.label = label
        self.rng = np.random.default_rng(zlib.crc32(f"{batch.name}/{label}".encode()) + batch.seed)
        self._feeds = feeds
        self._outs = outs
        self._n = 0

    def input(self, shape, dtype: str = "float32", data=None, low=None, high=None):
        """A graph input of ``shape``/``dtype`` fed with ``data`` (random when None)."""
        if data is None:
            data = random_array(self.rng, shape, dtype, low, high)
        data = np.asarray(data, dtype=np_dtype(dtype)).reshape(shape)
        v = self.b.input(f"in_{len(self._feeds)}", TensorType(tuple(shape), dtype))
        self._feeds[v.name] = data
        return v

    def const(self, array, dtype: str | None = None):
        return self.b.const(np.asarray(array), dtype=dtype)

    def op(self, op: str, inputs, **attrs):
        return self.b.op(op, inputs, **attrs)

    def out(self, value, rtol: float | None = None, atol: float | None = None, tag: str = ""):
        label = self.label + (f" [{tag}]" if tag else (f" [#{self._n}]" if self._n else ""))
        self._n += 1
        self._outs.append(_Out(label, value.name, rtol, atol))
        return value


@dataclass
class _Case:
    label: str
    fn: Callable[[CaseBuilder], object]
    rtol: float | None
    atol: float | None


@dataclass
class Batch:
    """Cases compiled together as one model."""

    name: str
    seed: int = 0
    cases: list = field(default_factory=list)
    opt_level: int = 3
    #: the target compiled for (None: this machine)
    target: object = None

    def case(self, label: str, fn: Callable[[CaseBuilder], object], rtol: float | None = None,
             atol: float | None = None) -> None:
        """Add a case.  ``fn(cb)`` builds it; a Value (or list of Values) it returns is an output."""
        self.cases.append(_Case(label, fn, rtol, atol))

    # ---- building and checking ------------------------------------------------------------

    def _build(self, cases):
        b = GraphBuilder(self.name.replace("-", "_"))
        feeds: dict = {}
        outs: list[_Out] = []
        for c in cases:
            cb = CaseBuilder(self, b, c.label, feeds, outs)
            n0 = len(outs)
            ret = c.fn(cb)
            if ret is not None:
                for v in (ret if isinstance(ret, (list, tuple)) else [ret]):
                    cb.out(v)
            for o in outs[n0:]:
                o.rtol = o.rtol if o.rtol is not None else c.rtol
                o.atol = o.atol if o.atol is not None else c.atol
        graph = b.finish([_value(b, o.name) for o in outs])
        return graph, feeds, outs

    def check(self) -> None:
        assert self.cases, f"batch {self.name} has no cases"
        graph, feeds, outs = self._build(self.cases)
        try:
            mod = ember.compile(graph, target=self.target or "cpu", cflags=CFLAGS, opt_level=self.opt_level)
        except Exception as combined:
            failures = []
            for c in self.cases:
                g1, f1, o1 = self._build([c])
                try:
                    m1 = ember.compile(g1, target=self.target or "cpu", cflags=CFLAGS, opt_level=self.opt_level)
                except Exception as e:  # noqa: BLE001 - we report them all
                    failures.append(f"{c.label}: {type(e).__name__}: {e}")
                    continue
                failures += compare(g1, m1, f1, o1, raise_=False)
            if not failures:
                raise combined
            raise AssertionError(f"{len(failures)} case(s) of {self.name} failed:\n" + "\n".join(failures))
        problems = compare(graph, mod, feeds, outs, raise_=False)
        if problems:
            raise AssertionError(f"{len(problems)} output(s) of {self.name} differ from the reference:\n"
                                 + "\n".join(problems))


def _value(b: GraphBuilder, name: str):
    for n in b.nodes:
        for v in n.outputs:
            if v.name == name:
                return v
    for v in b.inputs:
        if v.name == name:
            return v
    raise KeyError(name)


def compare(graph, mod, feeds, outs, raise_=True) -> list[str]:
    """Run ``mod`` and ``run_graph`` on ``feeds``; list every output that differs."""
    ref = run_graph(graph, feeds)
    got = list(mod.run(feeds).values())
    problems = []
    for o, r, g in zip(outs, ref, got):
        msg = diff(r, g, o.rtol, o.atol)
        if msg:
            problems.append(f"{o.label}: {msg}")
    if problems and raise_:
        raise AssertionError("\n".join(problems))
    return problems


def diff(ref: np.ndarray, got: np.ndarray, rtol=None, atol=None) -> str:
    """'' when ``got`` matches ``ref``; else a short description of the difference."""
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return f"shape {got.shape} != reference {ref.shape}"
    if got.dtype != ref.dtype:
        return f"dtype {got.dtype} != reference {ref.dtype}"
    if is_narrow(str(ref.dtype)):
        # exact, NaN codes included: compare the bytes
        bad = np.flatnonzero(got.view(np.uint8).reshape(-1) != ref.view(np.uint8).reshape(-1))
        if not bad.size:
            return ""
        k = int(bad[0])
        return (f"{len(bad)}/{ref.size} elements differ; first at flat index {k}: got code "
                f"{int(got.view(np.uint8).reshape(-1)[k]):#04x}, expected {int(ref.view(np.uint8).reshape(-1)[k]):#04x}")
    if str(ref.dtype) == "bfloat16":
        r0, a0 = TOL["bfloat16"]
        return diff(ref.astype(np.float32), got.astype(np.float32), r0 if rtol is None else rtol,
                    a0 if atol is None else atol)
    if ref.dtype.kind == "f":
        r0, a0 = TOL.get(str(ref.dtype), (1e-5, 1e-6))
        rtol = r0 if rtol is None else rtol
        atol = a0 if atol is None else atol
        ok = np.isclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)
        # infinities must match exactly (isclose does that already); NaN only where NaN
        if ok.all():
            return ""
        bad = np.argwhere(~ok)
        k = tuple(bad[0])
        return (f"{len(bad)}/{ref.size} elements differ (rtol={rtol}, atol={atol}); first at {k}: "
                f"got {got[k]!r}, expected {ref[k]!r}")
    if np.array_equal(got, ref):
        return ""
    bad = np.argwhere(got != ref)
    k = tuple(bad[0])
    return f"{len(bad)}/{ref.size} elements differ; first at {k}: got {got[k]!r}, expected {ref[k]!r}"


def saturating_host():
    """This machine as a target whose 8-bit multiply-add saturates pairs (its VNNI features
    left out): integer products that ask for pair saturation compute it there
    (``ember.passes.pair_saturation``), and the code still runs here."""
    from dataclasses import replace

    from ember.target import VNNI_FEATURES, host

    t = host()
    return replace(t, features=t.features - VNNI_FEATURES)


def check_graph(graph, feeds: dict, rtol=None, atol=None, opt_level: int = 3) -> None:
    """Compile a whole graph and compare every output with the reference."""
    mod = ember.compile(graph, cflags=CFLAGS, opt_level=opt_level)
    outs = [_Out(f"{graph.name}:{v.name}", v.name, rtol, atol) for v in graph.outputs]
    compare(graph, mod, feeds, outs)


# ---- memory safety of the generated kernels ------------------------------------------------

#: kernels that execute more scalar statements than this are not interpreted
INTERP_LIMIT = 60000


def kernels_of(graph, opt_level: int = 3):
    """The optimized loop-IR kernels ``ember.compile`` would generate for ``graph``."""
    from ember.driver.compile import generate
    from ember.target import host

    return generate(graph, host(), opt_level).kernels


def check_kernels_safe(graph, seed: int = 0, opt_level: int = 3, limit: int = INTERP_LIMIT) -> int:
    """Interpret every small kernel of ``graph`` on random data (integer buffers hold values far
    outside any index range, as bad gather indices would) and fail on any out-of-bounds access,
    uninitialized read, data race or unwritten output element.  Returns how many were run."""
    from tir.interp import run_kernel, trip_count

    rng = np.random.default_rng(seed)
    n = 0
    for f in kernels_of(graph, opt_level):
        if trip_count(f) > limit:
            continue
        arrays = []
        for b in f.params[:-1]:
            if b.dtype in ("bool",):
                arrays.append(rng.random(b.size) < 0.5)
            elif is_float(b.dtype):
                arrays.append(rng.standard_normal(b.size))
            elif is_narrow(b.dtype):
                arrays.append(rng.integers(0, 256, b.size))     # any byte
            else:
                info = np.iinfo(np_dtype(b.dtype))
                arrays.append(rng.integers(max(info.min, -1000), min(info.max, 1000), b.size))
        arrays.append(np.zeros(f.params[-1].size))
        run_kernel(f, arrays)
        n += 1
    return n


def batch_kernels_safe(batch: Batch, limit: int = INTERP_LIMIT) -> int:
    graph, _, _ = batch._build(batch.cases)
    return check_kernels_safe(graph, opt_level=batch.opt_level, limit=limit)

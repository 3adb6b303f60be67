"""``ember bisect``: where a compiled model first disagrees with the reference interpreter.

Two questions, answered separately so that each names one culprit:

* **kernels**: the model is compiled by ``ember.compile``'s pipeline with every kernel's result
  made an output (``build.compile.observe_kernels``: the same groups, the same kernels, writing
  to buffers that are read back), run on the inputs, and each kernel's result is compared with
  the reference interpreter's value of the same graph value in the optimized graph.  Kernels
  run in order, so the first that disagrees read inputs that agreed: it is the culprit.
* **passes**: the reference interpreter runs the graph after a graph pass and compares its
  outputs with the frontend graph's, bisecting the list of passes (the last graph first, then
  halving): the pass whose input graph agrees and whose output graph does not is named, with
  the nodes it changed and the first node (in the graph's order) whose result differs from the
  same-named value before the pass.

``bisect(...)`` returns a :class:`Report`; ``ember bisect`` prints it and exits with status 3
when it found a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import EmberError, InputError
from ..graph.ir import Graph, Value
from ..graph.interpreter import run_graph
from ..target import Target
from .stages import Kernel, Trace, host_target, trace

#: the status ``ember bisect`` exits with when the compiled model disagrees somewhere
DISAGREES = 3


@dataclass
class Difference:
    """How one result compares with its reference."""

    ok: bool
    max_abs: float = 0.0          # the largest |result - reference| (inf: NaN or shape differ)
    bad: int = 0                  # elements outside the tolerance
    size: int = 0
    why: str = ""                 # a shape or dtype that differs

    def __str__(self) -> str:
        if self.why:
            return self.why
        return f"max |err| {self.max_abs:.3g}" + ("" if self.ok else f", {self.bad} of {self.size} elements off")


@dataclass
class KernelCheck:
    kernel: Kernel
    value: str                    # the graph value the kernel writes
    diff: Difference


@dataclass
class PassCheck:
    index: int                    # position in the trace's passes (0: the frontend's graph)
    name: str
    nodes: int
    diff: Difference | None       # None: not run (the bisection did not need it)
    removed: list[str] = field(default_factory=list)    # node lines of the graph before, gone after
    added: list[str] = field(default_factory=list)      # node lines new in the graph after
    node: str = ""                # the first node whose result differs from before the pass


@dataclass
class Report:
    model: str
    target: str
    opt_level: int
    inputs: str                   # where the inputs came from
    rtol: float
    atol: float
    passes: list[PassCheck] = field(default_factory=list)
    kernels: list[KernelCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_error: str = ""           # the compiled model failed to run (its error): no kernel was compared

    @property
    def first_pass(self) -> PassCheck | None:
        return next((p for p in self.passes if p.diff is not None and not p.diff.ok), None)

    @property
    def first_kernel(self) -> KernelCheck | None:
        return next((k for k in self.kernels if not k.diff.ok), None)

    @property
    def agrees(self) -> bool:
        return self.first_pass is None and self.first_kernel is None and not self.run_error

    def __str__(self) -> str:
        return format_report(self)


def compare(result: np.ndarray, reference: np.ndarray, rtol: float, atol: float) -> Difference:
    """Whether ``result`` matches ``reference``: same shape, and every element within
    ``atol + rtol * |reference|`` (NaN matches NaN; integers and booleans exactly when atol < 1)."""
    a, b = np.asarray(result), np.asarray(reference)
    if a.shape != b.shape:
        return Difference(False, float("inf"), a.size, b.size, f"shape {a.shape} where the reference has {b.shape}")
    if b.dtype == object or a.dtype == object:
        bad = int(np.count_nonzero(a != b))
        return Difference(bad == 0, 0.0 if bad == 0 else float("inf"), bad, b.size)
    if not b.size:
        return Difference(True)
    x, y = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(x - y)
        both_nan = np.isnan(x) & np.isnan(y)
        same_inf = np.isinf(x) & (x == y)
        off = ~(both_nan | same_inf | (err <= atol + rtol * np.abs(y)))
    err = np.where(both_nan | same_inf, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    return Difference(not off.any(), float(err.max()), int(off.sum()), b.size)


def bisect(model: Any, inputs: Mapping[str, np.ndarray] | None = None, *, target: "str | Target" = "cpu",
           opt_level: int = 3, shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
           knobs: Mapping[str, Any] | None = None, rtol: float = 1e-3, atol: float = 1e-4, seed: int = 0,
           progress=None) -> Report:
    """Compile ``model`` as ``ember.compile`` does and find where it first disagrees with the
    reference interpreter: the first kernel, the first pass and the node.  ``inputs`` by input
    name; seeded random inputs (``ember.benchmark.random_inputs``, ``seed``) when not given."""
    say = progress or (lambda msg: None)
    tgt = host_target(target, "ember bisect")
    say("compiling with every kernel's result observable")
    tr = trace(model, tgt, opt_level, shapes=shapes, bounds=bounds, knobs=knobs, observe=True)
    graph = tr.graph
    feeds, origin = _inputs(graph, inputs, seed)
    report = Report(graph.name, tgt.spec if tgt.cross else tgt.kind, opt_level, origin, rtol, atol)
    say("running the reference interpreter on the frontend's graph")
    expected = run_graph(graph, feeds)
    if tr.compiled is None:
        report.notes.append("the model has host steps (string ops): its kernels are built per segment and are "
                            "not checked one by one; only the passes are")
    else:
        say(f"building and running {len(tr.kernels)} kernels")
        _check_kernels(tr, feeds, len(graph.outputs), report)
    say(f"bisecting {len(tr.passes) - 1} passes with the reference interpreter")
    _check_passes(tr, feeds, expected, report)
    return report


def _inputs(graph: Graph, inputs, seed: int) -> tuple[dict[str, np.ndarray], str]:
    from ..benchmark import random_inputs

    names = [v.name for v in graph.inputs]
    if inputs is None:
        return random_inputs({v.name: v.type for v in graph.inputs}, seed=seed), f"seeded random (seed {seed})"
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise InputError(f"model '{graph.name}' takes inputs {', '.join(names)}"
                         + (f"; missing {', '.join(missing)}" if missing else "")
                         + (f"; no input is named {', '.join(extra)}" if extra else ""))
    return {n: np.asarray(inputs[n]) for n in names}, "given"


def _check_kernels(tr: Trace, feeds, n_outputs: int, report: Report) -> None:
    from ..codegen.c import c_ident
    from ..driver.regions import is_region
    from ..runtime import load
    from ..toolchain import build_shared

    cm = tr.compiled
    path = build_shared(cm.units, {"ember_constants": cm.constants}, object_keys=cm.object_keys, pch="model.h",
                        name=c_ident(tr.graph.name), target=tr.target)
    module = load(path)
    try:
        got = list(module.run(feeds).values())[n_outputs:]
    except EmberError as e:      # a run-time check failed: the passes are still bisected
        report.run_error = str(e)
        return
    want = run_graph(cm.graph, feeds)[n_outputs:]
    at = 0
    for k in tr.kernels:
        grp = k.group
        for v in grp.nodes[0].outputs if is_region(grp) else [grp.output]:    # as observe_kernels
            report.kernels.append(KernelCheck(k, v.name, compare(got[at], want[at], report.rtol, report.atol)))
            at += 1


def _check_passes(tr: Trace, feeds, expected: list, report: Report) -> None:
    """Bisect the passes: the frontend's graph agrees by definition; when the last graph
    disagrees, halve the range between a graph that agrees and one that does not until they are
    neighbours: the pass between them turned agreement into disagreement (the first such pass
    whenever a disagreement, once made, lasts)."""
    n = len(expected)
    checks = [PassCheck(k, name, len(g.nodes), None) for k, (name, g) in enumerate(tr.passes)]
    checks[0].diff = Difference(True)
    report.passes = checks

    def agrees(k: int) -> bool:
        g = tr.passes[k][1]
        got = run_graph(_with_outputs(g, g.outputs[:n]), feeds)
        diffs = [compare(a, b, report.rtol, report.atol) for a, b in zip(got, expected)]
        checks[k].diff = next((d for d in diffs if not d.ok),
                              max(diffs, key=lambda d: d.max_abs, default=Difference(True)))
        return checks[k].diff.ok

    lo, hi = 0, len(checks) - 1
    if hi == 0 or agrees(hi):
        return
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if agrees(mid):
            lo = mid
        else:
            hi = mid
    _blame(tr.passes[hi - 1][1], tr.passes[hi][1], feeds, checks[hi], report)


def _with_outputs(g: Graph, outputs: list[Value]) -> Graph:
    return Graph(list(g.inputs), list(g.nodes), list(outputs), g.name, dict(g.bounds), dict(g.hints),
                 list(g.checks), dict(g.defaults))


def _blame(before: Graph, after: Graph, feeds, check: PassCheck, report: Report) -> None:
    """What the pass changed, and the first node of its graph whose result differs from the
    value of the same name (and type) before it."""
    from ..graph.text import print_graph

    old = _node_lines(print_graph(before, elide_constants=True))
    new = _node_lines(print_graph(after, elide_constants=True))
    check.removed = [line for line in old if line not in set(new)]
    check.added = [line for line in new if line not in set(old)]
    values_before = {v.name: v for n in before.nodes for v in n.outputs}
    pairs = [(v, values_before[v.name]) for n in after.nodes for v in n.outputs
             if v.name in values_before and values_before[v.name].type == v.type]
    if not pairs:
        return
    got = run_graph(_with_outputs(after, [a for a, _ in pairs]), feeds)
    want = run_graph(_with_outputs(before, [b for _, b in pairs]), feeds)
    for (v, _), x, y in zip(pairs, got, want):
        if not compare(x, y, report.rtol, report.atol).ok:
            p = v.producer
            check.node = f"{p.op} '{p.name}' (value %{v.name})"
            return


def _node_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if " = " in line]


def format_report(r: Report) -> str:
    lines = [f"ember bisect: model '{r.model}' for {r.target} at -O{r.opt_level}, {r.inputs} inputs, "
             f"tolerance {r.atol:g} + {r.rtol:g} * |reference|", ""]
    if r.kernels:
        lines.append("kernels (each kernel's result against the reference interpreter on the optimized graph)")
        lines.append(f"  {'#':>4}  {'kernel':40}  {'value':24}  result")
        for c in r.kernels:
            mark = "" if c.diff.ok else "   <-- DISAGREES"
            lines.append(f"  {c.kernel.index:>4}  {c.kernel.name[:40]:40}  {c.value[:24]:24}  {c.diff}{mark}")
        lines.append("")
    lines.append("passes (bisected: the reference interpreter on the graph after a pass, against the frontend's graph)")
    lines.append(f"  {'#':>4}  {'pass':24}  {'nodes':>6}  result")
    for p in r.passes:
        mark = "" if p.diff is None or p.diff.ok else "   <-- DISAGREES"
        result = "not run (bisected)" if p.diff is None else str(p.diff)
        lines.append(f"  {p.index:>4}  {p.name:24}  {p.nodes:>6}  {result}{mark}")
    lines += [""] + [f"note: {n}" for n in r.notes]
    if r.run_error:
        lines += [f"the compiled model failed to run, so no kernel was compared: {r.run_error}", ""]
    fk, fp = r.first_kernel, r.first_pass
    if fk:
        k = fk.kernel
        lines += [f"first kernel that disagrees: #{k.index} {k.name} (value %{fk.value}: {fk.diff})",
                  f"  fuses: {k.nodes}", "  loop IR:"]
        lines += ["    " + s for s in (k.loop_ir or "(a region: its bodies are kernels of their own)").splitlines()]
        lines += ["  C:"] + ["    " + s for s in (k.c or "(none)").splitlines()] + [""]
    if fp:
        lines.append(f"first pass that disagrees: #{fp.index} {fp.name} ({fp.diff})")
        if fp.node:
            lines.append(f"  first node whose result differs: {fp.node}")
        lines += ["  before:"] + [f"    {s}" for s in fp.removed[:20]] + (["    ..."] if len(fp.removed) > 20 else [])
        lines += ["  after:"] + [f"    {s}" for s in fp.added[:20]] + (["    ..."] if len(fp.added) > 20 else [])
        lines.append("")
    if r.agrees:
        lines.append(f"no disagreement: every kernel and the graph after the last pass agree with the reference "
                     f"({len(r.kernels)} kernel results, {len(r.passes) - 1} passes)")
    return "\n".join(lines).rstrip() + "\n"

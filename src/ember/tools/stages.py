"""Compile a model recording every stage: the graph after each graph pass, the fused groups,
and each kernel's loop IR and C (what ``ember compile --dump`` writes, kept in memory).

The pipeline is ``ember.compile``'s own (``driver.compile.generate``): the records come from its
``dump`` hook, so they are what the compiler did, not a re-enactment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..driver.compile import CompiledModel, generate, to_graph
from ..errors import EmberError, TargetError
from ..graph.ir import Graph
from ..target import Target, resolve


@dataclass
class Kernel:
    """One fused group and what it became."""

    index: int
    name: str               # the group's name (the profile's and the C's, before C renaming)
    group: Any              # passes.fusion.Group
    c_name: str = ""        # the C function's name
    loop_ir: str = ""       # the printed loop IR (empty for a region: its bodies are kernels of their own)
    c: str = ""             # the C definition

    @property
    def nodes(self) -> str:
        return ", ".join(f"{n.op} '{n.name}'" for n in self.group.nodes)


@dataclass
class Trace:
    """What one compile produced, stage by stage."""

    target: Target
    opt_level: int
    graph: Graph                                   # the frontend's graph
    passes: list[tuple[str, Graph]] = field(default_factory=list)   # ("input", graph) first
    kernels: list[Kernel] = field(default_factory=list)
    compiled: CompiledModel | None = None

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if name in (k.name, k.c_name) or name == str(k.index):
                return k
        raise EmberError(f"no kernel '{name}'; the kernels are: "
                         + ", ".join(k.name for k in self.kernels))

    def after(self, which: str) -> tuple[int, str, Graph]:
        """The graph after pass ``which``: its number in :attr:`passes`, or its name (a pass
        that runs twice: ``cse`` is the first run, ``cse#2`` the second)."""
        if which.isdigit() and int(which) < len(self.passes):
            k = int(which)
            return k, *self.passes[k]
        name, _, nth = which.partition("#")
        seen = 0
        for k, (n, g) in enumerate(self.passes):
            if n == name:
                seen += 1
                if seen == (int(nth) if nth.isdigit() else 1):
                    return k, n, g
        raise EmberError(f"no pass '{which}'; the passes are: "
                         + ", ".join(f"{k} {n}" for k, (n, _) in enumerate(self.passes)))


def host_target(target: "str | Target", what: str) -> Target:
    tgt = resolve(target)
    if tgt.cross:
        raise TargetError(f"{what} runs the compiled model, so it needs this machine's target, not {tgt.spec}")
    return tgt


def trace(model: Any, target: "str | Target" = "cpu", opt_level: int = 3, *,
          shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
          knobs: Mapping[str, Any] | None = None, observe: bool = False, profile: bool = False,
          graph: Graph | None = None) -> Trace:
    """Compile ``model`` up to C (not built) and record every stage.  ``observe``: every
    kernel's result is an output too (``build.compile.observe_kernels``)."""
    from ..driver.program import needs_program
    from ..schedules.knobs import check_knobs
    from ..tir.printer import print_func

    tgt = resolve(target)
    if knobs:
        tgt = tgt.with_knobs(check_knobs(knobs))
    if not isinstance(opt_level, int) or not 0 <= opt_level <= 3:
        raise EmberError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    graph = graph if graph is not None else to_graph(model, shapes, bounds)
    tr = Trace(tgt, opt_level, graph, [("input", graph)])
    if needs_program(graph):
        from ..driver.pipeline import Context, generic_steps, run_graph

        run_graph(graph, Context(tgt, opt_level, dump=lambda name, g: tr.passes.append((name, g))),
                  generic_steps())
        return tr            # host steps: the kernels are built per segment (not traced)
    loop_ir: dict[int, tuple[str, str]] = {}

    def dump(stage: str, obj) -> None:
        if isinstance(obj, Graph):
            tr.passes.append((stage, obj))
            return
        m = re.match(r"kernel_(\d+)_", stage)
        if m:
            loop_ir[int(m.group(1))] = (obj.name, print_func(obj))

    cm = generate(graph, tgt, opt_level, dump=dump, profile=profile, observe=observe)
    tr.compiled = cm
    for k, grp in enumerate(cm.groups):
        c_name, text = loop_ir.get(k, ("", ""))
        tr.kernels.append(Kernel(k, grp.name, grp, c_name, text, c_function(cm.source, c_name) if c_name else ""))
    return tr


def c_function(source: str, name: str) -> str:
    """The definition of C function ``name`` in ``source`` (with the comment before it)."""
    m = re.search(rf"(/\*[^\n]*\*/\n)?static void {re.escape(name)}\(", source)
    if not m:
        return ""
    end = source.find("\n}\n", m.end())
    return source[m.start(): end + 3 if end >= 0 else len(source)]

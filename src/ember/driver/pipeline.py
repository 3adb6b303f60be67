"""The compiler's pipeline: every pass that rewrites a graph or a kernel, in order, run from one
list with one context.

A :class:`Step` is a pass of the graph IR (``ir="graph"``: the target-independent passes of
``ember.passes.PIPELINE``, then the target's: pair saturation, the NCHW[x]c layout, Winograd,
weight packing, fused attention) or of the loop IR (``ir="loop"``: run on every kernel after
its schedule is lowered).  The :class:`Context` says for which target, at which opt level,
which passes are disabled, and where dumps and progress messages go.  After every step the
result is verified (``graph.verify`` or ``tir.verify``), so a pass that breaks its input is
named in the error, and dumped when dumping.

A step runs when the opt level reaches its ``opt_level`` and it is not disabled; a ``required``
step (one that decides what the results are, such as onnxruntime's saturating int8 pairs) runs
at every level and cannot be disabled.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from ..errors import EmberError
from ..graph.ir import Graph
from ..graph.verify import verify
from .. import passes as graph_passes
from ..passes import checked, fuse_attention, layout_nchwc, pack_int_matmul, pack_weights, pair_saturation, winograd
from ..target import Target
from ..timings import Timings, timed
from ..tir import transform as loop
from ..tir.stmt import PrimFunc
from ..tir.verify import verify_func


@dataclass(frozen=True)
class Step:
    """One pass of the pipeline: ``run(ir, context)`` returns the rewritten graph or kernel."""

    name: str
    ir: str                                  # "graph" or "loop"
    opt_level: int                           # the lowest opt level that runs it
    run: Callable[[Any, "Context"], Any]
    doc: str = ""
    required: bool = False                   # runs at every level; cannot be disabled


@dataclass
class Context:
    """What a compile's passes run for: the target, the opt level, the passes disabled by name
    (``ember compile --disable-pass NAME``), the dump and progress hooks, and where the steps'
    times go (``timings``, :mod:`ember.timings`; None: not timed)."""

    target: Target
    opt_level: int = 3
    disabled: frozenset = frozenset()
    dump: Callable[[str, Any], None] | None = None
    progress: Callable[[str], None] | None = None
    timings: Timings | None = None
    #: the kernels whose schedule fell back to the default one: (kernel, reason)
    fallbacks: list = field(default_factory=list)

    def runs(self, step: Step) -> bool:
        return step.required or (step.opt_level <= self.opt_level and step.name not in self.disabled)

    def timed(self, step: str):
        """A context manager that times its block as ``step`` (nothing without ``timings``)."""
        return timed(self.timings, step)

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


def _graph_pass(p) -> Step:
    return Step(p.name, "graph", p.opt_level, lambda g, ctx: p(g), p.doc)


def generic_steps() -> tuple[Step, ...]:
    """The target-independent graph passes (``passes.PIPELINE``, read when called): what a graph
    with host steps runs before it is cut into segments (each then compiled with every step),
    and what a region's body runs."""
    return tuple(_graph_pass(graph_passes.PASSES[n]) for n in graph_passes.PIPELINE)


def graph_steps() -> tuple[Step, ...]:
    """The graph passes, in order: :func:`generic_steps`, then those that prepare the graph for
    the target (after the layout change, the constants' layout conversions fold again)."""
    return generic_steps() + (
        Step("pair_saturation", "graph", 0, lambda g, ctx: pair_saturation.run(g, ctx.target.int8_pairs_saturate),
             "integer products keep onnxruntime's saturating pairs of int8 products where the target's fast "
             "instruction has them (x86 without VNNI)", required=True),
        Step("layout_nchwc", "graph", 3, lambda g, ctx: layout_nchwc.run(g, ctx.target.lanes, ctx.target.int8_dot),
             "convolutions on NCHW[x]c activations, the layout kept through the ops between them"),
        Step("pack_int_matmul", "graph", 3,
             lambda g, ctx: pack_int_matmul.run(g, ctx.target.lanes, ctx.target.int8_dot,
                                               ctx.target.int8_pairs_saturate),
             "integer matmuls of constant weights on weights packed for the 8-bit dot products"),
        *(Step(p.name, "graph", 3, (lambda p: lambda g, ctx: p(g))(p), "after the layout change: " + p.doc)
          for p in graph_passes.pipeline(1)),
        Step("winograd", "graph", 3, lambda g, ctx: winograd.run(g, ctx.target.lanes),
             "stride-1 3x3 convolutions as Winograd transforms around a batched matmul"),
        PACK_WEIGHTS,
        Step("fuse_attention", "graph", 3, lambda g, ctx: fuse_attention.run(g, ctx.target.lanes),
             "matmul, scale, mask, softmax, matmul as one attention kernel"),
    )


#: weight packing, also the target's only pass on a region's body (after its outputs are made
#: its own: ``driver.regions``)
PACK_WEIGHTS = Step("pack_weights", "graph", 3, lambda g, ctx: pack_weights.run(g, ctx.target.lanes),
                    "constant weights of convolutions and matmuls packed into the register tiles' order")

#: the loop-IR passes every kernel goes through after lowering (``tir.transform``)
LOOP_STEPS: tuple[Step, ...] = (
    Step("remove_unit_loops", "loop", 0, lambda f, ctx: loop.remove_unit_loops(f),
         "loops of extent 1 replaced by their body"),
    Step("simplify_indices", "loop", 0, lambda f, ctx: loop.simplify(f),
         "indices simplified knowing every loop's range"),
    Step("unroll", "loop", 0, lambda f, ctx: loop.unroll(f), "loops marked unrolled copied out"),
    Step("transpose_blocks", "loop", 0, lambda f, ctx: loop.transpose_blocks(f, ctx.target.lanes),
         "copies that transpose as blocks of vectors transposed in registers"),
    Step("vectorize", "loop", 0, lambda f, ctx: loop.vectorize(f, ctx.target.lanes, then_unroll=False),
         "loops marked vectorized as vector expressions"),
    Step("unroll", "loop", 0, lambda f, ctx: loop.unroll(f), "the short loops of vectors vectorize made, copied out"),
)


def steps() -> list[Step]:
    """Every step of the pipeline, graph then loop IR, in order."""
    return list(graph_steps()) + list(LOOP_STEPS)


def check_disabled(names: Iterable[str]) -> frozenset:
    """``names`` as a set of passes that may be disabled, else an EmberError naming the first
    that is not a pass or is required."""
    by_name = {s.name: s for s in steps()}
    out = set()
    for n in names:
        if n not in by_name:
            raise EmberError(f"no pass named {n!r} to disable; the passes are: "
                             + ", ".join(dict.fromkeys(s.name for s in steps() if not s.required)))
        if by_name[n].required:
            raise EmberError(f"pass {n!r} cannot be disabled: {by_name[n].doc}")
        out.add(n)
    return frozenset(out)


def run_graph(graph: Graph, ctx: Context, steps: Sequence[Step] | None = None) -> Graph:
    """Run the graph ``steps`` (by default :func:`graph_steps`) that ``ctx`` enables on
    ``graph`` (not modified), verifying the graph before the first and after every one, and
    dumping it after every one."""
    steps = graph_steps() if steps is None else steps
    with ctx.timed("graph: verify"):
        verify(graph)
        g = graph.copy()
    last = None
    for step in steps:
        if not ctx.runs(step) or step.name == last:
            continue          # (a pass run twice in a row does nothing the second time)
        last = step.name
        with ctx.timed(f"graph pass {step.name}"):
            g = step.run(g, ctx)
            gc.collect(1)     # the previous graph: see passes.base.paused_gc
        with ctx.timed("graph: verify"):
            checked(step.name, g)
        if ctx.dump is not None:
            ctx.dump(step.name, g)
    return g


def run_loop(f: PrimFunc, ctx: Context, steps: Sequence[Step] | None = None) -> PrimFunc:
    """Run the loop-IR ``steps`` (by default :data:`LOOP_STEPS`) that ``ctx`` enables on kernel
    ``f``, verifying the result (a defect names the pass that made it) and, when dumping,
    dumping it after every one (``<pass>.<kernel>``).

    The passes make new kernels (they never change theirs), so only the last kernel is verified:
    when it is malformed, or a pass fails, the passes run again from ``f``, each result verified,
    to name the first pass whose kernel is malformed.  When dumping, every result is verified
    (the dump shows only well-formed kernels)."""
    steps = [s for s in (LOOP_STEPS if steps is None else steps) if ctx.runs(s)]
    if ctx.dump is not None:
        return _run_loop_verified(f, ctx, steps)
    out = f
    try:
        for step in steps:
            with ctx.timed(f"loop pass {step.name}"):
                out = step.run(out, ctx)
        with ctx.timed("loop: verify"):
            verify_func(out)
    except Exception:
        _run_loop_verified(f, ctx, steps)      # raises the error naming the pass, if one is malformed
        raise
    return out


def _run_loop_verified(f: PrimFunc, ctx: Context, steps: Sequence[Step]) -> PrimFunc:
    for step in steps:
        with ctx.timed(f"loop pass {step.name}"):
            f = step.run(f, ctx)
        try:
            with ctx.timed("loop: verify"):
                verify_func(f)
        except EmberError as e:
            raise type(e)(f"loop-IR pass '{step.name}' produced a malformed kernel: "
                          f"{str(e).split('] ', 1)[-1]}") from e
        if ctx.dump is not None:
            ctx.dump(f"{step.name}.{f.name}", f)
    return f

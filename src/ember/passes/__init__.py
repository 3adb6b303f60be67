"""Graph passes: pure Graph -> Graph functions composed per optimization level.

``optimize(graph, opt_level)`` runs the pipeline for the level and verifies the graph after
every pass.  Levels:

* 0: nothing
* 1: QDQ groups to integer kernels, fold constants, dead code
* 2: + common subexpressions, algebraic simplification, batch-norm folding and lowering
* 3: same as 2 (layout passes come here)

Fusion (``fuse``) and memory planning (``plan_memory``) live here too; they do not rewrite the
graph but describe how to run it.
"""

from __future__ import annotations

import gc
from typing import Callable

from ..errors import GraphError, LimitError
from ..graph.ir import Graph
from ..graph.verify import verify
from . import cse, dead_code, fold_batch_norm, fold_constants, lower_batch_norm, qdq_to_integer, simplify
from .base import Pass, paused_gc
from .fusion import Group, describe, fuse
from .memory import MemoryPlan, plan_memory

#: Every graph pass by name.
PASSES: dict[str, Pass] = {m.PASS.name: m.PASS for m in
                           (qdq_to_integer, fold_constants, dead_code, cse, simplify, fold_batch_norm,
                            lower_batch_norm)}

#: The order passes run in; each runs at the levels from its ``opt_level`` up.
PIPELINE: tuple[str, ...] = (
    "qdq_to_integer", "fold_constants", "cse", "simplify", "fold_batch_norm", "lower_batch_norm",
    "fold_constants", "cse", "dead_code",
)

MAX_OPT_LEVEL = 3


def pipeline(opt_level: int) -> list[Pass]:
    """The passes ``optimize`` runs at ``opt_level``, in order."""
    if not isinstance(opt_level, int) or not 0 <= opt_level <= MAX_OPT_LEVEL:
        raise ValueError(f"opt_level must be an integer from 0 to {MAX_OPT_LEVEL}, got {opt_level!r}")
    out: list[Pass] = []
    for name in PIPELINE:
        p = PASSES[name]
        if p.opt_level <= opt_level and (not out or out[-1] is not p):
            out.append(p)
    return out


def optimize(graph: Graph, opt_level: int = 2,
             dump: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run the pipeline of ``opt_level`` on ``graph`` (not modified) and return the result.

    The graph is verified before the first pass and after each one; a pass that breaks it is
    named in the :class:`ember.errors.GraphError`.  ``dump(pass_name, graph)`` is called after
    each pass when given.
    """
    passes = pipeline(opt_level)
    verify(graph)
    g = graph.copy()
    with paused_gc():
        for p in passes:
            g = p(g)
            gc.collect(1)         # the previous graph: see paused_gc
            checked(p.name, g)
            if dump is not None:
                dump(p.name, g)
    return g


def checked(pass_name: str, g: Graph) -> None:
    """Verify ``g``, the result of pass ``pass_name``; a malformed graph is a GraphError that
    names the pass (a resource limit stays what it is)."""
    try:
        verify(g)
    except GraphError as e:
        if isinstance(e, LimitError):
            raise
        err = GraphError(f"pass '{pass_name}' produced a malformed graph: {str(e).split('] ', 1)[-1]}")
        err.node, err.op = e.node, e.op
        raise err from e


__all__ = ["PASSES", "PIPELINE", "Pass", "pipeline", "optimize", "Group", "fuse", "describe",
           "MemoryPlan", "plan_memory", "checked"]

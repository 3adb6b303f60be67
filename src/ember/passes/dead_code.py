"""Dead-code elimination: drop the nodes whose outputs the graph outputs do not need.

Core ops have no side effects, so a node is needed exactly when one of its outputs reaches a
graph output.  Graph inputs stay (they are the signature), even when unused.
"""

from __future__ import annotations

from ..graph.ir import Graph, Value
from .base import Pass


def dead_code(graph: Graph) -> Graph:
    g = graph.copy()
    live: set[Value] = set(g.outputs)
    keep = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            keep.append(n)
            live.update(n.inputs)
    keep.reverse()
    g.nodes = keep
    return g


PASS = Pass("dead_code", 1, dead_code, "remove nodes that do not contribute to the outputs")

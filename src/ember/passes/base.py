"""What every graph pass is: a named, pure Graph -> Graph function enabled from an opt level.

Also the two small tools most passes need: fresh names that do not collide with the graph's,
and resolving chains of value replacements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..graph.ir import Graph, Value


@dataclass(frozen=True)
class Pass:
    """A graph pass. ``run`` never mutates its argument and returns a new graph."""

    name: str
    opt_level: int          # the lowest opt level that runs it
    run: Callable[[Graph], Graph]
    doc: str = ""

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)


class Names:
    """Fresh value and node names for a graph (one namespace, as the text form wants)."""

    def __init__(self, graph: Graph):
        self.used: set[str] = {v.name for v in graph.values()} | {n.name for n in graph.nodes}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def resolve(subst: dict[Value, Value], v: Value) -> Value:
    """Follow ``subst`` from ``v`` to the value that finally replaces it."""
    while v in subst:
        v = subst[v]
    return v

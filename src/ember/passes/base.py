"""What every graph pass is: a named, pure Graph -> Graph function enabled from an opt level.

Also the small tools most passes need: fresh names that do not collide with the graph's,
resolving chains of value replacements, and :func:`paused_gc`.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

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

    def __init__(self, graph: Graph | None = None, used: Iterable[str] = ()):
        self.used: set[str] = set(used)
        if graph is not None:
            self.used |= {v.name for v in graph.values()} | {n.name for n in graph.nodes}

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


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Runs the block without Python's automatic cycle collection; the block calls
    ``gc.collect(1)`` (or ``gc.collect(0)``) itself where garbage is due.

    A pass copies the graph, and a graph is cyclic (values point to their producers, nodes to
    their outputs), so each pass leaves a graph's worth of cycles behind.  The automatic
    collector, run every few hundred allocations, rescans the live graph again and again: on a
    chain of 30,000 nodes it made the passes 5-8 times slower.  Collecting once after each pass
    costs one scan of what that pass allocated.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()

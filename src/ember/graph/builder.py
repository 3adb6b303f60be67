"""Building graphs node by node, with types inferred as nodes are added."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import limits
from .ir import Graph, Node, Value, constant
from .types import TensorType


class GraphBuilder:
    """Append nodes to a new graph; each ``op`` call infers its output types at once, so a
    type error names the node that caused it."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.bounds: dict[str, int] = {}   # upper limits of the symbols of symbolic shapes
        self.hints: dict[str, int] = {}    # planning sizes of symbols without a limit
        self.checks: list = []              # run-time conditions on the symbols (Graph.checks)
        self.defaults: dict[str, np.ndarray] = {}   # default values of inputs (Graph.defaults)
        self.squeezes: dict[int, tuple] = {}        # outputs of a run-time rank (Graph.squeezes)
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []
        self._names: set[str] = set()        # value names
        self._node_names: set[str] = set()   # node names (a namespace of their own)

    @classmethod
    def rewriting(cls, graph: Graph) -> "GraphBuilder":
        """A builder for a rewrite of ``graph``: same inputs, and the names of all its values
        and nodes taken, so new nodes get fresh ones.  Nodes kept as they are go back in with
        ``add_node``."""
        b = cls(graph.name)
        b.inputs = list(graph.inputs)
        b.bounds = dict(graph.bounds)
        b.hints = dict(graph.hints)
        b.checks = list(graph.checks)
        b.defaults = dict(graph.defaults)
        b.squeezes = dict(graph.squeezes)
        b._names.update(v.name for v in graph.values())
        b._node_names.update(n.name for n in graph.nodes)
        return b

    def fresh(self, base: str, used: set[str] | None = None) -> str:
        used = self._names if used is None else used
        base = base or "v"
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    def input(self, name: str, type: TensorType) -> Value:
        v = Value(self.fresh(name), type)
        self.inputs.append(v)
        return v

    def const(self, array: Any, name: str | None = None, dtype: str | None = None) -> Value:
        return constant(array, self.fresh(name) if name else None, dtype)

    def op(self, op: str, inputs: Sequence[Value], name: str = "", **attrs: Any) -> Value:
        """Add one node; returns its output (a tuple of outputs for multi-output ops)."""
        outs = self.op_multi(op, inputs, name, **attrs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def op_multi(self, op: str, inputs: Sequence[Value], name: str = "", **attrs: Any) -> list[Value]:
        from ..ops import get_op

        opdef = get_op(op)
        limits.check_count("nodes", len(self.nodes) + 1, f"the number of nodes of graph '{self.name}'",
                           node=name or None, op=op)
        node_name = self.fresh(name or op, self._node_names)
        a = opdef.fill_attrs(attrs, node_name)
        types = opdef.infer_types(a, [v.type for v in inputs], node_name)
        node = Node(op, list(inputs), [], a, node_name)
        node.outputs = [Value(self.fresh(node_name if len(types) == 1 else f"{node_name}_{k}"), t, node)
                        for k, t in enumerate(types)]
        self.nodes.append(node)
        return node.outputs

    def add_node(self, node: Node) -> None:
        """Append an already-typed node (used by passes that copy nodes)."""
        self._node_names.add(node.name)
        self._names.update(v.name for v in node.outputs)
        self.nodes.append(node)

    def finish(self, outputs: Sequence[Value]) -> Graph:
        return Graph(list(self.inputs), list(self.nodes), list(outputs), self.name, dict(self.bounds),
                     dict(self.hints), list(self.checks), dict(self.defaults), dict(self.squeezes))


def infer_node(node: Node) -> list[TensorType]:
    """Re-run the type rule of an existing node."""
    from ..ops import get_op

    opdef = get_op(node.op)
    return opdef.infer_types(node.attrs, [v.type for v in node.inputs], node.name)


def run_node_reference(node: Node, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    from ..ops import get_op

    return get_op(node.op).run_reference(node.attrs, arrays)

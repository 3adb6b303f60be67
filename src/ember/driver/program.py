"""Models with host steps: split a graph into compiled segments and host steps.

Ops marked ``host`` (``ember.ops.strings``: everything on strings, ``label_encode``) have no C
kernel.  A graph that holds one, or any string value, is compiled to a program
(``ember.runtime.program``): its nodes are cut into *steps* in an order that respects their
dependencies, each step either one host node (run by its kernel in ``ember.runtime.host``) or a
*segment*, a maximal set of other nodes that can run together once the steps before have run.
Each segment is a graph of its own, whose inputs are the values it reads from the program's
inputs and earlier steps and whose outputs are those later steps and the program's outputs
read; it is compiled exactly as a whole model is.  A dimension that a host step decides (a
string op's data-dependent length) is a symbol of the segments that read it, bound from their
input shapes at run time.

A graph without host ops or strings is not a program: ``needs_program`` is False and
``ember.compile`` builds one shared library as always.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph.ir import Graph, Node, Value
from ..graph.types import is_string
from ..ops import get_op
from ..symbolic import symbols_of


def is_host(node: Node) -> bool:
    return get_op(node.op).host


def needs_program(graph: Graph) -> bool:
    """Whether ``graph`` has host ops or string values (and so cannot be one shared library)."""
    return (any(is_host(n) for n in graph.nodes)
            or any(is_string(v.dtype) for v in list(graph.inputs) + list(graph.outputs) + graph.constants()))


@dataclass
class Step:
    """One step of a program: a host node, or a segment of compiled nodes."""

    nodes: list[Node]
    host: bool
    inputs: list[Value] = field(default_factory=list)    # values read from outside the step
    outputs: list[Value] = field(default_factory=list)   # values read after the step

    def segment_graph(self, name: str, bounds: dict, checks=()) -> Graph:
        """The segment as a graph of its own, of new values (its inputs are graph inputs, not
        outputs of the nodes before), with the bounds of the symbols its inputs use and the
        checks (``Graph.checks``) that only they decide."""
        syms = {s for v in self.inputs for s in v.type.symbols}
        vmap: dict[Value, Value] = {v: Value(v.name, v.type) for v in self.inputs}
        nodes = []
        for n in self.nodes:
            nn = Node(n.op, [vmap.get(v, v) for v in n.inputs], [], dict(n.attrs), n.name)
            nn.outputs = [Value(o.name, o.type, nn) for o in n.outputs]
            vmap.update(zip(n.outputs, nn.outputs))
            nodes.append(nn)
        return Graph([vmap[v] for v in self.inputs], nodes, [vmap[v] for v in self.outputs], name,
                     {k: b for k, b in bounds.items() if k in syms}, {},
                     [c for c in checks if symbols_of([c[0]]) <= syms])


def partition(graph: Graph) -> list[Step]:
    """The steps of ``graph`` in run order: as many nodes as can run at once go into one
    segment before the host nodes that are ready run, one step each."""
    ready = {v for v in graph.inputs} | set(graph.constants())
    pending = list(graph.nodes)
    steps: list[Step] = []
    while pending:
        segment, rest = [], []
        for n in pending:
            if not is_host(n) and all(v in ready for v in n.inputs):
                segment.append(n)
                ready.update(n.outputs)
            else:
                rest.append(n)
        if segment:
            steps.append(Step(segment, False))
        pending, rest, progressed = rest, [], bool(segment)
        for n in pending:
            if is_host(n) and all(v in ready for v in n.inputs):
                steps.append(Step([n], True))
                ready.update(n.outputs)
                progressed = True
            else:
                rest.append(n)
        pending = rest
        if not progressed:    # a graph that is not in topological order
            raise ValueError(f"node '{pending[0].name}' reads values no earlier node produces")
    _connect(graph, steps)
    return steps


def _connect(graph: Graph, steps: list[Step]) -> None:
    """Fill in each step's inputs and outputs: a host step's are its node's; a segment reads
    the values it does not make or hold as constants (in first-use order) and writes those that
    later steps or the program's outputs read."""
    later_uses: dict[Value, int] = {}      # value -> index of the last step that reads it
    for k, s in enumerate(steps):
        for n in s.nodes:
            for v in n.inputs:
                later_uses[v] = k
    end = len(steps)
    for v in graph.outputs:
        later_uses[v] = end
    for k, s in enumerate(steps):
        if s.host:      # a host kernel takes its node's operands in order, repeats and all
            s.inputs = list(s.nodes[0].inputs)
            s.outputs = list(s.nodes[0].outputs)
            continue
        made = {o for n in s.nodes for o in n.outputs}
        seen: set[Value] = set()
        for n in s.nodes:
            for v in n.inputs:
                if v not in made and v not in seen and not v.is_const:
                    seen.add(v)
                    s.inputs.append(v)
        outs: list[Value] = []
        for n in s.nodes:
            for o in n.outputs:
                if later_uses.get(o, -1) > k:
                    outs.append(o)
        s.outputs = outs


def const_entry(slot: int, v: Value) -> dict:
    """A constant as the program header holds it."""
    arr = np.asarray(v.const)
    return {"slot": slot, "dtype": v.dtype, "shape": list(arr.shape), "data": arr.reshape(-1).tolist()}


def json_attrs(attrs: dict) -> dict:
    """A host node's attributes as JSON values (tuples become lists)."""
    def go(x):
        if isinstance(x, (tuple, list)):
            return [go(y) for y in x]
        if isinstance(x, np.generic):
            return x.item()
        return x
    return {k: go(v) for k, v in attrs.items()}

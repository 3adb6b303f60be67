"""Common-subexpression elimination.

Two nodes with the same op, the same inputs and the same attributes compute the same values;
the later one is dropped and its users read the earlier one.  Inputs of commutative ops are
compared as a set.  Equal constants (same dtype, shape and bytes, or strings; up to
``MAX_CONST_BYTES``) are merged first, so that nodes over equal constants match too.

A value that is a graph output is never replaced (its name is the output's name), but it may
be the one that others are replaced by.
"""

from __future__ import annotations

from ..graph.ir import Graph, Node, Value
from .base import Pass, resolve

#: Constants up to this size are compared by content.
MAX_CONST_BYTES = 1 << 20

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "equal", "not_equal",
                         "logical_and", "logical_or", "logical_xor"})


def _node_key(n: Node) -> tuple:
    ins = tuple(n.inputs)
    if n.op in COMMUTATIVE:
        ins = tuple(sorted(ins, key=lambda v: v.uid))
    # repr is exact for the attribute kinds (ints, floats, strings, bools, None, tuples) and
    # tells 1 from 1.0 from True and 0.0 from -0.0
    # a region's bodies (graphs) are told apart by identity: equal text need not mean equal
    # constants
    attrs = tuple((k, ("graph", id(v)) if isinstance(v, Graph) else v) for k, v in n.attrs.items())
    return n.op, ins, repr(attrs), len(n.outputs)


def cse(graph: Graph) -> Graph:
    g = graph.copy()
    protected = set(g.outputs)
    subst: dict[Value, Value] = {}
    consts: dict[tuple, Value] = {}
    seen: dict[tuple, Node] = {}

    def canon(v: Value) -> Value:
        v = resolve(subst, v)
        if v.is_const and v.const.nbytes <= MAX_CONST_BYTES:
            data = tuple(v.const.reshape(-1).tolist()) if v.dtype == "string" else v.const.tobytes()
            key = (v.dtype, v.type.shape, data)
            first = consts.setdefault(key, v)
            if first is not v:
                subst[v] = first
                return first
        return v

    nodes = []
    for n in g.nodes:
        n.inputs = [canon(v) for v in n.inputs]
        key = _node_key(n)
        prev = seen.get(key)
        if prev is not None and not any(o in protected for o in n.outputs):
            subst.update(zip(n.outputs, prev.outputs))
            continue
        seen.setdefault(key, n)
        nodes.append(n)
    g.nodes = nodes  # the outputs stay as they are: protected values are never replaced
    return g


PASS = Pass("cse", 2, cse, "merge duplicate nodes and equal constants")

"""Core ops emitted node by node, folded to constants when all their inputs are constant.

A frontend translates one framework node at a time into core ops on a
:class:`~ember.graph.builder.GraphBuilder`.  :func:`emit` adds one core op, or, when every input
is a constant and the result is static and within the folding limit (``limits.may_fold``),
evaluates it with the op's numpy reference and returns constants instead, so that shape and
index computations over weights and static sizes never reach the graph.  :func:`dim_tensor`
turns a dimension (an ``int`` or a symbolic ``Sym``) into a scalar tensor, computed at run time
when it is symbolic.  :func:`computed_from_constants` evaluates a value that nodes kept
unfolded on purpose compute from constants alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ... import limits
from ...graph.builder import GraphBuilder
from ...graph.ir import Value
from ...graph.types import np_dtype
from ...ops import get_op
from ...symbolic import SymbolicError


def emit(b: GraphBuilder, core: str, inputs: Sequence[Value], name: str, **attrs: Any) -> Any:
    """Core op ``core`` on ``inputs`` named ``name``: its value as constants when every input is
    constant (and the result static and small enough to fold), else a new node.  Returns one
    Value, or a tuple for multi-output ops."""
    inputs = list(inputs)
    if inputs and all(v.is_const for v in inputs):
        opdef = get_op(core)
        a = opdef.fill_attrs(attrs, name)
        types = opdef.infer_types(a, [v.type for v in inputs], name)
        if all(t.is_static for t in types) and limits.may_fold(
                sum(t.nbytes for t in types), sum({v.uid: v.const.nbytes for v in inputs}.values())):
            outs = opdef.run_reference(a, [v.const for v in inputs])
            vals = [b.const(np.asarray(o, dtype=np_dtype(t.dtype)).reshape(t.shape), name=name + "_const",
                            dtype=t.dtype)
                    for o, t in zip(outs, types)]
            return vals[0] if len(vals) == 1 else tuple(vals)
    return b.op(core, inputs, name=name, **attrs)


def dim_tensor(b: GraphBuilder, d: Any, name: str, dtype: str = "int64") -> Value:
    """Dimension ``d`` (an int or a symbolic dimension) as a rank-0 tensor of ``dtype``: a
    constant, or an ``arange`` of one element starting at ``d`` computed at run time."""
    if isinstance(d, (int, np.integer)):
        return b.const(np.array(int(d), dtype=np_dtype(dtype)), name=name + "_const", dtype=dtype)
    one = b.op("arange", [], name=name, length=1, start=d, delta=0, dtype=dtype)
    return b.op("reshape", [one], name=name, shape=())


def computed_from_constants(v: Value) -> np.ndarray | None:
    """The value of ``v`` when it is computed from constants alone (nodes kept unfolded on
    purpose, such as the ``dequantize`` of a constant that the QDQ passes read), by running its
    producers' references; None when a graph input or a symbolic size feeds it."""
    memo: dict[int, np.ndarray] = {}
    stack = [v]
    while stack:
        u = stack[-1]
        if u.uid in memo:
            stack.pop()
            continue
        if u.is_const:
            memo[u.uid] = u.const
            stack.pop()
            continue
        node = u.producer
        if node is None or not all(o.type.is_static for o in node.outputs):
            return None
        pending = [w for w in node.inputs if w.uid not in memo]
        if pending:
            stack.extend(pending)
            continue
        try:
            outs = get_op(node.op).run_reference(node.attrs, [memo[w.uid] for w in node.inputs])
        except SymbolicError:
            return None         # an attribute holds a symbolic size (an ``arange`` from one)
        for out, o in zip(node.outputs, outs):
            memo[out.uid] = np.asarray(o, dtype=np_dtype(out.type.dtype)).reshape(out.type.shape)
        stack.pop()
    return memo[v.uid]

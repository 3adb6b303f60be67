"""Lower the batch norms left after folding into elementwise arithmetic.

With constant parameters, ``batch_norm(x, scale, bias, mean, var)`` becomes
``add(mul(x, inv), shift)`` with ``inv = scale / sqrt(var + eps)`` and
``shift = bias - mean * inv`` folded into ``[1, C, 1, ...]`` constants.  Otherwise the same
arithmetic is written out in ops (``sub``, ``mul``, ``add`` on reshaped parameters), which later
constant folding simplifies as far as it can.
"""

from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node, Value, constant
from ..graph.types import TensorType, np_dtype
from .base import Names, Pass


def _node(op: str, inputs: list[Value], name: str, **attrs) -> Node:
    from ..ops import get_op

    opdef = get_op(op)
    a = opdef.fill_attrs(attrs, name)
    (t,) = opdef.infer_types(a, [v.type for v in inputs], name)
    n = Node(op, list(inputs), [], a, name)
    n.outputs = [Value(name, t, n)]
    return n


def _const(array, name: str, dtype: str) -> Value:
    arr = np.array(array, dtype=np_dtype(dtype))
    arr.setflags(write=False)
    return Value(name, TensorType(arr.shape, dtype), None, arr)


def _lower(bn: Node, names: Names) -> list[Node]:
    x, scale, bias, mean, var = bn.inputs
    out = bn.output
    shape = (1, x.shape[1]) + (1,) * (x.type.rank - 2)
    eps = bn.attrs["epsilon"]
    new: list[Node] = []
    if all(p.is_const for p in (scale, bias, mean, var)):
        inv = scale.const.astype(np.float64) / np.sqrt(var.const.astype(np.float64) + eps)
        shift = bias.const.astype(np.float64) - mean.const.astype(np.float64) * inv
        inv_c = _const(inv.reshape(shape), names.fresh(f"{bn.name}_inv"), x.dtype)
        shift_c = _const(shift.reshape(shape), names.fresh(f"{bn.name}_shift"), x.dtype)
        new.append(_node("mul", [x, inv_c], names.fresh(f"{bn.name}_scaled")))
        last = Node("add", [new[-1].output, shift_c], [out], {}, bn.name)
    else:
        def step(op, inputs, suffix, **attrs):
            new.append(_node(op, inputs, names.fresh(f"{bn.name}_{suffix}"), **attrs))
            return new[-1].output

        eps_c = constant(np.array(eps, dtype=np_dtype(x.dtype)), names.fresh(f"{bn.name}_eps"))
        inv = step("div", [scale, step("sqrt", [step("add", [var, eps_c], "var_eps")], "std")], "inv")
        centered = step("sub", [x, step("reshape", [mean], "mean_r", shape=shape)], "centered")
        scaled = step("mul", [centered, step("reshape", [inv], "inv_r", shape=shape)], "scaled")
        last = Node("add", [scaled, step("reshape", [bias], "bias_r", shape=shape)], [out], {}, bn.name)
    out.producer = last
    new.append(last)
    return new


def lower_batch_norm(graph: Graph) -> Graph:
    g = graph.copy()
    names = Names(g)
    nodes: list[Node] = []
    for n in g.nodes:
        nodes.extend(_lower(n, names) if n.op == "batch_norm" else [n])
    g.nodes = nodes
    return g


PASS = Pass("lower_batch_norm", 2, lower_batch_norm, "rewrite batch_norm as mul/add with folded constants")

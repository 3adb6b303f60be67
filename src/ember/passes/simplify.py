"""Algebraic simplification: remove operations that do nothing and merge ones that compose.

Exact rewrites only (the result is bit for bit the same):

* ``x * 1``, ``1 * x``, ``x / 1``                    -> ``x``
* ``x + 0``, ``0 + x``  for integers and bool; for floats only when the zero is ``-0.0``
  (``-0.0 + 0.0`` is ``+0.0``)
* ``x - 0``  for integers; for floats when the zero is ``+0.0``
* ``cast(x, to=dtype(x))``, ``reshape`` to the same shape, ``transpose`` by the identity,
  ``broadcast_to`` the same shape, ``clip`` without bounds, ``pad`` by zeros, one-operand
  ``concat``                                         -> ``x``
* ``reshape(reshape(x))``                            -> ``reshape(x)``
* ``transpose(transpose(x, p), q)``                  -> ``transpose(x, p o q)`` (or ``x``)
* ``pow(x, 2)`` for floats                           -> ``x * x``

``x * x`` is the correctly rounded square, which is what IEEE 754's ``pow`` asks for and what C
compilers make of ``pow(x, 2.0)`` with a literal exponent; a libm ``powf`` called with the
exponent as a run-time value is only faithful (glibc's misrounds about 0.04% of float32 inputs,
the exact squares that fall on a rounding midpoint, by one ulp).  Other integer exponents are
left alone: ``x * x * x`` rounds twice.

A removal only happens when the result has exactly the type of ``x`` (a ``1`` that broadcasts
``x`` to a larger shape is not a no-op) and when the removed value is not a graph output (its
name is the output's name).  Nodes that become unused are left for ``dead_code``.
"""

from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node, Value
from ..graph.types import is_float
from .base import Pass, resolve


def _const_all(v: Value, pred) -> bool:
    return v.is_const and v.const.size > 0 and bool(np.all(pred(v.const)))


def _is_one(v: Value) -> bool:
    return _const_all(v, lambda a: a == 1)


def _is_zero(v: Value, negative: bool | None) -> bool:
    """All zeros; for floats also with the given sign bit (None: any sign)."""
    if not _const_all(v, lambda a: a == 0):
        return False
    if negative is None or not is_float(v.dtype):
        return True
    return bool(np.all(np.signbit(v.const) == negative))


def _identity_of(n: Node) -> Value | None:
    """The input that ``n`` passes through unchanged, if it does."""
    op, ins, a = n.op, n.inputs, n.attrs
    if op == "mul":
        if _is_one(ins[1]):
            return ins[0]
        if _is_one(ins[0]):
            return ins[1]
    elif op == "div":
        if _is_one(ins[1]):
            return ins[0]
    elif op == "add":
        float_dt = is_float(n.output.dtype)
        if _is_zero(ins[1], True if float_dt else None):
            return ins[0]
        if _is_zero(ins[0], True if float_dt else None):
            return ins[1]
    elif op == "sub":
        if _is_zero(ins[1], False if is_float(n.output.dtype) else None):
            return ins[0]
    elif op == "cast":
        if a["to"] == ins[0].dtype:
            return ins[0]
    elif op in ("reshape", "broadcast_to"):
        # (a broadcast ordered after a bind_dims keeps that node, and its run-time checks, alive)
        if tuple(a["shape"]) == ins[0].type.shape and len(ins) == 1:
            return ins[0]
    elif op == "transpose":
        if tuple(a["perm"]) == tuple(range(len(a["perm"]))):
            return ins[0]
    elif op == "clip":
        if a["lo"] is None and a["hi"] is None:
            return ins[0]
    elif op == "pad":
        if not any(a["pads"]):
            return ins[0]
    elif op == "concat":
        if len(ins) == 1:
            return ins[0]
    return None


def _is_two(v: Value) -> bool:
    return _const_all(v, lambda a: a == 2)


def _square(n: Node) -> None:
    """Turn ``pow(x, 2)`` (floats, the 2 not broadcasting ``x``) into ``mul(x, x)`` (in place)."""
    if n.op != "pow" or not is_float(n.output.dtype) or not _is_two(n.inputs[1]):
        return
    x = n.inputs[0]
    if x.type == n.output.type:
        n.op, n.inputs = "mul", [x, x]


def _compose(n: Node) -> None:
    """Fold a reshape of a reshape, or a transpose of a transpose, into one node (in place)."""
    if n.op not in ("reshape", "transpose"):
        return
    inner = n.inputs[0].producer
    if inner is None or inner.op != n.op:
        return
    if n.op == "reshape":
        n.inputs = [inner.inputs[0]]
        if inner.attrs.get("checked"):      # counts equal by a run-time check stay checked
            n.attrs = {**n.attrs, "checked": True}
    else:
        p, q = inner.attrs["perm"], n.attrs["perm"]
        n.inputs = [inner.inputs[0]]
        n.attrs = {**n.attrs, "perm": tuple(p[k] for k in q)}


def simplify(graph: Graph) -> Graph:
    g = graph.copy()
    protected = set(g.outputs)
    subst: dict[Value, Value] = {}
    nodes = []
    for n in g.nodes:
        n.inputs = [resolve(subst, v) for v in n.inputs]
        if len(n.outputs) == 1:
            _compose(n)
            _square(n)
            x = _identity_of(n)
            if x is not None and x.type == n.output.type and n.output not in protected:
                subst[n.output] = x
                continue
        nodes.append(n)
    g.nodes = nodes
    g.outputs = [resolve(subst, v) for v in g.outputs]
    return g


PASS = Pass("simplify", 2, simplify, "remove no-op arithmetic and layout ops; merge reshape/transpose chains; pow(x, 2) -> x * x")

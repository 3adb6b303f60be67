"""Constant folding: a node whose inputs are all constants becomes a constant.

The value is computed with the op's numpy reference, so the folded graph computes bit for bit
what the reference interpreter computes.  A node is left alone when folding would trade a cheap
computation for a huge constant (``broadcast_to`` of a scalar to millions of elements, a large
``pad`` of a small tensor): those are cheaper to compute at run time than to store.  Nor does a
result that outweighs its inputs grow past the resource policy's ``fold_bytes``
(``ember.limits.may_fold``), so no model can make folding allocate without bound.

A ``bind_dims`` node whose input became a constant binds its symbols here: they become numbers
in the types and attributes of every later node (which may then fold in turn), so a model whose
data-decided shapes are known at compile time is a static model.
"""

from __future__ import annotations

import numpy as np

from .. import limits
from ..graph.ir import Graph, Node, Value, map_dims
from ..graph.types import TensorType, np_dtype
from ..symbolic import Sym
from .base import Names, Pass, resolve

#: A result of more elements than this is folded only if it is not much larger than its inputs.
MAX_EXPANDED_ELEMENTS = 1 << 20
#: ... where "much larger" means more than this many times the elements of all inputs together.
MAX_EXPANSION = 4


def _worth_folding(n: Node) -> bool:
    if not n.inputs or not all(o.type.is_static for o in n.outputs):
        return False
    if not limits.may_fold(sum(o.type.nbytes for o in n.outputs),
                           sum({v.uid: v.const.nbytes for v in n.inputs}.values())):
        return False
    out = sum(o.type.size for o in n.outputs)
    if out <= MAX_EXPANDED_ELEMENTS:
        return True
    return out <= MAX_EXPANSION * sum(v.const.size for v in n.inputs)


def _fold(n: Node) -> list[Value] | None:
    from ..ops import get_op

    try:
        with np.errstate(all="ignore"):
            arrays = get_op(n.op).run_reference(n.attrs, [v.const for v in n.inputs])
    except Exception:  # noqa: BLE001 - the op rejects these constants: leave it for run time to report
        return None
    if len(arrays) != len(n.outputs):
        return None
    folded = []
    for o, arr in zip(n.outputs, arrays):
        arr = np.array(arr, dtype=np_dtype(o.dtype))  # a private copy: never a view of an input
        if arr.shape != o.type.shape:
            return None
        arr.setflags(write=False)
        folded.append(Value(o.name, o.type, None, arr))
    return folded


def inline_body(body: Graph, operands: list[Value], names: Names, prefix: str) -> tuple[list[Node], list[Value]]:
    """The nodes of a copy of ``body`` reading ``operands`` for its inputs, with fresh names
    (``prefix/...``), and the values of its outputs."""
    b = body.copy()
    vmap = dict(zip(b.inputs, operands))
    same = {n: bool(n.outputs) and n.name == n.outputs[0].name for n in b.nodes}
    for v in b.values():
        if v not in vmap:
            v.name = names.fresh(f"{prefix}/{v.name}")
    for n in b.nodes:
        n.inputs = [vmap.get(v, v) for v in n.inputs]
        n.name = n.outputs[0].name if same[n] else names.fresh(f"{prefix}/{n.name}")
    return b.nodes, [vmap.get(v, v) for v in b.outputs]


def _fold_region(n: Node, names: Names) -> tuple[list[Node], list[Value]] | None:
    """An ``if`` whose condition is a constant: the nodes of its branch and their outputs.  A
    ``loop`` that a constant condition or trip count stops before its first iteration: its
    initial carried values (and empty scan outputs)."""
    if n.op == "if" and n.inputs[0].is_const:
        taken = "then_branch" if bool(n.inputs[0].const.reshape(())) else "else_branch"
        return inline_body(n.attrs[taken], list(n.inputs[1:]), names, n.name)
    if n.op == "loop":
        m, c = n.inputs[0], n.inputs[1]
        if (m.is_const and int(m.const.reshape(())) <= 0) or (c.is_const and not bool(c.const.reshape(()))):
            k = n.attrs["num_carried"]
            scans = n.outputs[k:len(n.outputs) - bool(n.attrs.get("counted"))]
            if any(not o.type.is_static or (o.type.shape[0] != 0 and not n.attrs.get("counted")) for o in scans):
                return None
            count = [Value(n.outputs[-1].name, n.outputs[-1].type, None, np.array(0, np.int64))] \
                if n.attrs.get("counted") else []
            return [], list(n.inputs[2:2 + k]) + [
                Value(o.name, o.type, None, np.zeros(o.type.shape, np_dtype(o.dtype))) for o in scans] + count
    return None


def fold_constants(graph: Graph) -> Graph:
    """Replace every node whose inputs are all constants (and is worth it) by constants; inline
    the branch an ``if`` with a constant condition takes."""
    g = graph.copy()
    subst: dict[Value, Value] = {}
    bound: dict[str, int] = {}        # data symbols bound by constants
    nodes = []
    names: Names | None = None
    work = list(reversed(g.nodes))
    while work:
        n = work.pop()
        n.inputs = [resolve(subst, v) for v in n.inputs]
        if bound:
            _substitute(n, bound)
        if n.op == "bind_dims" and n.inputs[0].is_const:
            values = _constant_binding(n)
            if values is not None:
                bound.update(values)
                subst[n.outputs[0]] = n.inputs[0]
                continue
        if n.op in ("if", "loop"):
            names = names or Names(g)
            done = _fold_region(n, names)
            if done is not None:
                inner, outs = done
                if n.op == "if":       # what the branch taken needs, checked before the run
                    taken = n.attrs["then_branch" if bool(n.inputs[0].const.reshape(())) else "else_branch"]
                    g.checks += [c for c in taken.checks if c not in g.checks]
                subst.update(zip(n.outputs, outs))
                work.extend(reversed(inner))
            else:
                nodes.append(n)
            continue     # a loop over constants still runs at run time (it may run long)
        if all(v.is_const for v in n.inputs) and _worth_folding(n):
            folded = _fold(n)
            if folded is not None:
                subst.update(zip(n.outputs, folded))
                continue
        nodes.append(n)
    g.nodes = nodes
    g.outputs = [resolve(subst, v) for v in g.outputs]
    for name in bound:
        g.bounds.pop(name, None)
        g.hints.pop(name, None)
    return g


def _constant_binding(n: Node) -> dict[str, int] | None:
    """The values a ``bind_dims`` node of a constant gives its symbols; None when they are
    invalid (left for the run to report) or its element-count check needs input symbols."""
    from ..errors import EmberError
    from ..ops.dynamic import check_values

    if isinstance(n.attrs["numel"], Sym):
        return None
    try:
        return check_values(n.attrs, n.inputs[0].const, {})
    except EmberError:
        return None


def _substitute(n: Node, env: dict[str, int]) -> None:
    """Symbols of ``env`` replaced by their values in node ``n``'s attributes and output types."""
    def go(x):
        return map_dims(x, lambda d: d.substitute(env))

    n.attrs = {k: go(v) for k, v in n.attrs.items()}
    for o in n.outputs:
        if o.type.symbols & env.keys():
            o.type = TensorType(go(tuple(o.shape)), o.dtype)


PASS = Pass("fold_constants", 1, fold_constants, "evaluate nodes whose inputs are all constants")

"""Fuse scaled dot-product attention into one ``attention`` node.

The chain a transformer's attention becomes in the graph::

    s = matmul(q, kt)                      # kt: the keys, transposed
    s = mul(s, c) | mul(c, s) | div(s, c)  # optional: a scalar constant scale
    s = add(s, bias) | add(bias, s)        # optional: an additive mask (BERT's padding)
      | where(mask, fill, s) | where(mask, s, fill)   # or a filled one (GPT-2's causal mask)
    p = softmax(s, axis=-1)
    out = matmul(p, v)

becomes ``attention(q, kt, v[, bias | mask])`` with the scale, mask kind and fill value as
attributes, so the [Lq, Lk] score matrix is never written to memory (see ``ops.nn.Attention``).
Only where every intermediate value has that one reader and is not a graph output, and the
shapes are static (the kernel plans its row buffer from them).  When two vectors do not divide
Lk, ``kt`` gets zero columns up to a multiple of them (a ``pad`` that runs in the kernel that
transposes the keys) and ``keys=Lk``, so the logits' register tiles need no tail.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Node, Value
from ..graph.types import broadcast_shapes
from .base import Pass


@dataclass
class _Match:
    q: Value
    kt: Value
    v: Value
    mask: Value | None
    attrs: dict
    chain: list[Node]          # the nodes the attention node replaces, the last matmul excluded


def _scalar(v: Value) -> float | None:
    if v.is_const and v.const.size == 1 and v.dtype in ("float32", "float64"):
        return float(v.const.ravel()[0])
    return None


def _static(*vs: Value) -> bool:
    return all(isinstance(d, int) for v in vs for d in v.shape)


def match(out: Node, users: dict, protected: set) -> _Match | None:
    """The attention chain that ends in the matmul ``out``, if there is one."""
    if out.op != "matmul":
        return None

    def sole(v: Value, reader: Node) -> Node | None:
        """The producer of ``v`` when ``reader`` is its only reader."""
        if v.producer is None or v in protected or users.get(v, []) != [reader]:
            return None
        return v.producer

    p, v = out.inputs
    sm = sole(p, out)
    if sm is None or sm.op != "softmax" or sm.attrs["log"] or sm.attrs["axis"] % p.type.rank != p.type.rank - 1:
        return None
    chain = [sm]
    attrs = {"scale": 1.0, "mask": "none", "fill": 0.0, "fill_when": True, "keys": 0}
    mask = None
    node, x = sole(sm.inputs[0], sm), sm.inputs[0]
    if node is not None and node.op == "add":
        for s_in, bias in (node.inputs, node.inputs[::-1]):
            src = sole(s_in, node)
            if src is not None and src.op in ("mul", "div", "matmul") and s_in.type == x.type \
                    and bias.dtype == x.dtype and broadcast_shapes(bias.shape, x.shape) == x.shape:
                attrs["mask"], mask = "add", bias
                chain.append(node)
                node, x = src, s_in
                break
    elif node is not None and node.op == "where":
        c, a, b = node.inputs
        fa, fb = _scalar(a), _scalar(b)
        s_in, fill, when = (b, fa, True) if fa is not None and fb is None else (a, fb, False)
        if fill is not None and s_in.type == x.type and broadcast_shapes(c.shape, x.shape) == x.shape:
            attrs.update(mask="fill", fill=fill, fill_when=when)
            mask = c
            chain.append(node)
            node, x = sole(s_in, node), s_in
    if node is not None and node.op in ("mul", "div"):
        a, b = node.inputs
        k = _scalar(b)
        other = a
        if k is None and node.op == "mul":
            k, other = _scalar(a), b
        if k is not None and other.type == x.type and (node.op == "mul" or k != 0):
            attrs["scale"] = k if node.op == "mul" else 1.0 / k
            chain.append(node)
            node, x = sole(other, node), other
    if node is None or node.op != "matmul":
        return None
    chain.append(node)
    q, kt = node.inputs
    if q.dtype not in ("float32", "float64") or not _static(q, kt, v) or min(q.type.rank, kt.type.rank, v.type.rank) < 2:
        return None
    return _Match(q, kt, v, mask, attrs, chain)


def run(graph: Graph, lanes: int = 8) -> Graph:
    g = graph.copy()
    users = g.users()
    protected = set(g.outputs)
    found: dict[Node, _Match] = {}
    dropped: set[Node] = set()
    for node in g.nodes:
        m = match(node, users, protected)
        if m is not None and not dropped.intersection(m.chain):
            found[node] = m
            dropped.update(m.chain)
    if not found:
        return g
    b = GraphBuilder.rewriting(g)
    vmap: dict[Value, Value] = {}
    for node in g.nodes:
        if node in dropped:
            continue
        m = found.get(node)
        if m is None:
            node.inputs = [vmap.get(v, v) for v in node.inputs]
            b.add_node(node)
            continue
        q, kt, v = (vmap.get(x, x) for x in (m.q, m.kt, m.v))
        lk = kt.shape[-1]
        width = 2 * lanes
        if lk % width and lk > width:
            pads = [0] * (2 * kt.type.rank)
            pads[kt.type.rank + kt.type.rank - 1] = -lk % width
            kt = b.op("pad", [kt], name=f"{node.name}_keys_pad", pads=tuple(pads), mode="constant", value=0.0)
            m.attrs["keys"] = lk
        ins = [q, kt, v] + ([vmap.get(m.mask, m.mask)] if m.mask is not None else [])
        vmap[node.output] = b.op("attention", ins, name=node.name, **m.attrs)
    return b.finish([vmap.get(v, v) for v in g.outputs])


PASS = Pass("fuse_attention", 3, run)

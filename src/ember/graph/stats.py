"""Static cost of a graph: floating-point operations and parameter counts.

The counts follow the usual conventions, so they can be compared with the numbers other tools
and papers publish:

* ``conv2d`` (and ``conv2d_int``): one multiply and one add per kernel tap,
  ``2*N*O*OH*OW*(C/groups)*KH*KW``;
* ``matmul`` (and ``matmul_int``): ``2*batch*M*N*K``;
* the forms the layout passes give them (``conv2d_packed``, ``conv2d_nchwc``, ``matmul_packed``)
  count as the op they pack; the fused ``attention``: its two matrix products and a softmax
  over the ``[..., Lq, Lk]`` logits;
* pooling: one operation per element of every window;
* other reductions (``reduce_*``, ``argmax``...): one operation per input element;
* elementwise and broadcasting ops: one operation per output element;
* ops that only move data (reshape, transpose, slice, concat, gather, ...): none;
* softmax, layer_norm and batch_norm: a small fixed number of operations per element.

Symbolic dimensions must be given a size through ``dims``; any symbol left unbound raises a
:class:`~ember.errors.ShapeError` that names it.
"""

from __future__ import annotations

from typing import Mapping

from ..symbolic import SymbolicError
from ..errors import ShapeError
from .ir import Graph, Node
from .types import Dim, np_dtype

# Operations per element for the compound ops, counted on their numpy definition.
_PER_ELEMENT = {
    "softmax": 5,      # max, subtract, exp, sum, divide
    "layer_norm": 8,   # mean, subtract, square, mean, add eps + rsqrt, multiply, scale, shift
    "batch_norm": 4,   # subtract mean, multiply by rsqrt(var + eps), scale, shift
}

_POOLS = ("max_pool2d", "avg_pool2d")


def count_flops(graph: Graph, dims: Mapping[str, int] | None = None) -> int:
    """Floating-point (and integer) operations of one run of ``graph``; see the module doc."""
    dims = dict(dims or {})
    return sum(node_flops(n, dims) for n in graph.nodes)


def count_params(graph: Graph) -> tuple[int, int]:
    """(number of elements, bytes) of the constants the graph uses."""
    count = nbytes = 0
    for v in graph.constants():
        count += int(v.const.size)
        nbytes += int(v.const.size) * np_dtype(v.dtype).itemsize
    return count, nbytes


def node_flops(node: Node, dims: Mapping[str, int] | None = None) -> int:
    """Operations of one node (see the module doc for the conventions)."""
    from ..ops import Pattern, OPS

    dims = dims or {}

    def numel(shape: tuple[Dim, ...]) -> int:
        n = 1
        for d in shape:
            n *= _bind(d, dims, node)
        return n

    op = node.op
    out = node.outputs[0].shape
    if op in ("conv2d", "conv2d_int"):
        _, ci, kh, kw = node.inputs[1].shape
        return 2 * numel(out) * numel((ci, kh, kw))
    if op == "conv2d_packed":          # weight [O/ob, C/groups, KH, KW, ob]
        _, ci, kh, kw, _ = node.inputs[1].shape
        return 2 * numel(out) * numel((ci, kh, kw))
    if op == "conv2d_nchwc":           # weight [O/ob, C/cb, KH, KW, cb, ob]; depthwise: cb = 1
        _, cblk, kh, kw, cb, _ = node.inputs[1].shape
        return 2 * numel(out) * numel((cblk, kh, kw, cb))
    if op in ("matmul", "matmul_int", "matmul_packed"):
        return 2 * numel(out) * _bind(node.inputs[0].shape[-1], dims, node)
    if op == "attention":              # q [..., Lq, D] @ kt [..., D, Lk], then [..., Lq, Lk] @ v [..., Lk, Dv]
        lk = _bind(node.attrs.get("keys") or node.inputs[1].shape[-1], dims, node)
        rows = numel(out) // max(1, _bind(out[-1], dims, node))
        d, dv = _bind(node.inputs[0].shape[-1], dims, node), _bind(out[-1], dims, node)
        return rows * lk * (2 * d + 2 * dv + _PER_ELEMENT["softmax"])
    if op in _POOLS:
        kh, kw = node.attrs["kernel"]
        return numel(out) * kh * kw
    if op in _PER_ELEMENT:
        return _PER_ELEMENT[op] * numel(out)
    opdef = OPS.get(op)
    pattern = opdef.pattern if opdef is not None else Pattern.ELEMWISE
    if pattern == Pattern.INJECTIVE:
        return 0
    if pattern == Pattern.REDUCTION:
        return numel(node.inputs[0].shape)
    return sum(numel(o.shape) for o in node.outputs)


def _bind(d: Dim, dims: Mapping[str, int], node: Node) -> int:
    if isinstance(d, int):
        return d
    try:
        return d.evaluate(dims)
    except SymbolicError:
        raise ShapeError(f"cannot count operations: dimension '{d}' is symbolic; give its symbols a size",
                         node=node.name, op=node.op) from None

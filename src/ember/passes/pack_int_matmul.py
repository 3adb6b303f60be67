"""Integer matrix products with a constant weight on the target's 8-bit dot products.

``matmul_int(x, w)`` with uint8 activations and a constant 2-D weight becomes
``matmul_int_packed`` (``ember.ops.quant``): the weight packed at compile time as int8 panels
[N/nb, K/4, nb, 4] (nb = one or two vectors of int32 lanes; the reduction padded with zeros to
whole groups of four, the last panel with zero columns), four products per instruction:

* ``saturate_pairs`` (x86 without VNNI, uint8 x int8 as onnxruntime's kernels there):
  ``dot4_sat16``, x86's 8-bit multiply-add, whose pairs saturate exactly as the op asks;
* otherwise, where the target has an exact uint8 x int8 dot product (``Target.int8_dot``:
  VNNI's ``vpdpbusd``, ARM's dot products): ``dot4``;
* otherwise, on x86 without VNNI (``Target.int8_pairs_saturate``, AVX2 or AVX-512 vectors):
  ``pairs="split"``, the int8 weight split into two halves of magnitude at most 64 that add up
  to it, each summed by the multiply-add, whose pairs then never leave int16: the exact sum at
  two multiply-adds per four products (instead of four widenings and 32-bit multiplies).

A uint8 weight (onnxruntime's dynamically quantized models) is stored as ``w - 128`` in int8,
and the exact correction ``128 * rowsum(x)`` added back (a reduction over K of the activations,
a small kernel of its own, added in the product's epilogue): the sum is the exact one, as the
op asks (a uint8 x uint8 product never saturates pairs).

Int8 activations (a QDQ model's int8 tensor read by several nodes, which ``qdq_to_integer``
leaves int8 as onnxruntime does; MatMulInteger of int8 operands) whose sum is exact are shifted
to uint8, ``x + 128`` (an elementwise kernel over the activations, M x K bytes against the
product's M x K x N), and the exact correction ``-128 * colsum(w)``, a constant per column,
added in the epilogue: ``x @ w = (x + 128) @ w - 128 * colsum(w)``, bit for bit, on the
``exact`` or ``split`` sums above (with a uint8 weight both corrections apply).  Saturating
pairs of int8 activations are left alone (x86's multiply-add takes the unsigned operand on
the activation side; no frontend asks for them), and so is every product on a target with
none of these instructions.
"""

from __future__ import annotations

import numpy as np

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Node, Value, constant
from ..ops.quant import MatMulIntPacked
from .base import Pass

#: the offset a uint8 weight is stored with (``w - 128`` is an int8)
UINT8_OFFSET = 128


def panel_width(n: int, lanes: int) -> int:
    """Columns per packed panel: two vectors of int32 lanes, one for a narrow product."""
    return lanes if n <= lanes else 2 * lanes


def _pairs(node: Node, lanes: int, int8_dot: bool, multiply_add: bool) -> str | None:
    """How ``node``'s products are gathered in fours (None: leave it as it is)."""
    x, w = node.inputs
    if not w.is_const or lanes < 4:
        return None
    if sum(d != 1 for d in w.shape[:-2]) or not isinstance(x.shape[-1], int):
        return None                              # a batched weight; a symbolic reduction
    if node.attrs["saturate_pairs"]:
        # x86's multiply-add without VNNI: uint8 x int8 only (the frontends ask for nothing else)
        return "saturate" if x.dtype == "uint8" and w.dtype == "int8" and lanes >= 8 else None
    if int8_dot:
        return "exact"
    return "split" if multiply_add and lanes >= 8 else None


def run(graph: Graph, lanes: int = 8, int8_dot: bool = False, multiply_add: bool = False) -> Graph:
    """``graph`` with its integer products of constant weights on packed weights (module doc);
    ``int8_dot``: the target has an exact uint8 x int8 dot product of four; ``multiply_add``:
    x86's saturating 8-bit multiply-add is its fast one (``Target.int8_pairs_saturate``)."""
    if not any(n.op == "matmul_int" and _pairs(n, lanes, int8_dot, multiply_add) for n in graph.nodes):
        return graph
    g = graph.copy()
    b = GraphBuilder.rewriting(g)
    vmap: dict[Value, Value] = {}
    packed: dict[tuple, Value] = {}
    unsigned: dict[Value, Value] = {}            # int8 activations -> their uint8 shift

    def m(v: Value) -> Value:
        return vmap.get(v, v)

    for node in g.nodes:
        node.inputs = [m(v) for v in node.inputs]
        pairs = _pairs(node, lanes, int8_dot, multiply_add) if node.op == "matmul_int" else None
        if pairs is None:
            b.add_node(node)
            continue
        x, w = node.inputs
        k, n = w.shape[-2:]
        wc = w.const.reshape(k, n)
        shifted = wc.dtype == np.uint8
        signed_x = x.dtype == "int8"
        if signed_x:                             # x + 128 as uint8, once for all its products
            if x not in unsigned:
                x16 = b.op("cast", [x], name=f"{node.name}_x16", to="int16")
                offset = constant(np.array(UINT8_OFFSET, np.int16), f"{node.name}_x_offset")
                unsigned[x] = b.op("cast", [b.op("add", [x16, offset], name=f"{node.name}_x_shift")],
                                   name=f"{node.name}_xu8", to="uint8")
            x = unsigned[x]
        nb = panel_width(n, lanes)
        key = (w, nb, pairs == "split")
        if key not in packed:
            w8 = (wc.astype(np.int16) - UINT8_OFFSET).astype(np.int8) if shifted else wc
            if pairs == "split":
                w8 = MatMulIntPacked.split(w8)
            others = sum(pk[0] is w for pk in packed)          # the same weight packed another way
            packed[key] = constant(MatMulIntPacked.pack(w8, nb), f"{w.name}_packed_int{others or ''}")
        xin = x
        if k % 4:
            rank = x.type.rank
            pads = [0] * (2 * rank)
            pads[2 * rank - 1] = -k % 4
            xin = b.op("pad", [x], name=f"{node.name}_kpad", pads=tuple(pads), mode="constant", value=0)
        lead = tuple(x.shape[:-2])
        wlead = tuple(w.shape[:-2])
        if len(wlead) > len(lead):               # a weight of leading 1s adds batch dims of 1
            xin = b.op("reshape", [xin], name=f"{node.name}_batch",
                       shape=(1,) * (len(wlead) - len(lead)) + tuple(xin.shape))
        out = b.op("matmul_int_packed", [xin, packed[key]], name=node.name, n=n, pairs=pairs)
        if shifted:
            x32 = b.op("cast", [x], name=f"{node.name}_x32", to="int32")
            rowsum = b.op("reduce_sum", [x32], name=f"{node.name}_rowsum", axes=(-1,), keepdims=True)
            corr = b.op("mul", [rowsum, constant(np.array(UINT8_OFFSET, np.int32), f"{node.name}_offset")],
                        name=f"{node.name}_offset_rowsum")
            out = b.op("add", [out, corr], name=f"{node.name}_unshift")
        if signed_x:
            colsum = -UINT8_OFFSET * wc.astype(np.int64).sum(axis=0)
            out = b.op("add", [out, constant(colsum.astype(np.int32), f"{node.name}_x_colsum")],
                       name=f"{node.name}_x_unshift")
        vmap[node.output] = out
    return b.finish([m(v) for v in g.outputs])


PASS = Pass("pack_int_matmul", 3, lambda g: run(g))

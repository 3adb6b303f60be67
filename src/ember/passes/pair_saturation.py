"""Pair saturation where the target computes it, exact sums elsewhere.

``conv2d_int`` and ``matmul_int`` with ``saturate_pairs`` (``ember.ops.quant``) ask for the sum
that x86's 8-bit multiply-add without VNNI computes (``vpmaddubsw``: pairs of uint8 x int8
products clamped to int16): the frontends and ``qdq_to_integer`` set it where onnxruntime's
kernel uses that instruction, so that the two agree bit for bit.  On a CPU with VNNI
(``vpdpbusd``) or on ARM (``udot``/``sdot``, ``smlal``) the same kernels of onnxruntime sum the
products exactly, and so does Ember compiled for such a target: this pass clears the flag there.
It runs first among the target's passes, before the layout pass packs the weights for the one
or the other sum.
"""

from __future__ import annotations

from ..graph.ir import Graph

#: the ops whose sums may saturate in pairs
PRODUCTS = ("conv2d_int", "matmul_int")


def run(graph: Graph, saturate: bool) -> Graph:
    """``graph`` with exact sums in every integer product when ``saturate`` is false (the
    target's 8-bit multiply-add is exact: ``Target.int8_pairs_saturate``); else unchanged."""
    if saturate or not any(n.op in PRODUCTS and n.attrs.get("saturate_pairs") for n in graph.nodes):
        return graph
    g = graph.copy()
    for node in g.nodes:
        if node.op in PRODUCTS and node.attrs.get("saturate_pairs"):
            node.attrs["saturate_pairs"] = False
    return g

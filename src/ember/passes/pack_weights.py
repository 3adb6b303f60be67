"""Prepare convolutions and matrix products for the CPU schedules.

* A convolution's pads become their own ``pad`` node, and its constant weight is pre-packed at
  compile time into the blocked layout of ``conv2d_packed`` ([O/ob, C/g, KH, KW, ob]), so the
  output channels of one register tile are contiguous.
* A matmul with a constant right operand becomes ``matmul_packed`` with the weight stored as
  column panels [..., N/nb, K, nb] (one set per batch index of a batched weight, such as the
  transformed filters of a Winograd convolution): the micro-kernel then streams one contiguous
  panel.
"""

from __future__ import annotations

from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value, constant
from ..ops import get_op
from .base import Pass


def output_block(out_channels: int, groups: int, in_per_group: int) -> int:
    """Output channels per register tile (0: leave unpacked)."""
    if groups > 1 and in_per_group == 1:
        return 0                       # depthwise: vectorized over width instead
    opg = out_channels // groups
    for ob in (16, 8):
        if opg % ob == 0:
            return ob
    return 0


def panel_width(w: Value, lanes: int) -> int:
    """Columns per packed panel of a matmul's right operand (0: leave it as it is)."""
    if not w.is_const or w.dtype != "float32" or w.type.rank < 2:
        return 0
    n = w.shape[-1]
    if n < lanes:
        return 0
    # two vectors per panel unless one vector divides N and two do not; otherwise the last
    # panel is zero-padded
    return lanes if n % (2 * lanes) and n % lanes == 0 else 2 * lanes


def run(graph: Graph, lanes: int = 8) -> Graph:
    g = graph.copy()
    b = GraphBuilder.rewriting(g)
    vmap: dict[Value, Value] = {}
    packed: dict[tuple, Value] = {}     # one packed copy of a weight that several nodes read

    def m(v: Value) -> Value:
        return vmap.get(v, v)

    def pack_once(w: Value, op: str, data, block: int) -> Value:
        key = (w, op, block, data.shape)
        if key not in packed:
            others = sum(k[0] is w for k in packed)     # the same weight packed another way
            name = f"{w.name}_packed{others if others else ''}"
            packed[key] = constant(get_op(op).pack(data, block), name, owned=True)    # (made here)
        return packed[key]

    for node in g.nodes:
        if node.op == "matmul":
            x, w = (m(v) for v in node.inputs)
            nb = panel_width(w, lanes)
            if nb:
                wc = w.const
                while wc.ndim > max(2, x.type.rank) and wc.shape[0] == 1:   # broadcast anyway
                    wc = wc[0]
                wp = pack_once(w, "matmul_packed", wc, nb)
                vmap[node.output] = b.op("matmul_packed", [x, wp], name=node.name, n=w.shape[-1])
                continue
        if node.op != "conv2d":
            node.inputs = [m(v) for v in node.inputs]
            b.add_node(node)
            continue
        x, w = (m(v) for v in node.inputs)
        a = dict(node.attrs)
        if any(a["pads"]):
            t, l, bt, r = a["pads"]
            x = b.op("pad", [x], name=f"{node.name}_pad", pads=(0, 0, t, l, 0, 0, bt, r), mode="constant", value=0.0)
            a["pads"] = (0, 0, 0, 0)
        ob = output_block(w.shape[0], a["groups"], w.shape[1]) if w.is_const and x.dtype == "float32" else 0
        if ob:
            wp = pack_once(w, "conv2d_packed", w.const, ob)
            out = b.op("conv2d_packed", [x, wp], name=node.name, **a)
        else:
            out = b.op("conv2d", [x, w], name=node.name, **a)
        vmap[node.output] = out
    return b.finish([m(v) for v in g.outputs])


PASS = Pass("pack_weights", 3, run)

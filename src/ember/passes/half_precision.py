"""Half precision for GPU targets (``-dtype=float16``): the graph's float32 tensors become float16.

Float32 constants (weights) are rounded to float16; each float32 input gets a ``cast`` to
float16 after it and each float32 output a ``cast`` back, so the model's interface keeps its
dtypes; casts to float32 inside the model cast to float16 instead; every node's types are then
inferred again.  The kernels store float16 and compute in float32 (the GPU code generator widens
each load; the te lowering accumulates half-precision reductions in float32).  A node whose op
cannot take float16 stops the pass with a CodegenError naming it.
"""

from __future__ import annotations

import numpy as np

from ..errors import CodegenError, EmberError
from ..graph.ir import Graph, Node, Value
from ..graph.types import TensorType
from .base import Names

HALF, FULL = "float16", "float32"


def _cast(x: Value, out: Value, to: str, name: str) -> Node:
    from ..ops import get_op

    node = Node("cast", [x], [out], get_op("cast").fill_attrs({"to": to}, name), name)
    out.producer = node
    return node


def to_half(graph: Graph) -> Graph:
    """A copy of ``graph`` computing in float16 where it computed in float32."""
    from ..ops import get_op

    g = graph.copy()
    names = Names(g)
    for v in g.values():
        if v.is_const and v.dtype == FULL:
            arr = v.const.astype(np.float16)
            arr.setflags(write=False)
            v.const, v.type = arr, TensorType(v.type.shape, HALF)
    head: list[Node] = []
    for k, v in enumerate(g.inputs):
        if v.dtype != FULL:
            continue
        outer = Value(v.name, v.type)          # the model's input keeps its name and dtype
        v.name = names.fresh(f"{v.name}_half")
        v.type = TensorType(v.type.shape, HALF)
        head.append(_cast(outer, v, HALF, names.fresh(f"{outer.name}_to_half")))
        g.inputs[k] = outer
    for node in g.nodes:
        if node.op == "cast" and node.attrs["to"] == FULL:
            node.attrs = dict(node.attrs, to=HALF)
        try:
            types = get_op(node.op).infer_types(node.attrs, [v.type for v in node.inputs], node.name)
        except EmberError as e:
            raise CodegenError(f"-dtype=float16: {node.op} node '{node.name}' does not take float16 "
                               f"operands ({str(e).split('] ', 1)[-1]})", node=node.name, op=node.op) from None
        for v, t in zip(node.outputs, types):
            v.type = t
    tail: list[Node] = []
    for k, v in enumerate(g.outputs):
        if v.dtype != HALF or graph.outputs[k].dtype != FULL:
            continue
        outer = Value(graph.outputs[k].name, TensorType(v.type.shape, FULL))
        if v.name == outer.name:
            v.name = names.fresh(f"{v.name}_half")
        tail.append(_cast(v, outer, FULL, names.fresh(f"{outer.name}_to_float")))
        g.outputs[k] = outer
    g.nodes = head + g.nodes + tail
    return g

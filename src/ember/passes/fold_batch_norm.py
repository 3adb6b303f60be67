"""Fold an inference batch norm into the convolution before it.

``batch_norm(conv2d(x, W), scale, bias, mean, var)`` with constant ``W`` and parameters becomes
``add(conv2d(x, W'), shift)`` where, per output channel ``c``,
``inv[c] = scale[c] / sqrt(var[c] + eps)``, ``W'[c] = W[c] * inv[c]`` and
``shift = bias - mean * inv`` as a ``[1, C, 1, 1]`` constant.  A bias addition between the two,
``batch_norm(add(conv2d(x, W), b))`` with constant ``b``, folds too: ``shift`` becomes
``(b - mean) * inv + bias``.

Only when the intermediate values have no other user and are not graph outputs (else the
unscaled convolution is still needed).  Batch norms that do not fold are left for
``lower_batch_norm``.
"""

from __future__ import annotations

import numpy as np

from ..graph.ir import Graph, Node, Value
from ..graph.types import TensorType, is_float, np_dtype
from .base import Names, Pass


def _only_user(v: Value, user: Node, users: dict, protected: set) -> bool:
    return v.producer is not None and v not in protected and users.get(v, []) == [user]


def _const(array: np.ndarray, name: str, dtype: str) -> Value:
    arr = np.array(array, dtype=np_dtype(dtype))
    arr.setflags(write=False)
    return Value(name, TensorType(arr.shape, dtype), None, arr)


def fold_batch_norm(graph: Graph) -> Graph:
    g = graph.copy()
    names = Names(g)
    users = g.users()
    protected = set(g.outputs)
    drop: set[Node] = set()
    folded: set[Node] = set()
    replace: dict[Node, Node] = {}
    for bn in g.nodes:
        if bn.op != "batch_norm":
            continue
        x, *params = bn.inputs
        if not is_float(x.dtype) or not all(p.is_const for p in params):
            continue
        src = x.producer
        bias_node = None
        if src is not None and src.op == "add" and _only_user(x, bn, users, protected):
            c = next((k for k, v in enumerate(src.inputs) if v.is_const), None)
            other = src.inputs[1 - c] if c is not None else None
            if other is not None and other.producer is not None and other.producer.op == "conv2d" \
                    and other.type == x.type:
                bias_node, src = src, other.producer
        if src is None or src.op != "conv2d" or src in folded:
            continue
        conv_out = src.output
        first_user = bias_node if bias_node is not None else bn
        if not _only_user(conv_out, first_user, users, protected) or not src.inputs[1].is_const:
            continue

        scale, bias, mean, var = (p.const.astype(np.float64) for p in params)
        inv = scale / np.sqrt(var + bn.attrs["epsilon"])
        w = src.inputs[1]
        channels = (1, -1, 1, 1)
        shift = (bias - mean * inv).reshape(channels)
        if bias_node is not None:
            b = next(v for v in bias_node.inputs if v.is_const).const.astype(np.float64)
            shift = (b - mean.reshape(channels)) * inv.reshape(channels) + bias.reshape(channels)
        new_w = _const(w.const.astype(np.float64) * inv.reshape(-1, 1, 1, 1), names.fresh(f"{w.name}_bn"), w.dtype)
        src.inputs = [src.inputs[0], new_w]
        shift_c = _const(shift, names.fresh(f"{bn.name}_shift"), x.dtype)
        add = Node("add", [conv_out, shift_c], [bn.output], {}, bn.name)
        bn.output.producer = add
        replace[bn] = add
        if bias_node is not None:
            drop.add(bias_node)
        folded.add(src)
    g.nodes = [replace.get(n, n) for n in g.nodes if n not in drop]
    return g


PASS = Pass("fold_batch_norm", 2, fold_batch_norm, "fold batch norms into the preceding conv2d")

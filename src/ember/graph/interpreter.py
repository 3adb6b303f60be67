"""The reference interpreter: runs a graph op by op with the numpy references.

It is the oracle of Ember's differential tests: every pass and every backend must agree with it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .ir import Graph, Value
from .types import np_dtype


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``graph`` on ``inputs`` (by name or in order); returns the outputs in order."""
    if not isinstance(inputs, Mapping):
        if len(inputs) != len(graph.inputs):
            raise InputError(f"graph '{graph.name}' takes {len(graph.inputs)} inputs, got {len(inputs)}")
        inputs = {v.name: a for v, a in zip(graph.inputs, inputs)}
    from ..ops import get_op

    env: dict[Value, np.ndarray] = {}
    for v in graph.inputs:
        if v.name not in inputs:
            raise InputError(f"missing input '{v.name}' ({v.type})")
        env[v] = np.asarray(inputs[v.name], dtype=np_dtype(v.dtype))

    def get(v: Value) -> np.ndarray:
        if v.is_const:
            return v.const
        return env[v]

    for node in graph.nodes:
        outs = get_op(node.op).run_reference(node.attrs, [get(v) for v in node.inputs])
        for v, arr in zip(node.outputs, outs):
            env[v] = np.asarray(arr)
    return [get(v) for v in graph.outputs]

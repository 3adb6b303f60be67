"""The reference interpreter: runs a graph op by op with the numpy references.

It is the oracle of Ember's differential tests: every pass and every backend must agree with it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .ir import Graph, Value
from ..symbolic import Sym, SymbolicError, bind
from .types import np_dtype


def concrete_attrs(attrs: dict, sizes: Mapping[str, int]) -> dict:
    """Attributes with every symbolic dimension replaced by its value under ``sizes``."""
    def go(x):
        if isinstance(x, Sym):
            return x.evaluate(sizes)
        if isinstance(x, tuple):
            return tuple(go(y) for y in x)
        return x
    return {k: go(v) for k, v in attrs.items()}


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``graph`` on ``inputs`` (by name or in order); returns the outputs in order.
    Symbolic dimensions take their values from the inputs' shapes."""
    if not isinstance(inputs, Mapping):
        if len(inputs) != len(graph.inputs):
            raise InputError(f"graph '{graph.name}' takes {len(graph.inputs)} inputs, got {len(inputs)}")
        inputs = {v.name: a for v, a in zip(graph.inputs, inputs)}
    from ..ops import get_op

    env: dict[Value, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for v in graph.inputs:
        if v.name not in inputs:
            raise InputError(f"missing input '{v.name}' ({v.type})")
        env[v] = np.asarray(inputs[v.name], dtype=np_dtype(v.dtype))
        if not v.type.is_static:
            try:
                bind(v.shape, env[v].shape, sizes, f"input '{v.name}' ({v.type})")
            except SymbolicError as e:
                raise InputError(str(e)) from None

    def get(v: Value) -> np.ndarray:
        if v.is_const:
            return v.const
        return env[v]

    for node in graph.nodes:
        attrs = concrete_attrs(node.attrs, sizes) if sizes else node.attrs
        outs = get_op(node.op).run_reference(attrs, [get(v) for v in node.inputs])
        for v, arr in zip(node.outputs, outs):
            env[v] = np.asarray(arr)
    return [get(v) for v in graph.outputs]

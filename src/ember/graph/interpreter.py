"""The reference interpreter: runs a graph op by op with the numpy references.

It is the oracle of Ember's differential tests: every pass and every backend must agree with it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .. import limits
from ..errors import InputError
from .ir import Graph, Value, map_dims
from ..symbolic import SymbolicError, bind, evaluate, failed_check
from .types import np_dtype


def concrete_attrs(attrs: dict, sizes: Mapping[str, int]) -> dict:
    """Attributes with every symbolic dimension replaced by its value under ``sizes``."""
    return {k: map_dims(v, lambda d: d.evaluate(sizes)) for k, v in attrs.items()}


def _check_size(v: Value, sizes: Mapping[str, int], lim: "limits.Limits") -> None:
    """The resource policy before a node's output is computed: its size, from the symbols'
    values where it has any (those the data decides are only known once it is computed)."""
    t = v.type
    try:
        n = t.size if t.is_static else evaluate(t.num_elements, sizes)
    except (SymbolicError, KeyError):
        return
    nbytes = n * (8 if t.dtype == "string" else np_dtype(t.dtype).itemsize)
    if nbytes > lim.tensor_bytes:
        p = v.producer
        limits.check_tensor(nbytes, f"its output {t} with {sizes}" if sizes else f"its output {t}", runtime=True,
                            node=p.name if p else None, op=p.op if p else None, limits=lim)


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
              _sizes: Mapping[str, int] | None = None) -> list[np.ndarray]:
    """Evaluate ``graph`` on ``inputs`` (by name or in order); returns the outputs in order.
    Symbolic dimensions take their values from the inputs' shapes (and, for the body of a
    region op, from the enclosing graph's, ``_sizes``), and those the data decides from the
    values a ``bind_dims`` node binds.  Region ops (``if``, ``loop``) run their bodies here.
    Each node's outputs are
    checked against the resource policy (``ember.limits``) before they are computed: a tensor
    above ``tensor_bytes`` raises :class:`~ember.errors.RuntimeLimitError`."""
    if not isinstance(inputs, Mapping):
        if len(inputs) != len(graph.inputs):
            raise InputError(f"graph '{graph.name}' takes {len(graph.inputs)} inputs, got {len(inputs)}")
        inputs = {v.name: a for v, a in zip(graph.inputs, inputs)}
    from ..ops import get_op

    env: dict[Value, np.ndarray] = {}
    sizes: dict[str, int] = dict(_sizes or {})
    for v in graph.inputs:
        if v.name not in inputs and v.name in graph.defaults:
            inputs = {**inputs, v.name: graph.defaults[v.name]}
        if v.name not in inputs:
            raise InputError(f"missing input '{v.name}' ({v.type})")
        env[v] = np.asarray(inputs[v.name], dtype=np_dtype(v.dtype))
        if not v.type.is_static:
            try:
                bind(v.shape, env[v].shape, sizes, f"input '{v.name}' ({v.type})")
            except SymbolicError as e:
                raise InputError(str(e)) from None

    failed = failed_check(graph.checks, sizes) if graph.checks else None
    if failed:
        raise InputError(f"graph '{graph.name}': the input shapes fail a check of the model: {failed}")

    def get(v: Value) -> np.ndarray:
        if v.is_const:
            return v.const
        return env[v]

    lim = limits.current()
    for node in graph.nodes:
        for v in node.outputs:
            _check_size(v, sizes, lim)
        attrs = concrete_attrs(node.attrs, sizes) if sizes else node.attrs
        op = get_op(node.op)
        if op.region:
            outs = op.run(attrs, [get(v) for v in node.inputs],
                          lambda g, xs: run_graph(g, xs, sizes), sizes)
        else:
            outs = op.run_reference(attrs, [get(v) for v in node.inputs])
        if node.op == "bind_dims":           # symbols the data decides: known from here on
            from ..ops.dynamic import check_values

            sizes.update(check_values(attrs, outs[0], sizes, node.name))
        for v, arr in zip(node.outputs, outs):
            env[v] = np.asarray(arr)
    outs = [get(v) for v in graph.outputs]
    for k, axes in graph.squeezes.items():     # outputs whose rank the run decides
        outs[k] = squeeze_ones(outs[k], axes)
    return outs


def squeeze_ones(array: np.ndarray, axes) -> np.ndarray:
    """``array`` without those of ``axes`` whose size is 1 (``Graph.squeezes``)."""
    drop = tuple(a for a in axes if array.shape[a] == 1)
    return np.squeeze(array, axis=drop) if drop else array

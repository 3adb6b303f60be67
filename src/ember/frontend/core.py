"""What every frontend needs to build a graph: core ops emitted node by node, folded to constants
when all their inputs are constant.

A frontend translates one framework node at a time into core ops on a
:class:`~ember.graph.builder.GraphBuilder`.  :func:`emit` adds one core op, or, when every input
is a constant and the result is static and within the folding limit (``limits.may_fold``),
evaluates it with the op's numpy reference and returns constants instead, so that shape and
index computations over weights and static sizes never reach the graph.  :func:`dim_tensor`
turns a dimension (an ``int`` or a symbolic ``Sym``) into a scalar tensor, computed at run time
when it is symbolic.  :func:`elementwise_layout` and :func:`layout_operand` serve the frontends
of NHWC frameworks (TFLite, TensorFlow), whose tensors keep the layout their producer made.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import limits
from ..graph.builder import GraphBuilder
from ..graph.ir import Value
from ..graph.types import np_dtype
from ..ops import get_op


def emit(b: GraphBuilder, core: str, inputs: Sequence[Value], name: str, **attrs: Any) -> Any:
    """Core op ``core`` on ``inputs`` named ``name``: its value as constants when every input is
    constant (and the result static and small enough to fold), else a new node.  Returns one
    Value, or a tuple for multi-output ops."""
    inputs = list(inputs)
    if inputs and all(v.is_const for v in inputs):
        opdef = get_op(core)
        a = opdef.fill_attrs(attrs, name)
        types = opdef.infer_types(a, [v.type for v in inputs], name)
        if all(t.is_static for t in types) and limits.may_fold(
                sum(t.nbytes for t in types), sum({v.uid: v.const.nbytes for v in inputs}.values())):
            outs = opdef.run_reference(a, [v.const for v in inputs])
            vals = [b.const(np.asarray(o, dtype=np_dtype(t.dtype)).reshape(t.shape), name=name + "_const",
                            dtype=t.dtype)
                    for o, t in zip(outs, types)]
            return vals[0] if len(vals) == 1 else tuple(vals)
    return b.op(core, inputs, name=name, **attrs)


def dim_tensor(b: GraphBuilder, d: Any, name: str, dtype: str = "int64") -> Value:
    """Dimension ``d`` (an int or a symbolic dimension) as a rank-0 tensor of ``dtype``: a
    constant, or an ``arange`` of one element starting at ``d`` computed at run time."""
    if isinstance(d, (int, np.integer)):
        return b.const(np.array(int(d), dtype=np_dtype(dtype)), name=name + "_const", dtype=dtype)
    one = b.op("arange", [], name=name, length=1, start=d, delta=0, dtype=dtype)
    return b.op("reshape", [one], name=name, shape=())


def registrar(table: dict):
    """A decorator ``translates(*names)`` that enters a translation function into ``table``
    (a frontend's translation table) under each of the framework's op names."""
    def translates(*names):
        def deco(f):
            for n in names:
                table[n] = f
            return f
        return deco
    return translates


#: NHWC -> NCHW and back, as transpose permutations
TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


def elementwise_layout(cx, ks) -> str:
    """The layout an elementwise op over operands ``ks`` runs in, for a frontend whose tensors
    keep the layout their producer made: NCHW when a rank-4 operand already is and every other
    operand can follow it (a rank-4 tensor, or a constant of rank 4 or less), else NHWC.  ``cx``
    answers ``is_const(k)``, ``rank(k)`` and ``layout(k)``."""
    if not any(not cx.is_const(k) and cx.rank(k) == 4 and cx.layout(k) == "NCHW" for k in ks):
        return "NHWC"
    for k in ks:
        if cx.rank(k) > 4 if cx.is_const(k) else cx.rank(k) != 4:
            return "NHWC"
    return "NCHW"


def layout_operand(cx, k, layout: str) -> Value:
    """Operand ``k`` in ``layout``: a constant broadcast to rank 4 and transposed for NCHW."""
    if layout == "NCHW" and cx.is_const(k):
        a = np.asarray(cx.const(k))
        a = a.reshape((1,) * (4 - a.ndim) + a.shape).transpose(TO_NCHW)
        return cx.const_value(np.ascontiguousarray(a))
    return cx.get(k, layout)

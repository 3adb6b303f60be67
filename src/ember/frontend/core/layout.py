"""Layouts for the frontends of NHWC frameworks (TFLite, TensorFlow): their tensors keep the
layout their producer made, and an elementwise op runs in the one its operands already have.

:func:`elementwise_layout` picks that layout and :func:`layout_operand` gives an operand in it;
``cx`` is the frontend's node context, which answers ``is_const(k)``, ``rank(k)``,
``layout(k)``, ``const_input(k)``, ``const(array)`` and ``get(k, layout)``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...graph.builder import GraphBuilder
from ...graph.ir import Value

#: NHWC -> NCHW and back, as transpose permutations
TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


def elementwise_layout(cx, ks) -> str:
    """The layout an elementwise op over operands ``ks`` runs in: NCHW when a rank-4 operand
    already is and every other operand can follow it (a rank-4 tensor, or a constant of rank 4
    or less), else NHWC."""
    if not any(not cx.is_const(k) and cx.rank(k) == 4 and cx.layout(k) == "NCHW" for k in ks):
        return "NHWC"
    for k in ks:
        if cx.rank(k) > 4 if cx.is_const(k) else cx.rank(k) != 4:
            return "NHWC"
    return "NCHW"


def layout_operand(cx, k, layout: str) -> Value:
    """Operand ``k`` in ``layout``: a constant broadcast to rank 4 and transposed for NCHW."""
    if layout == "NCHW" and cx.is_const(k):
        a = np.asarray(cx.const_input(k))
        a = a.reshape((1,) * (4 - a.ndim) + a.shape).transpose(TO_NCHW)
        return cx.const(np.ascontiguousarray(a))
    return cx.get(k, layout)


# A tensor of these frameworks is held as ``vals``, a dict layout -> its value in that layout:
# the layout its producer made first, the other added when a consumer needs it.

def held_layout(vals: Mapping[str, Value]) -> str:
    """The layout a tensor is held in: NCHW when only that, else NHWC (the framework's)."""
    return "NCHW" if "NCHW" in vals and "NHWC" not in vals else "NHWC"


def framework_shape(vals: Mapping[str, Value]) -> tuple:
    """The tensor's shape in the framework's terms (NHWC for images)."""
    layout, v = next(iter(vals.items()))
    s = tuple(v.type.shape)
    return tuple(s[p] for p in TO_NHWC) if layout == "NCHW" else s


def in_layout(b: GraphBuilder, vals: dict[str, Value], layout: str, name: str) -> Value:
    """The tensor in ``layout``: as held, or transposed from the other layout by a node named
    ``name``, once (the transpose is kept in ``vals``)."""
    if layout not in vals:
        other = "NHWC" if layout == "NCHW" else "NCHW"
        vals[layout] = b.op("transpose", [vals[other]], name, perm=TO_NCHW if layout == "NCHW" else TO_NHWC)
    return vals[layout]

"""``bind_dims``: symbols whose values the data decides, bound during the run.

A *data symbol* is a dimension that only a tensor's values give (NonZero's count, the shape a
Reshape reads from an input).  ``bind_dims`` takes an int64 scalar or 1-D tensor and binds
symbol ``symbols[i]`` to its element ``i`` when it runs; it passes its input through, so every
node whose type mentions those symbols reads (directly or through other nodes) its output and
is ordered after it (the verifier checks that).  A value below 0 or above the symbol's limit
(``limits[i]``, -1 for none) is an error of the run, as is a product of the values other than
``numel`` when given (a Reshape's element count).  Constant folding of a constant input turns
the symbols into numbers (``passes.fold_constants``), so a static model never has one.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .. import te
from ..errors import DataShapeError
from ..graph.types import TensorType
from ..symbolic import Sym, evaluate, is_identifier
from .base import Op, Pattern, REQUIRED, register


@register
class BindDims(Op):
    name = "bind_dims"
    pattern = Pattern.OPAQUE           # always its own kernel: the entry binds after it
    attrs = {"symbols": REQUIRED, "limits": (), "numel": -1}

    def infer(self, a, x):
        syms = a["symbols"]
        if not isinstance(syms, tuple) or not syms or not all(isinstance(s, str) and is_identifier(s) for s in syms):
            raise self.fail(f"symbols must be a non-empty list of identifiers, got {syms!r}")
        if len(set(syms)) != len(syms):
            raise self.fail(f"symbols {list(syms)} name one symbol twice")
        if a["limits"] and len(a["limits"]) != len(syms):
            raise self.fail(f"limits {list(a['limits'])} must give one limit per symbol {list(syms)}")
        if x.dtype != "int64" or x.rank > 1 or not x.is_static:
            raise self.fail(f"binds from an int64 scalar or 1-D tensor of static size, got {x}")
        if x.size != len(syms):
            raise self.fail(f"{x} holds {x.size} values for the {len(syms)} symbols {list(syms)}")
        numel = a["numel"]
        if isinstance(numel, Sym) and numel.symbols() & set(syms):
            raise self.fail(f"numel {numel} uses the symbols it checks")
        return TensorType(x.shape, x.dtype)

    def reference(self, a, x):
        check_values(a, x, {})
        return x.copy()

    def compute(self, a, x):
        return te.compute(tuple(x.shape), lambda *i: x[i], name="bind_dims")


def limits_of(a: dict) -> list[int]:
    """The limit of each symbol of a ``bind_dims`` node's attributes (-1: none)."""
    return list(a["limits"]) if a["limits"] else [-1] * len(a["symbols"])


def check_values(a: dict, values: np.ndarray, sizes: Mapping[str, int], node: str | None = None) -> dict[str, int]:
    """The symbols' values that ``values`` give a ``bind_dims`` node (attributes ``a``); raises
    :class:`DataShapeError` for a negative value, one above its limit, or a product other than
    ``numel`` (evaluated with the symbols bound so far, ``sizes``)."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    out = {}
    for s, v, lim in zip(a["symbols"], flat, limits_of(a)):
        if v < 0:
            raise DataShapeError(f"the data gives the dimension {s} = {v}, which is negative", node=node,
                                 op="bind_dims")
        if lim >= 0 and v > lim:
            raise DataShapeError(f"the data gives the dimension {s} = {v}, above its limit {lim}", node=node,
                                 op="bind_dims")
        out[s] = v
    numel = a["numel"]
    if not (isinstance(numel, int) and numel < 0):
        want = evaluate(numel, sizes) if isinstance(numel, Sym) else int(numel)
        got = int(np.prod(flat, dtype=object))
        if got != want:
            raise DataShapeError(f"the data gives the shape {flat} ({got} elements) where {want} elements are "
                                 f"needed", node=node, op="bind_dims")
    return out


@register
class ReshapeData(Op):
    """Reshape to a shape whose dimensions the data decides (a Reshape whose shape is computed
    from inputs): the type rule cannot compare the element counts, so the ``bind_dims`` node
    that binds the shape checks them at run time (its ``numel``).  The second operand is that
    node's output (only read to be ordered after it)."""

    name = "reshape_data"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"shape": REQUIRED}
    num_inputs = 2

    def infer(self, a, x, bound):
        if bound.dtype != "int64":
            raise self.fail(f"the second operand is the bound shape (int64), got {bound}")
        t = TensorType(tuple(a["shape"]), x.dtype)
        if any(isinstance(d, int) and d < 0 for d in t.shape):
            raise self.fail(f"target shape {list(t.shape)} has a negative dimension")
        if x.is_static and t.is_static and t.size != x.size:
            raise self.fail(f"cannot reshape {x} ({x.size} elements) to {list(t.shape)} ({t.size} elements)")
        return t

    def reference(self, a, x, bound):
        shape = tuple(int(d) for d in a["shape"])
        if int(np.prod(shape, dtype=object)) != x.size:
            raise DataShapeError(f"cannot reshape {x.size} elements to {list(shape)}", op=self.name)
        return x.reshape(shape)

    def compute(self, a, x, bound):
        from .transform import flat_index, unflat_index

        shape = tuple(TensorType(tuple(a["shape"]), x.dtype).shape)
        return te.compute(shape, lambda *i: x[unflat_index(tuple(x.shape), flat_index(shape, i))],
                          name="reshape_data")

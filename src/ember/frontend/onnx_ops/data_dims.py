"""Dimensions that the data decides at run time: the helpers the translations use to bind them.

A translation that needs a size only the values of a tensor give (NonZero's count, the shape a
Reshape reads from an input) computes those values in the graph as an int64 vector, binds them
to fresh *data symbols* with the core ``bind_dims`` op (``ember.ops.dynamic``) and builds the
rest of its result on the bound value, so everything whose shape mentions the symbols depends
on the binding.  A constant vector gives plain numbers instead, so a model whose operands are
constants stays static.
"""

from __future__ import annotations

import numpy as np

from ...graph.ir import Value
from ...symbolic import Sym, symbol


def bind(cx, values: Value, what: str | list[str], limits: list[int | None] | None = None,
         numel=None) -> tuple[Value, list]:
    """Bind the elements of ``values`` (int64, rank 0 or 1, static size) to new data symbols
    named after ``what`` (one name, or one per element); returns the bound value (read it
    instead of ``values``) and the dimensions: ints when ``values`` is a constant.  ``limits``
    gives each symbol's largest value where the graph implies one; ``numel`` an element count
    the product of the values must equal (checked at run time)."""
    n = 1 if values.type.rank == 0 else values.shape[0]
    if values.is_const:
        dims = [int(d) for d in np.asarray(values.const).reshape(-1)]
        bad = [d for d in dims if d < 0]
        if bad:
            raise cx.fail(f"the dimension(s) {dims} computed for this op include negative values")
        return values, dims
    names = [what] * n if isinstance(what, str) else list(what)
    limits = limits or [None] * n
    syms = tuple(cx.data_symbol(f"{w}{k}" if isinstance(what, str) and n > 1 else w, lim)
                 for k, (w, lim) in enumerate(zip(names, limits)))
    attrs = {"symbols": syms}
    if any(lim is not None for lim in limits):
        attrs["limits"] = tuple(-1 if lim is None else int(lim) for lim in limits)
    if numel is not None:
        attrs["numel"] = numel
    bound = cx.op("bind_dims", [values], **attrs)
    return bound, [symbol(s) for s in syms]


def scalar_of(cx, v: Value) -> Value:
    """``v`` (one element) as a rank-0 tensor."""
    return v if v.type.rank == 0 else cx.op("reshape", [v], shape=())


def iota(cx, bound: Value, length) -> Value:
    """``0, 1, ..., length - 1`` (int64) for a ``length`` that ``bound`` (a bound value, one of
    whose elements gives it) binds: the sequence reads ``bound`` so that it runs after the
    binding."""
    if isinstance(length, int):
        return cx.op("arange", [], length=length, start=0, delta=1, dtype="int64")
    first = cx.op("reshape", [cx.op("slice", [bound], starts=(0,), ends=(1,), steps=(1,))], shape=()) \
        if bound.type.rank == 1 else bound
    seq = cx.op("arange", [first], length=length, dtype="int64")
    return cx.op("sub", [seq, first])


def prefix_sum(cx, v: Value) -> Value:
    """Inclusive prefix sums of the 1-D int64 ``v`` of static length, in log2(n) doubling steps."""
    n = v.shape[0]
    if not isinstance(n, int):
        raise cx.fail(f"needs a static element count here, got {v.type}; fix the input's shape with shapes=")
    d = 1
    while d < n:
        v = cx.op("add", [v, cx.op("pad", [v], pads=(d, -d), mode="constant", value=0)])
        d *= 2
    return v


def is_data_dim(d) -> bool:
    return isinstance(d, Sym)

"""ONNX linear algebra beyond MatMul: Det, by Gaussian elimination with partial pivoting, unrolled
over the (static) matrix size and vectorized over the batch (which may be symbolic)."""

from __future__ import annotations

import numpy as np

from ...graph.types import is_float
from ...symbolic import Sym, product
from . import translates
from .arith import T
from .tensor import gather_elements_values


@translates("Det")
def det(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if len(dims) < 2 or dims[-1] != dims[-2] or not is_float(x.dtype):
        raise cx.fail(f"expects floating-point square matrices [..., n, n], got {x.type}")
    n = dims[-1]
    if isinstance(n, Sym):
        raise cx.fail(f"the matrices of {x.type} have the symbolic size {n}, and the elimination is unrolled "
                      f"over it at compile time; fix it with shapes=")
    batch = product(dims[:-2])
    a = T(cx, x).cast("float64").reshape((batch, n, n))     # eliminated in double precision
    if isinstance(batch, Sym):
        result = T(cx, cx.op("broadcast_to", [cx.scalar(1.0, "float64")], shape=(batch,)))
    else:
        result = T(cx, cx.const(np.ones((batch,), dtype=np.float64)))
    rows = np.arange(n, dtype=np.int64).reshape(1, n)
    for k in range(n):
        # the row (at or below k) with the largest |a[., k]| becomes row k
        col = T(cx, cx.op("slice", [a.v], starts=(0, k, k), ends=(batch, n, k + 1), steps=(1, 1, 1)))
        p = T(cx, cx.op("argmax", [col.abs().v], axis=1, keepdims=False)) + k         # [batch, 1]
        r = T(cx, cx.const(rows))
        perm = r.eq(k).where(p, r.eq(p).where(T(cx, cx.scalar(k, "int64")), r))       # [batch, n]
        perm = T(cx, cx.op("broadcast_to", [perm.reshape((batch, n, 1)).v], shape=(batch, n, n)))
        a = T(cx, gather_elements_values(cx, a.v, perm.v, 1))
        p_flat = p.reshape((batch,))
        result = p_flat.ne(k).where(result * -1, result)
        pivot = T(cx, cx.op("slice", [a.v], starts=(0, k, k), ends=(batch, k + 1, k + 1), steps=(1, 1, 1)))
        result = result * pivot.reshape((batch,))
        if k == n - 1:
            break
        # subtract multiples of row k from the rows below it (none where the pivot is 0)
        below = T(cx, cx.op("slice", [a.v], starts=(0, 0, k), ends=(batch, n, k + 1), steps=(1, 1, 1)))
        factor = pivot.eq(0).where(0.0, below / pivot.eq(0).where(1.0, pivot))
        factor = T(cx, cx.const((np.arange(n) > k).reshape(1, n, 1))).where(factor, 0.0)   # [batch, n, 1]
        row_k = T(cx, cx.op("slice", [a.v], starts=(0, k, 0), ends=(batch, k + 1, n), steps=(1, 1, 1)))
        a = a - factor * row_k
    return result.cast(x.dtype).reshape(dims[:-2]).v

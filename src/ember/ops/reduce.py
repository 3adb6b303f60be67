"""Reductions over a set of axes: sum, mean, max, min, prod; argmax and argmin."""

from __future__ import annotations

import numpy as np

from .. import te
from ..graph.types import TensorType, is_float
from .base import Op, Pattern, register


def normalize_axes(axes, rank: int, op: Op) -> tuple[int, ...]:
    out = []
    for ax in axes:
        if not -rank <= ax < max(rank, 1):
            raise op.fail(f"axis {ax} is out of range for rank {rank}")
        out.append(ax % rank if rank else 0)
    if len(set(out)) != len(out):
        raise op.fail(f"axes {tuple(axes)} repeat an axis")
    return tuple(sorted(out))


def widened(x: np.ndarray) -> np.ndarray:
    """bfloat16 data as float32, in which reductions accumulate (numpy would accumulate in
    bfloat16); other data as is."""
    return x.astype(np.float32) if str(x.dtype) == "bfloat16" else x


def _identity(combiner: str, dt: np.dtype):
    """The value max (min) starts from: the lowest (highest) of the dtype."""
    is_max = combiner == "max"
    if dt == np.bool_:
        return not is_max
    if dt.kind == "f":
        return -np.inf if is_max else np.inf
    return np.iinfo(dt).min if is_max else np.iinfo(dt).max


def reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


#: lanes of the partial results of a row reduction (a multiple of every target's vector width)
PARTIAL_LANES = 16


def row_reduce(combiner: str, x, ax: int, body, name: str):
    """``combiner`` over axis ``ax`` of ``body(index)`` for every row of ``x`` (a tensor or a
    shape), keeping that axis as size 1.

    When ``ax`` is the innermost axis and long enough, the reduction is split in two stages:
    PARTIAL_LANES partial results per row (lane l combines elements l, l + P, l + 2P, ...), which
    a schedule can vectorize, then one combine of the partials.  When P does not divide the
    length (or it is symbolic) the partials cover the whole multiples of P and the combine also
    takes the n % P elements left (ViT's 197-long attention rows: 10x faster than one scalar
    chain per row)."""
    shape = tuple(getattr(x, "shape", x))
    n = shape[ax]
    rshape = tuple(1 if k == ax else d for k, d in enumerate(shape))
    P = PARTIAL_LANES
    if ax == len(shape) - 1 and (not isinstance(n, int) or (n % P and n >= 2 * P)):
        ro = te.reduce_axis(n // P, "ro")
        part = te.compute(shape[:-1] + (P,), lambda *i: te.reduce(combiner, body(i[:-1] + (ro * P + i[-1],)), [ro]),
                          name=f"{name}_partial")
        whole = (n // P) * P
        rl = te.reduce_axis(n % P + P, "rl")

        def combine(*i):
            # the P partials, then the tail: a C conditional reads only the side it takes
            tail = body(i[:-1] + (rl + whole - P,))
            return te.reduce(combiner, te.select(te.lt(rl, te.const(P, "int64")), part[i[:-1] + (rl,)], tail), [rl])

        return te.compute(rshape, combine, name=name)
    if ax != len(shape) - 1 or not isinstance(n, int) or n % P or n < 2 * P:
        r = te.reduce_axis(n, "r")
        return te.compute(rshape, lambda *i: te.reduce(combiner, body(i[:-1] + (r,) if ax == len(shape) - 1
                                                                      else tuple(r if k == ax else ii for k, ii in enumerate(i))),
                                                       [r]), name=name)
    ro = te.reduce_axis(n // P, "ro")
    part = te.compute(shape[:-1] + (P,), lambda *i: te.reduce(combiner, body(i[:-1] + (ro * P + i[-1],)), [ro]),
                      name=f"{name}_partial")
    rl = te.reduce_axis(P, "rl")
    return te.compute(rshape, lambda *i: te.reduce(combiner, part[i[:-1] + (rl,)], [rl]), name=name)


class ReduceOp(Op):
    pattern = Pattern.REDUCTION
    attrs = {"axes": (), "keepdims": True}
    combiner = "sum"
    np_fn = staticmethod(np.sum)

    def infer(self, a, x):
        axes = normalize_axes(a["axes"], x.rank, self)
        for ax in axes:
            if isinstance(x.shape[ax], int) and x.shape[ax] == 0 and self.combiner in ("max", "min"):
                raise self.fail(f"cannot take {self.combiner} over the empty axis {ax}")
        return TensorType(reduced_shape(x.shape, axes, a["keepdims"]), x.dtype)

    def reference(self, a, x):
        axes = normalize_axes(a["axes"], x.ndim, self)
        kw = {}
        if x.size == 0 and self.combiner in ("max", "min"):
            # over an axis that is empty at run time (a data symbol): the combiner's identity,
            # as the kernels start from (te.lower.identity_of)
            kw["initial"] = _identity(self.combiner, widened(x).dtype)
        out = self.np_fn(widened(x), axis=axes, keepdims=a["keepdims"], **kw)
        return np.asarray(out).astype(x.dtype)

    def _reduce(self, a, x, body=lambda v: v):
        axes = normalize_axes(a["axes"], len(x.shape), self)
        out_shape = reduced_shape(x.shape, axes, a["keepdims"])
        if axes == (len(x.shape) - 1,):
            # rows: per-lane partial results a schedule vectorizes (T5's RMS norm)
            r = row_reduce(self.combiner, x, axes[0], lambda idx: body(x[idx]), self.name)
            if a["keepdims"]:
                return r, axes
            return te.compute(out_shape, lambda *i: r[i + (0,)], name=f"{self.name}_rows"), axes
        raxes = {ax: te.reduce_axis(x.shape[ax], f"r{ax}") for ax in axes}

        def f(*i):
            idx, k = [], 0
            for d in range(len(x.shape)):
                if d in raxes:
                    idx.append(raxes[d])
                    if a["keepdims"]:
                        k += 1
                else:
                    idx.append(i[k])
                    k += 1
            return te.reduce(self.combiner, body(x[tuple(idx)]), list(raxes.values()))

        return te.compute(out_shape, f, name=self.name), axes

    def compute(self, a, x):
        return self._reduce(a, x)[0]


@register
class ReduceSum(ReduceOp):
    name = "reduce_sum"


@register
class ReduceMax(ReduceOp):
    name = "reduce_max"
    combiner = "max"
    np_fn = staticmethod(np.max)


@register
class ReduceMin(ReduceOp):
    name = "reduce_min"
    combiner = "min"
    np_fn = staticmethod(np.min)


@register
class ReduceProd(ReduceOp):
    name = "reduce_prod"
    combiner = "prod"
    np_fn = staticmethod(np.prod)


@register
class ReduceMean(ReduceOp):
    name = "reduce_mean"

    def infer(self, a, x):
        if not is_float(x.dtype):
            raise self.fail(f"expects a floating-point operand, got {x}")
        return super().infer(a, x)

    def reference(self, a, x):
        axes = normalize_axes(a["axes"], x.ndim, self)
        return np.mean(widened(x), axis=axes, keepdims=a["keepdims"]).astype(x.dtype)

    def compute(self, a, x):
        s, axes = self._reduce(a, x)
        n = 1
        for ax in axes:
            n = n * x.shape[ax]
        if isinstance(n, int):
            inv = te.const(1.0 / n if n else float("nan"), x.dtype)
        else:   # a symbolic count: 1 / n at run time (n == 0 gives inf * 0 = nan, as numpy's mean)
            inv = te.const(1, x.dtype) / te.cast(x.dtype, n)
        return te.compute(s.shape, lambda *i: s[i] * inv, name="mean")


class ArgOp(Op):
    pattern = Pattern.REDUCTION
    attrs = {"axis": 0, "keepdims": True, "select_last_index": False}
    np_fn = staticmethod(np.argmax)

    def infer(self, a, x):
        (ax,) = normalize_axes((a["axis"],), x.rank, self)
        if x.shape[ax] == 0:
            raise self.fail(f"cannot take {self.name} over the empty axis {ax}")
        return TensorType(reduced_shape(x.shape, (ax,), a["keepdims"]), "int64")

    def reference(self, a, x):
        (ax,) = normalize_axes((a["axis"],), x.ndim, self)
        if a["select_last_index"]:
            flipped = np.flip(x, axis=ax)
            out = x.shape[ax] - 1 - self.np_fn(flipped, axis=ax)
        else:
            out = self.np_fn(x, axis=ax)
        if a["keepdims"]:
            out = np.expand_dims(out, ax)
        return np.asarray(out).astype("int64")

    def compute(self, a, x):
        (ax,) = normalize_axes((a["axis"],), len(x.shape), self)
        r = te.reduce_axis(x.shape[ax], "r")
        out_shape = reduced_shape(x.shape, (ax,), a["keepdims"])
        better = te.gt if self.name == "argmax" else te.lt
        if a["select_last_index"]:
            better = te.ge if self.name == "argmax" else te.le

        def idx(i):
            i = list(i)
            if a["keepdims"]:
                i[ax] = r
            else:
                i.insert(ax, r)
            return tuple(i)

        return te.compute(out_shape, lambda *i: te.arg_reduce(better, x[idx(i)], r), name=self.name)


@register
class ArgMax(ArgOp):
    name = "argmax"


@register
class ArgMin(ArgOp):
    name = "argmin"
    np_fn = staticmethod(np.argmin)

"""Reductions: sums, means, extrema, arg-extrema, any/all, variance."""

from __future__ import annotations

from . import translates


def _axes(dims, rank):
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return tuple(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return tuple(sorted({d % rank for d in dims})) if rank else ()


def _reduce(core):
    def f(cx, x, dims=None, keepdim=False, *, dtype=None):
        out = cx.out_dtype()
        x = cx.cast(x, out)
        if x.type.rank == 0:
            return x
        y = cx.op(core, [x], axes=_axes(dims, x.type.rank), keepdims=bool(keepdim))
        return cx.reshape(y, cx.out_shape())
    return f


for _name, _core, _overloads in (("sum", "reduce_sum", ("dim_IntList", "default")),
                                 ("mean", "reduce_mean", ("dim", "default")),
                                 ("amax", "reduce_max", ("default",)), ("amin", "reduce_min", ("default",)),
                                 ("prod", "reduce_prod", ("dim_int", "default"))):
    for _ov in _overloads:
        translates(f"aten.{_name}.{_ov}")(_reduce(_core))


@translates("aten.max.dim", "aten.min.dim")
def max_dim(cx, x, dim, keepdim=False):
    ax = dim % x.type.rank
    core = "reduce_max" if cx.op_type == "aten.max.dim" else "reduce_min"
    v = cx.reshape(cx.op(core, [x], axes=(ax,), keepdims=True), cx.out_shape(0))
    i = None
    if cx.output_used(1):
        arg = "argmax" if core == "reduce_max" else "argmin"
        i = cx.reshape(cx.op(arg, [x], axis=ax, keepdims=True), cx.out_shape(1))
    return (v, i)


@translates("aten.max.default", "aten.min.default")
def max_all(cx, x):
    core = "reduce_max" if cx.op_type == "aten.max.default" else "reduce_min"
    return cx.reshape(cx.op(core, [x], axes=tuple(range(x.type.rank)), keepdims=False), ())


@translates("aten.argmax.default", "aten.argmin.default")
def argmax(cx, x, dim=None, keepdim=False):
    core = "argmax" if "argmax" in cx.op_type else "argmin"
    if dim is None:
        x = cx.reshape(x, (_numel(x),))
        dim = 0
    y = cx.op(core, [x], axis=dim % x.type.rank, keepdims=True)
    return cx.cast(cx.reshape(y, cx.out_shape()), "int64")


def _numel(x):
    n = 1
    for d in x.shape:
        n = n * d
    return n


@translates("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim", "aten.all.dims", "aten.all.default")
def any_all(cx, x, dims=None, keepdim=False):
    nz = cx.op("not_equal", [x, cx.scalar(0, x.dtype)]) if x.dtype != "bool" else x
    core = "reduce_max" if ".any." in cx.op_type else "reduce_min"
    if x.type.rank == 0:
        return nz
    y = cx.op(core, [cx.cast(nz, "int32")], axes=_axes(dims, x.type.rank), keepdims=bool(keepdim))
    return cx.reshape(cx.cast(y, "bool"), cx.out_shape())


@translates("aten.var.correction", "aten.var.dim", "aten.std.correction", "aten.std.dim")
def var(cx, x, dims=None, *args, correction=None, keepdim=False, unbiased=None):
    if cx.op_type.endswith(".dim"):
        unbiased = args[0] if args else True
        keepdim = args[1] if len(args) > 1 else keepdim
        correction = 1 if unbiased else 0
    elif correction is None:
        correction = 1
    axes = _axes(dims, x.type.rank)
    mean = cx.op("reduce_mean", [x], axes=axes, keepdims=True)
    d = cx.op("sub", [x, mean])
    s = cx.op("reduce_sum", [cx.op("mul", [d, d])], axes=axes, keepdims=bool(keepdim))
    n = 1
    for a in axes:
        n = n * x.shape[a]
    denom = n - correction
    v = cx.op("div", [s, cx.scalar(denom, x.dtype)]) if isinstance(denom, int) else \
        cx.op("div", [s, cx.tensor(denom, x.dtype)])
    if ".std." in cx.op_type:
        v = cx.op("sqrt", [v])
    return cx.reshape(v, cx.out_shape())


@translates("aten.cumsum.default")
def cumsum(cx, x, dim, dtype=None):
    """A cumulative sum as a product with the upper-triangular matrix of ones ``[i, j] = i <= j``
    (a constant, or computed from ``arange`` along a symbolic axis); integers as an exact sum of
    masked copies."""
    import numpy as np

    out = cx.out_dtype()
    ax = dim % x.type.rank
    n = x.shape[ax]
    perm = [k for k in range(x.type.rank) if k != ax] + [ax]
    moved = perm != list(range(x.type.rank))
    xt = cx.cast(x, out)
    xt = cx.op("transpose", [xt], perm=tuple(perm)) if moved else xt
    if isinstance(n, int):
        tri = cx.const(np.triu(np.ones((n, n), dtype=np.float64)).astype(np.dtype(out) if out != "bfloat16"
                                                                         else np.float32))
        tri = cx.cast(tri, out)
    else:
        i = cx.op("arange", [], length=n, dtype="int64")
        tri = cx.op("cast", [cx.op("less_equal", [cx.reshape(i, (n, 1)), cx.reshape(i, (1, n))])], to=out)
    if out.startswith("float") or out == "bfloat16":
        y = cx.op("matmul", [xt, tri])
    else:
        e = cx.op("mul", [cx.reshape(xt, tuple(xt.shape) + (1,)), tri])
        y = cx.op("reduce_sum", [e], axes=(xt.type.rank - 1,), keepdims=False)
    inv = [perm.index(k) for k in range(x.type.rank)]
    return cx.op("transpose", [y], perm=tuple(inv)) if moved else y

"""ONNX reductions: ReduceSum/Mean/Max/Min/Prod, the composed ReduceL1/L2/SumSquare/LogSum/
LogSumExp, and ArgMax/ArgMin."""

from __future__ import annotations

import numpy as np

from ...graph.builder import GraphBuilder
from ...graph.types import TensorType, is_float, np_dtype
from ...symbolic import Sym, compare, product
from . import data_dims, translates
from .tensor import _dim_tensor, gather_elements_values, norm_axes, norm_axis, pick_by_axis, reshape


def reduce_axes(cx, x):
    """The axes to reduce: () when ``noop_with_empty_axes`` leaves the input unreduced; None when
    they are an input read at run time (see :func:`_reduce_at_run_time`)."""
    r = x.type.rank
    input_form = cx.opset >= 18 or (cx.op_type == "ReduceSum" and cx.opset >= 13)
    if input_form and cx.has_input(1) and cx.input(1).type.num_elements == 0:
        axes = []                       # empty whatever its values: decided by its shape
    elif input_form and data_dims.runtime_operand(cx, 1) is not None:
        return None
    else:
        axes = cx.ints_input(1, "axes") if input_form else cx.attr("axes", None)
    if not axes:
        return () if cx.attr("noop_with_empty_axes", 0) else tuple(range(r))
    return tuple(sorted(norm_axes(cx, axes, r)))


def _reduce(cx, core, x, axes, keepdims):
    if not axes:
        return x
    return cx.op(core, [x], axes=axes, keepdims=bool(keepdims))


def _mean(cx, x, axes, keepdims, count=None):
    if not axes or is_float(x.dtype):
        return _reduce(cx, "reduce_mean", x, axes, keepdims)
    # integer mean: sum, then integer division by the count (``count``: an int64 scalar value
    # that gives it, where the reduced sizes are data symbols)
    if count is None:
        n = product(x.shape[a] for a in axes)
        count = cx.scalar(n, "int64") if isinstance(n, int) else _dim_tensor(cx, n)
    count = cx.op("cast", [count], to=x.dtype) if count.dtype != x.dtype else count
    return cx.op("div", [_reduce(cx, "reduce_sum", x, axes, keepdims), count])


@translates("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
def reduce(cx):
    x = cx.input(0)
    axes = reduce_axes(cx, x)
    kd = cx.attr("keepdims", 1)
    if axes is None:
        return _reduce_at_run_time(cx, x, cx.input(1), kd)
    if any(isinstance(x.shape[a], int) and x.shape[a] == 0 for a in axes) and \
            cx.op_type in ("ReduceMax", "ReduceMin", "ReduceLogSumExp"):
        return _empty_reduction(cx, x, axes, kd)
    return _reduction(cx, x, axes, kd)


def _reduction(cx, x, axes, kd, count=None):
    """The node's reduction of ``x`` over the static ``axes``."""
    t = cx.op_type
    if t == "ReduceMean":
        return _mean(cx, x, axes, kd, count)
    simple = {"ReduceSum": "reduce_sum", "ReduceMax": "reduce_max", "ReduceMin": "reduce_min",
              "ReduceProd": "reduce_prod"}
    if t in simple:
        return _reduce(cx, simple[t], x, axes, kd)
    if t == "ReduceL1":
        return _reduce(cx, "reduce_sum", cx.op("abs", [x]), axes, kd)
    if t == "ReduceSumSquare":
        return _reduce(cx, "reduce_sum", cx.op("mul", [x, x]), axes, kd)
    if t == "ReduceL2":
        s = _reduce(cx, "reduce_sum", cx.op("mul", [x, x]), axes, kd)
        if is_float(x.dtype):
            return cx.op("sqrt", [s])
        f = cx.op("sqrt", [cx.op("cast", [s], to="float64")])
        return cx.op("cast", [f], to=x.dtype)
    if t == "ReduceLogSum":
        return cx.op("log", [_reduce(cx, "reduce_sum", x, axes, kd)])
    # ReduceLogSumExp = log(sum(exp(x - m))) + m with m the max (taken as 0 where infinite)
    if not axes:
        return cx.op("log", [cx.op("exp", [x])])
    m = cx.op("reduce_max", [x], axes=axes, keepdims=True)
    m = cx.op("where", [cx.op("logical_or", [cx.op("isnan", [m]), _isinf(cx, m)]), cx.scalar(0, x.dtype), m])
    s = cx.op("reduce_sum", [cx.op("exp", [cx.op("sub", [x, m])])], axes=axes, keepdims=bool(kd))
    if not kd:
        m = reshape(cx, m, s.shape)
    return cx.op("add", [cx.op("log", [s]), m])


def _reduce_at_run_time(cx, x, axes_v, kd):
    """A reduction whose axes are read at run time (their count is the static length of the
    operand).  Each axis i of size d splits into a kept part and a reduced part, data symbols
    bound from the axes: (1, d) when the axes name it, else (d, 1).  The input is viewed as
    [kept0, reduced0, kept1, reduced1, ...] (the same elements in the same order) and reduced
    over the odd axes, which gives the keepdims=1 result; without keepdims the kept sizes of
    the axes not named are bound once more, in order, as the output's shape.  Axes out of range
    are an index error of the run, repeated ones an error of the binding."""
    r = x.type.rank
    i64 = lambda c: cx.scalar(c, "int64")  # noqa: E731
    _, mask, repeated = data_dims.axes_at_run_time(cx, axes_v, r)
    k = axes_v.shape[0]
    if k > r:
        raise cx.fail(f"axes {axes_v.type} hold more axes than the input {x.type} has")
    reduced = cx.op("equal", [mask, i64(1)])
    d = data_dims.dims_tensor(cx, list(x.shape))
    kept_n = cx.op("where", [reduced, i64(1), d])
    red_n = cx.op("where", [reduced, d, i64(1)])
    # the sizes to bind, (kept, reduced) per axis; an axis of static size 1 is (1, 1) whatever
    free = [i for i, n in enumerate(x.shape) if not (isinstance(n, int) and n == 1)]
    pairs = reshape(cx, cx.op("concat", [reshape(cx, kept_n, (r, 1)), reshape(cx, red_n, (r, 1))], axis=1), (2 * r,))
    pick = [j for i in free for j in (2 * i, 2 * i + 1)]
    if not pick:                        # nothing to bind but the checks: one symbol (always 1) keeps them
        pick, free = [0], []
    vals = pairs if len(pick) == 2 * r else cx.op("gather", [pairs, cx.const(np.array(pick, np.int64))], axis=0)
    vals = data_dims.invalid_if(cx, vals, repeated)
    names = [f"{w}{i}" for i in free for w in ("kept", "reduced")] or ["axes"]
    # (an empty axis keeps 1 or reduces 1)
    limits = [max(x.shape[i], 1) if isinstance(x.shape[i], int) else None for i in free for _ in (0, 1)] or [1]
    bound, got = data_dims.bind(cx, vals, names, limits, numel=product(x.shape))
    view = [1] * (2 * r)
    for n, i in enumerate(free):
        view[2 * i], view[2 * i + 1] = got[2 * n], got[2 * n + 1]
    xv = cx.op("reshape_data", [x, bound], shape=tuple(view))
    count = cx.op("reduce_prod", [red_n], axes=(0,), keepdims=False) if cx.op_type == "ReduceMean" else None
    y = _reduction(cx, xv, tuple(range(1, 2 * r, 2)), False, count)        # [kept0, kept1, ...]
    if kd:
        return y
    if k == r:
        return cx.op("reshape_data", [y, bound], shape=())
    # the output's dims: the kept sizes of the axes not named, in order (read from the bound
    # sizes, so that the binding of the output's dims comes after theirs)
    nb = bound.shape[0]
    kept_b = cx.op("gather", [cx.op("concat", [bound, cx.const(np.ones(1, np.int64))], axis=0),
                              cx.const(np.array([2 * free.index(i) if i in free else nb for i in range(r)], np.int64))],
                   axis=0)
    dims = data_dims.in_order(cx, cx.op("sub", [i64(1), mask]), kept_b, r - k)
    static = [n for n in x.shape if isinstance(n, int)]
    lim = max(static + [1]) if len(static) == r else None
    bound2, out = data_dims.bind(cx, dims, "dim", [lim] * (r - k), numel=product(view[0::2]))
    return cx.op("reshape_data", [y, bound2], shape=tuple(out))


def _empty_reduction(cx, x, axes, keepdims):
    """Max, min and log-sum-exp over nothing give the identity of the combiner."""
    shape = [1 if k in axes else d for k, d in enumerate(x.shape) if keepdims or k not in axes]
    dt = np_dtype(x.dtype)
    is_max = cx.op_type != "ReduceMin"
    if dt == np.bool_:
        val = not is_max
    elif is_float(x.dtype):
        val = -np.inf if is_max else np.inf
    else:
        info = np.iinfo(dt)
        val = info.min if is_max else info.max
    return cx.const(np.full(shape, val, dtype=dt), x.dtype)


def _isinf(cx, v):
    return cx.op("equal", [cx.op("abs", [v]), cx.scalar(np.inf, v.dtype)])


@translates("ArgMax", "ArgMin")
def arg(cx):
    x = cx.input(0)
    ax = norm_axis(cx, cx.attr("axis", 0), x.type.rank)
    return cx.op("argmax" if cx.op_type == "ArgMax" else "argmin", [x], axis=ax,
                 keepdims=bool(cx.attr("keepdims", 1)), select_last_index=bool(cx.attr("select_last_index", 0)))


@translates("CumSum", "CumProd")
def cumsum(cx):
    # prefix sums (products) in log2(n) steps: x += x shifted by 1, 2, 4, ... (the identity,
    # 0 or 1, shifted in)
    x = cx.input(0)
    r = x.type.rank
    axis_v = cx.input(1)
    if axis_v.type.num_elements != 1:
        raise cx.fail(f"axis must be a scalar, got {axis_v.type}")
    axis = cx.known_input(1)
    if axis is None:
        # an axis known at run time only: the scan along each axis, and the one it names picked
        if r == 0:
            raise cx.fail("expects a tensor of rank >= 1")
        return pick_by_axis(cx, axis_v, r, r, lambda ax: _scan(cx, x, ax))
    return _scan(cx, x, norm_axis(cx, int(axis.reshape(()).item()), r))


def _scan(cx, x, ax: int):
    """CumSum (CumProd) of ``x`` along axis ``ax``."""
    combine, identity = ("add", 0) if cx.op_type == "CumSum" else ("mul", 1)
    dims = tuple(x.shape)
    r = len(dims)
    reverse, exclusive = cx.attr("reverse", 0), cx.attr("exclusive", 0)

    def shifted(v, d):
        if isinstance(dims[ax], Sym):
            # a shift that may reach past the actual length: gather from the clamped source
            # position, the identity where there is none (D: a shift known at run time only)
            pos = cx.op("arange", [], length=dims[ax], start=0, delta=1, dtype="int64")
            last = _dim_tensor(cx, dims[ax] - 1)
            by = cx.scalar(d, "int64") if isinstance(d, int) else d
            src = cx.op("add" if reverse else "sub", [pos, by])
            inside = cx.op("less_equal", [src, last]) if reverse else cx.op("greater_equal", [src, cx.scalar(0, "int64")])
            src = cx.op("maximum", [cx.op("minimum", [src, last]), cx.scalar(0, "int64")])
            shp = [1] * r
            shp[ax] = dims[ax]
            picked = cx.op("gather", [v, src], axis=ax)
            return cx.op("where", [reshape(cx, inside, shp), picked, cx.scalar(identity, v.dtype)])
        pads = [0] * (2 * r)
        if reverse:
            pads[ax], pads[ax + r] = -d, d
        else:
            pads[ax], pads[ax + r] = d, -d
        return cx.op("pad", [v], pads=tuple(pads), mode="constant", value=identity)

    if isinstance(dims[ax], Sym) and cx.bound(dims[ax]) is None:
        # no bound to unroll to: the doubling steps as a loop of the artifact, which stops once
        # the shift reaches the length (ceil(log2 n) iterations)
        out = _doubling_loop(cx, x, dims[ax], lambda v, d: cx.op(combine, [v, shifted(v, d)]))
        return shifted(out, 1) if exclusive else out
    # the number of doubling steps is fixed at compile time: enough for the largest length
    n = cx.unrolled_length(dims[ax], f"axis {ax} of {x.type}")
    out, d = x, 1
    while d < n:
        out = cx.op(combine, [out, shifted(out, d)])
        d *= 2
    if exclusive and (isinstance(dims[ax], Sym) or n):
        out = shifted(out, 1)
    return out


def _doubling_loop(cx, x, length, step):
    """``x`` after ``step(v, d)`` with d = 1, 2, 4, ... while d < LENGTH (a symbolic size), as
    a run-time ``loop`` carrying the value and d."""
    tr = cx._tr
    n = _dim_tensor(cx, length)
    one = cx.scalar(1, "int64")
    body = GraphBuilder(f"{cx.name}/doubling")
    with tr.building(body, cx):
        it = body.input("iteration", TensorType((), "int64"))
        go = body.input("cond", TensorType((), "bool"))
        v = body.input("value", x.type)
        d = body.input("shift", TensorType((), "int64"))
        nxt = cx.op("add", [d, d])
        new = [cx.op("less", [nxt, n]), step(v, d), nxt]
    g, caps = tr.closed_graph(body, [it, go, v, d], new, cx)
    return cx.b.op_multi("loop", [n, cx.op("less", [one, n]), x, one] + caps, name=cx.name, body=g,
                         num_carried=2, length=None)[0]


@translates("TopK")
def topk(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    ax = norm_axis(cx, cx.attr("axis", -1), r)
    k_seq = None
    if cx.opset < 10:
        k = cx.attr("k")
    elif data_dims.runtime_operand(cx, 1) is not None:
        # K read at run time: bound (0 <= K <= the axis, else an error of the run)
        kv = cx.input(1)
        if kv.type.rank != 1 or kv.shape[0] != 1:
            raise cx.fail(f"K must hold one value, got {kv.type}")
        kval = data_dims.element(cx, kv, 0)
        n_t = cx.op("reshape", [data_dims.dims_tensor(cx, [dims[ax]])], shape=())
        kval = data_dims.invalid_if(cx, kval, cx.op("greater", [kval, n_t]))
        limit = dims[ax] if isinstance(dims[ax], int) else None
        bound, (k,) = data_dims.bind(cx, kval, "k", [limit])
        k_seq = data_dims.iota(cx, bound, k)
    else:
        kv = cx.ints_input(1, "K", required=True)
        if len(kv) != 1:
            raise cx.fail(f"K must hold one value, got {kv}")
        k = kv[0]
    n = dims[ax]
    # (a symbolic axis shorter than K at run time is an error there, as in onnxruntime)
    if k_seq is None and (k < 0 or compare(k, ">", n, cx.bounds)):
        raise cx.fail(f"K={k} is out of range for axis {ax} of size {n}")
    largest = cx.attr("largest", 1)
    if k_seq is None and k == 1:
        values = cx.op("reduce_max" if largest else "reduce_min", [x], axes=(ax,), keepdims=True)
        indices = cx.op("argmax" if largest else "argmin", [x], axis=ax, keepdims=True)
        return [values, indices]
    # rank of each element = how many come before it in the output order (better value, or the
    # same value at a lower index); output position p takes the element of rank p
    perm = [d for d in range(r) if d != ax] + [ax]
    inv = [perm.index(d) for d in range(r)]
    xt = x if ax == r - 1 else cx.op("transpose", [x], perm=tuple(perm))
    lead = tuple(xt.shape[:-1])
    a = reshape(cx, xt, lead + (n, 1))
    b = reshape(cx, xt, lead + (1, n))
    better = cx.op("greater" if largest else "less", [b, a])
    if isinstance(n, Sym):
        seq = cx.op("arange", [], length=n, start=0, delta=1, dtype="int64")
        earlier = cx.op("less", [reshape(cx, seq, (1, n)), reshape(cx, seq, (n, 1))])
        positions = seq
    else:
        earlier = cx.const(np.arange(n)[None, :] < np.arange(n)[:, None])
        positions = cx.const(np.arange(n, dtype=np.int64))
    tie = cx.op("logical_and", [cx.op("equal", [b, a]), earlier])
    before = cx.op("cast", [cx.op("logical_or", [better, tie])], to="int64")
    rank = cx.op("reduce_sum", [before], axes=(len(lead) + 1,), keepdims=False)
    wanted = cx.const(np.arange(k, dtype=np.int64).reshape(k, 1)) if k_seq is None else reshape(cx, k_seq, (k, 1))
    hot = cx.op("equal", [reshape(cx, rank, lead + (1, n)), wanted])
    pos = cx.op("mul", [cx.op("cast", [hot], to="int64"), positions])
    indices = cx.op("reduce_sum", [pos], axes=(len(lead) + 1,), keepdims=False)
    values = gather_elements_values(cx, xt, indices, len(lead))
    if ax != r - 1:
        values = cx.op("transpose", [values], perm=tuple(inv))
        indices = cx.op("transpose", [indices], perm=tuple(inv))
    return [values, indices]

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
from ...graph.types import is_int
from ...symbolic import Sym, product, symbol


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
    if cx._tr.region_depth:
        # the artifact binds data symbols in the model's entry only (driver/data_dims.py)
        raise cx.unsupported("dimensions that the data decides in the body of a run-time If, Loop or Scan")
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
    cx._tr.data_bindings.append(values)
    cx._tr.data_bound.update({s: bound for s in syms})
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


def runtime_operand(cx, i: int) -> Value | None:
    """Input ``i`` when the translation must take it at run time (neither a constant, a value
    computed from constants, nor a shape value the frontend tracks, and not in a region op's
    body), else None."""
    v = cx.input(i, required=False)
    if v is not None and cx.is_symbolic(v) and not is_int(v.dtype) and not cx._tr.region_depth:
        return v            # float shape arithmetic: no op reads floats at compile time
    if v is None or v.is_const or cx.is_symbolic(v) or cx._tr.region_depth:
        return None         # (a region's body takes its operands as constants: see ``bind``)
    from ..core import computed_from_constants as folded

    return None if folded(v) is not None else v


def axes_at_run_time(cx, axes: Value, rank: int) -> tuple[Value, Value, Value]:
    """Axes read at run time (a 1-D integer tensor of static length k) of a tensor of ``rank``
    dimensions: ``named`` ([k, rank] bool: axes[j] names dimension i, once counted from the back
    where negative), ``mask`` ([rank] int64: 1 where some axis names the dimension) and
    ``repeated`` (a bool scalar: two axes name one dimension).  An axis outside [-rank, rank) is
    an index error of the run."""
    if axes.type.rank != 1 or not isinstance(axes.shape[0], int):
        raise cx.fail(f"axes must be a 1-D tensor of static length, got {axes.type}")
    k = axes.shape[0]
    ax = axes if axes.dtype == "int64" else cx.op("cast", [axes], to="int64")
    ax = cx.op("check_index", [ax], dims=(rank,), what=(f"the axes of this {cx.op_type} (rank {rank})",))
    named = cx.op("equal", [cx.op("reshape", [ax], shape=(k, 1)),
                            cx.const(np.arange(rank, dtype=np.int64).reshape(1, rank))])
    mask = cx.op("reduce_max", [cx.op("cast", [named], to="int64")], axes=(0,), keepdims=False)
    repeated = cx.op("not_equal", [cx.op("reduce_sum", [mask], axes=(0,), keepdims=False), cx.scalar(k, "int64")])
    return named, mask, repeated


def spread(cx, named: Value, values: Value, fill: int) -> Value:
    """For each dimension, the element of ``values`` ([k] int64) whose axis names it (``named``
    of :func:`axes_at_run_time`), else ``fill``."""
    k = named.shape[0]
    hit = cx.op("cast", [named], to="int64")
    picked = cx.op("reduce_sum", [cx.op("mul", [hit, cx.op("reshape", [values], shape=(k, 1))])], axes=(0,),
                   keepdims=False)
    some = cx.op("greater", [cx.op("reduce_max", [hit], axes=(0,), keepdims=False), cx.scalar(0, "int64")])
    return cx.op("where", [some, picked, cx.scalar(fill, "int64")])


def in_order(cx, keep: Value, values: Value, count: int) -> Value:
    """The elements of ``values`` ([n] int64) where ``keep`` ([n] int64) is 1, in order: the
    first ``count`` of them (zeros past the last)."""
    n = keep.shape[0]
    pos = cx.op("sub", [prefix_sum(cx, keep), cx.scalar(1, "int64")])
    slot = cx.op("logical_and", [cx.op("equal", [cx.op("reshape", [pos], shape=(1, n)),
                                                 cx.const(np.arange(count, dtype=np.int64).reshape(count, 1))]),
                                 cx.op("reshape", [cx.op("equal", [keep, cx.scalar(1, "int64")])], shape=(1, n))])
    return cx.op("reduce_sum", [cx.op("mul", [cx.op("cast", [slot], to="int64"),
                                              cx.op("reshape", [values], shape=(1, n))])], axes=(1,), keepdims=False)


def dims_tensor(cx, dims) -> Value:
    """The dimensions ``dims`` (ints or symbolic) as a 1-D int64 tensor."""
    arr = np.empty(len(dims), dtype=object)
    arr[:] = list(dims)
    v = cx.sym_value(arr)
    return v


def reshape_at_run_time(cx, x: Value, shape: Value, allowzero: bool) -> Value:
    """``x`` reshaped to the int64 vector ``shape`` read at run time (ONNX Reshape): a 0 copies
    the input's dimension (unless ``allowzero``), one -1 takes what is left; the element count
    is checked when the shape is bound (an error of the run, never a crash)."""
    if shape.type.rank != 1 or not isinstance(shape.shape[0], int):
        raise cx.fail(f"the shape operand must be a 1-D tensor of static length, got {shape.type}")
    r = shape.shape[0]
    dims = list(x.shape)
    numel = product(dims)
    shape = cx.op("cast", [shape], to="int64") if shape.dtype != "int64" else shape
    zero, one, minus = (cx.scalar(c, "int64") for c in (0, 1, -1))
    if not allowzero:
        # a 0 at k copies dims[k]; past the input's rank it is invalid (-2: refused when bound)
        copied = dims_tensor(cx, (dims + [-2] * r)[:r])
        shape = cx.op("where", [cx.op("equal", [shape, zero]), copied, shape])
    hole = cx.op("equal", [shape, minus])
    known = cx.op("reduce_prod", [cx.op("where", [hole, one, shape])], axes=(0,), keepdims=False)
    total = dims_tensor(cx, [numel])
    total = cx.op("reshape", [total], shape=())
    fill = cx.op("div", [total, cx.op("maximum", [known, one])])
    # more than one -1 is invalid: the holes get -2, which the binding refuses
    holes = cx.op("reduce_sum", [cx.op("cast", [hole], to="int64")], axes=(0,), keepdims=False)
    fill = cx.op("where", [cx.op("greater", [holes, one]), cx.scalar(-2, "int64"), fill])
    shape = cx.op("where", [hole, fill, shape])
    limit = [numel] * r if isinstance(numel, int) and numel > 0 else None
    bound, out = bind(cx, shape, "dim", limit, numel=numel)
    return cx.op("reshape_data", [x, bound], shape=tuple(out))


def shape_operand(cx, v: Value, what: str) -> Value:
    """A run-time shape operand as a 1-D int64 tensor of static length."""
    if v.type.rank != 1 or not isinstance(v.shape[0], int):
        raise cx.fail(f"{what} must be a 1-D tensor of static length, got {v.type}")
    return v if v.dtype == "int64" else cx.op("cast", [v], to="int64")


def invalid_if(cx, values: Value, bad: Value) -> Value:
    """``values`` with every element -2 where the scalar or matching ``bad`` holds: the binding
    refuses them (a shape operand that breaks the op's rules is an error of the run)."""
    return cx.op("where", [bad, cx.scalar(-2, "int64"), values])


def constant_of_shape_at_run_time(cx, shape: Value, value: Value) -> Value:
    """ConstantOfShape of a shape read at run time: the value broadcast to the bound shape."""
    shape = shape_operand(cx, shape, "shape")
    bound, dims = bind(cx, shape, "dim")
    return cx.op("broadcast_to", [value, bound], shape=tuple(dims))


def expand_at_run_time(cx, x: Value, shape: Value) -> Value:
    """Expand to a shape read at run time (bidirectional broadcasting): dimensions where ``x``
    has one (or none) take the operand's value, bound at run time; elsewhere the operand must
    be 1 or ``x``'s dimension (checked when bound)."""
    shape = shape_operand(cx, shape, "shape")
    r = max(shape.shape[0], x.type.rank)
    xd = [1] * (r - x.type.rank) + list(x.shape)
    sd = shape
    if shape.shape[0] < r:
        sd = cx.op("concat", [cx.const(np.ones(r - shape.shape[0], np.int64)), shape], axis=0)
    free = [k for k, d in enumerate(xd) if isinstance(d, int) and d == 1]
    fixed = [k for k in range(r) if k not in free]
    # the fixed dims: the operand's value must be 1 or x's dimension
    bad = None
    if fixed:
        got = cx.op("gather", [sd, cx.const(np.array(fixed, np.int64))], axis=0)
        want = cx.op("reshape", [dims_tensor(cx, [xd[k] for k in fixed])], shape=(len(fixed),))
        wrong = cx.op("logical_and", [cx.op("not_equal", [got, cx.scalar(1, "int64")]),
                                      cx.op("not_equal", [got, want])])
        bad = cx.op("reduce_max", [cx.op("cast", [wrong], to="int64")], axes=(0,), keepdims=False)
        bad = cx.op("greater", [bad, cx.scalar(0, "int64")])
    if free:
        vals = cx.op("gather", [sd, cx.const(np.array(free, np.int64))], axis=0)
    else:           # nothing to bind but the check: one symbol (always 1) keeps it in the run
        vals = cx.const(np.ones(1, np.int64))
    if bad is not None:
        vals = invalid_if(cx, vals, bad)
    bound, dims = bind(cx, vals, "dim")
    out = list(xd)
    for k, d in zip(free, dims):
        out[k] = d
    src = x if x.type.rank == r else cx.op("reshape", [x], shape=tuple(xd))
    return cx.op("broadcast_to", [src, bound], shape=tuple(out))


def tile_at_run_time(cx, x: Value, repeats: Value) -> Value:
    """Tile by repeats read at run time: [d0, d1] -> [1, d0, 1, d1] -> broadcast to the bound
    [r0, d0, r1, d1] -> [r0*d0, r1*d1]."""
    repeats = shape_operand(cx, repeats, "repeats")
    dims = list(x.shape)
    if repeats.shape[0] != len(dims):
        raise cx.fail(f"repeats {repeats.type} must hold one value per dimension of {x.type}")
    bound, reps = bind(cx, repeats, "repeat")
    inter = [v for d in dims for v in (1, d)]
    big = [v for d, rp in zip(dims, reps) for v in (rp, d)]
    t = cx.op("broadcast_to", [cx.op("reshape", [x], shape=tuple(inter)), bound], shape=tuple(big))
    return cx.op("reshape", [t], shape=tuple(d * rp for d, rp in zip(dims, reps)))


def range_at_run_time(cx, start: Value, limit: Value, delta: Value) -> Value:
    """Range whose operands are read at run time: its length max(ceil((limit - start) / delta),
    0) is bound (a delta of 0 is an error of the run), then ``start + k * delta``."""
    dtype = start.dtype
    start, limit, delta = (scalar_of(cx, v) for v in (start, limit, delta))
    f64 = [cx.op("cast", [v], to="float64") for v in (start, limit, delta)]
    n = cx.op("ceil", [cx.op("div", [cx.op("sub", [f64[1], f64[0]]), f64[2]])])
    n = cx.op("maximum", [n, cx.scalar(0.0, "float64")])
    zero = cx.op("equal", [delta, cx.scalar(0, dtype)])
    n = invalid_if(cx, cx.op("cast", [cx.op("where", [zero, cx.scalar(0.0, "float64"), n])], to="int64"), zero)
    bound, (length,) = bind(cx, n, "length")
    k = iota(cx, bound, length)
    if dtype == "int64":
        return cx.op("add", [start, cx.op("mul", [k, delta])])
    return cx.op("add", [start, cx.op("mul", [cx.op("cast", [k], to=dtype), delta])])


def element(cx, v: Value, k: int) -> Value:
    """Element ``k`` of the 1-D ``v`` as an int64 scalar."""
    e = cx.op("gather", [v, cx.scalar(k, "int64")], axis=0)
    return e if e.dtype == "int64" else cx.op("cast", [e], to="int64")


def slice_at_run_time(cx, x: Value, starts: Value, ends: Value, axes: list[int], steps: Value | None) -> Value:
    """ONNX Slice whose starts, ends or steps are read at run time (or whose clamping only the
    run can decide): per sliced axis, the clamped start, the step and the length are computed
    in the graph, the length is bound, and a gather reads ``start + k * step``."""
    i64 = lambda c: cx.scalar(c, "int64")  # noqa: E731
    for k, a in enumerate(axes):
        d = dims_tensor(cx, [x.shape[a]])
        d = cx.op("reshape", [d], shape=())
        s, e = element(cx, starts, k), element(cx, ends, k)
        p = element(cx, steps, k) if steps is not None else i64(1)
        s = cx.op("where", [cx.op("less", [s, i64(0)]), cx.op("add", [s, d]), s])
        e = cx.op("where", [cx.op("less", [e, i64(0)]), cx.op("add", [e, d]), e])
        clamp = lambda v, lo, hi: cx.op("minimum", [cx.op("maximum", [v, lo]), hi])  # noqa: E731
        up = cx.op("greater", [p, i64(0)])
        d1 = cx.op("sub", [d, i64(1)])
        s = cx.op("where", [up, clamp(s, i64(0), d), clamp(s, i64(0), d1)])
        e = cx.op("where", [up, clamp(e, i64(0), d), clamp(e, i64(-1), d1)])
        # the count: ceil(span / |step|) without overflow (a step may be huge)
        span = cx.op("maximum", [cx.op("where", [up, cx.op("sub", [e, s]), cx.op("sub", [s, e])]), i64(0)])
        mag = cx.op("abs", [p])
        n = cx.op("add", [cx.op("div", [cx.op("sub", [span, i64(1)]), cx.op("maximum", [mag, i64(1)])]), i64(1)])
        n = cx.op("where", [cx.op("equal", [span, i64(0)]), i64(0), n])
        n = invalid_if(cx, n, cx.op("equal", [p, i64(0)]))
        limit = x.shape[a] if isinstance(x.shape[a], int) else None
        bound, (length,) = bind(cx, n, f"axis{a}", [limit])
        idx = cx.op("add", [s, cx.op("mul", [iota(cx, bound, length), p])])
        x = cx.op("gather", [x, idx], axis=a)
    return x


def nonzero_positions(cx, flat: Value) -> tuple[Value, Sym]:
    """The positions of the nonzero elements of the 1-D ``flat`` (static length n), in order,
    and their count, a data symbol (at most n): the k-th nonzero lies at the number of
    positions whose running count is at most k, found by binary lifting over the running counts
    (log2(n) gathers per output element)."""
    n = flat.shape[0]
    mask = cx.op("cast", [cx.op("cast", [flat], to="bool")], to="int64")
    running = prefix_sum(cx, mask)
    count = cx.op("slice", [running], starts=(n - 1,), ends=(n,), steps=(1,))
    bound, (nz,) = bind(cx, count, "count", [n])
    k = iota(cx, bound, nz)
    pos = None
    step = 1 << (n.bit_length() - 1)
    while step:
        if pos is None:      # the first step: from position 0
            ok = cx.op("less_equal", [cx.op("gather", [running, cx.scalar(step - 1, "int64")], axis=0), k])
            pos = cx.op("where", [ok, cx.scalar(step, "int64"), cx.scalar(0, "int64")])
        else:
            cand = cx.op("add", [pos, cx.scalar(step, "int64")])
            at = cx.op("sub", [cx.op("minimum", [cand, cx.scalar(n, "int64")]), cx.scalar(1, "int64")])
            ok = cx.op("logical_and", [cx.op("less_equal", [cand, cx.scalar(n, "int64")]),
                                       cx.op("less_equal", [cx.op("gather", [running, at], axis=0), k])])
            pos = cx.op("where", [ok, cand, pos])
        step //= 2
    return pos, nz


def pad_at_run_time(cx, x: Value, pads: Value, axes: list[int], mode: str, value: Value,
                    lengths: list | None = None) -> Value:
    """ONNX Pad whose pads (or constant value) are read at run time: per padded axis of size
    d, the new length d + begin + end is bound (negative: an error of the run) and a gather
    reads the source index of every output position (clamped for ``edge``, reflected for
    ``reflect``, wrapped for ``wrap``; ``constant`` puts ``value`` where it falls outside).
    ``lengths`` gives the new lengths where the shape arithmetic knows them (symbolic pads from
    the input's sizes): nothing is bound then."""
    i64 = lambda c: cx.scalar(c, "int64")  # noqa: E731
    k_axes = len(axes)
    if pads.type.rank != 1 or pads.shape[0] != 2 * k_axes:
        raise cx.fail(f"needs {2 * k_axes} pads for axes {axes}, got {pads.type}")
    for k, a in enumerate(axes):
        d = x.shape[a]
        if isinstance(d, int) and d == 0 and mode != "constant":
            raise cx.fail(f"cannot pad the empty axis {a} of {x.type} in mode {mode!r}")
        d_t = cx.op("reshape", [dims_tensor(cx, [d])], shape=())
        begin, end = element(cx, pads, k), element(cx, pads, k + k_axes)
        if lengths is None:
            n = cx.op("add", [cx.op("add", [d_t, begin]), end])
            bound, (length,) = bind(cx, n, f"axis{a}")
            seq = iota(cx, bound, length)
        else:
            length = lengths[k]
            seq = cx.op("arange", [], length=length, start=0, delta=1, dtype="int64")
        src = cx.op("sub", [seq, begin])
        last = cx.op("sub", [d_t, i64(1)])
        if mode in ("reflect", "wrap"):
            # negative pads crop first: reflect or wrap within what is left, [lo, hi)
            lo = cx.op("maximum", [cx.op("neg", [begin]), i64(0)])
            hi = cx.op("sub", [d_t, cx.op("maximum", [cx.op("neg", [end]), i64(0)])])
            kept = cx.op("maximum", [cx.op("sub", [hi, lo]), i64(1)])
            t = cx.op("sub", [seq, cx.op("maximum", [begin, i64(0)])])
            period = kept if mode == "wrap" else cx.op("maximum", [cx.op("mul", [cx.op("sub", [kept, i64(1)]), i64(2)]),
                                                                   i64(1)])
            m = cx.op("fmod", [cx.op("add", [cx.op("fmod", [t, period]), period]), period])
            if mode == "reflect":
                m = cx.op("where", [cx.op("less", [m, kept]), m, cx.op("sub", [period, m])])
            src = cx.op("add", [m, lo])
        inside = cx.op("logical_and", [cx.op("greater_equal", [src, i64(0)]), cx.op("less_equal", [src, last])])
        clamped = cx.op("maximum", [cx.op("minimum", [src, last]), i64(0)])
        shape = [1] * x.type.rank
        shape[a] = length
        out = cx.op("gather", [x, clamped], axis=a)
        if mode == "constant":
            out = cx.op("where", [cx.op("reshape", [inside], shape=tuple(shape)), out, value])
        x = out
    return x


def split_at_run_time(cx, x: Value, axis: int, sizes: Value, n_out: int) -> list[Value]:
    """ONNX Split by sizes read at run time: each size is bound (negative ones, or sizes that
    do not add up to the axis, are an error of the run) and each part gathered from its offset."""
    sizes = shape_operand(cx, sizes, "split")
    if sizes.shape[0] != n_out:
        raise cx.fail(f"split {sizes.type} must hold one size per output ({n_out})")
    d = x.shape[axis]
    d_t = cx.op("reshape", [dims_tensor(cx, [d])], shape=())
    total = cx.op("reduce_sum", [sizes], axes=(0,), keepdims=False)
    sizes = invalid_if(cx, sizes, cx.op("not_equal", [total, d_t]))
    limit = d if isinstance(d, int) else None
    bound, parts = bind(cx, sizes, "part", [limit] * n_out)
    outs, off = [], cx.scalar(0, "int64")
    for k, n in enumerate(parts):
        idx = cx.op("add", [iota(cx, bound, n), off])
        outs.append(cx.op("gather", [x, idx], axis=axis))
        off = cx.op("add", [off, element(cx, bound, k)])
    return outs


def unique_at_run_time(cx, x: Value, sort: bool) -> list[Value]:
    """ONNX Unique of the flattened ``x`` (static length n), or of the rows of the 2-D ``x``
    ([n, m], static: the slices along Unique's axis), computed at run time by pairwise
    comparisons (O(n^2 m): meant for the small tensors Unique sees): an element (row) is a
    *first* when no earlier one equals it; the number of firsts is bound; each first's output
    position is the number of firsts before it (by value, rows compared lexicographically, when
    sorted, else by position); outputs as ONNX's (values, first indices, inverse indices,
    counts)."""
    i64 = lambda c: cx.scalar(c, "int64")  # noqa: E731
    n = x.shape[0]
    rows = x.type.rank == 2
    m = x.shape[1] if rows else 1
    tail = (m,) if rows else ()
    col = cx.op("reshape", [x], shape=(n, 1) + tail)
    row = cx.op("reshape", [x], shape=(1, n) + tail)
    pos = cx.const(np.arange(n, dtype=np.int64))
    earlier = cx.const(np.arange(n)[None, :] < np.arange(n)[:, None])        # [i, j]: j < i

    def all_equal(a, b):
        eq = cx.op("equal", [a, b])
        if not rows:
            return eq
        return cx.op("equal", [cx.op("reduce_min", [cx.op("cast", [eq], to="int64")], axes=(2,), keepdims=False),
                               i64(1)])

    same = all_equal(col, row)                                                # [i, j]: x[i] == x[j]
    dup = cx.op("reduce_max", [cx.op("cast", [cx.op("logical_and", [same, earlier])], to="int64")], axes=(1,),
                keepdims=False)
    first = cx.op("equal", [dup, i64(0)])                                    # [n]
    first_i = cx.op("cast", [first], to="int64")
    count = cx.op("reduce_sum", [first_i], axes=(0,), keepdims=True)
    bound, (u,) = bind(cx, count, "unique", [n])
    # order[i, j]: firsts j that come before element i's value in the output
    if not sort:
        before = earlier
    elif not rows:
        before = cx.op("less", [row, col])
    else:
        # row j before row i: less at the first position where they differ
        at = cx.const(np.arange(m, dtype=np.int64).reshape(1, 1, m))
        differ = cx.op("reduce_min", [cx.op("where", [cx.op("not_equal", [row, col]), at, i64(m)])], axes=(2,),
                       keepdims=True)                                        # [i, j, 1]
        less_there = cx.op("logical_and", [cx.op("less", [row, col]), cx.op("equal", [at, differ])])
        before = cx.op("greater", [cx.op("reduce_max", [cx.op("cast", [less_there], to="int64")], axes=(2,),
                                         keepdims=False), i64(0)])
    before = cx.op("logical_and", [before, cx.op("reshape", [first], shape=(1, n))])
    rank = cx.op("reduce_sum", [cx.op("cast", [before], to="int64")], axes=(1,), keepdims=False)    # [n]
    if not sort:
        # element i's output position is its first occurrence's rank
        firstpos = cx.op("reduce_min", [cx.op("where", [same, cx.op("reshape", [pos], shape=(1, n)), i64(n)])],
                         axes=(1,), keepdims=False)
        rank = cx.op("gather", [rank, firstpos], axis=0)
    slots = cx.op("reshape", [iota(cx, bound, u)], shape=(u, 1))                  # [u, 1]
    hot = cx.op("logical_and", [cx.op("equal", [cx.op("reshape", [rank], shape=(1, n)), slots]),
                                cx.op("reshape", [first], shape=(1, n))])        # [u, n]
    index = cx.op("reduce_sum", [cx.op("mul", [cx.op("cast", [hot], to="int64"), cx.op("reshape", [pos], shape=(1, n))])],
                  axes=(1,), keepdims=False)                                     # [u]
    values = cx.op("gather", [x, index], axis=0)
    inverse = rank
    counts = cx.op("reduce_sum", [cx.op("cast", [all_equal(cx.op("reshape", [values], shape=(u, 1) + tail), row)],
                                        to="int64")], axes=(1,), keepdims=False)
    return [values, index, inverse, counts]

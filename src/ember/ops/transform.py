"""Injective ops that move data without arithmetic: reshape, transpose, slice, concat, pad,
broadcast_to, gather; check_index, the run-time check of indices computed from data;
check_present, that of an optional input holding a value; and
arange, the index sequence whose length may be symbolic."""

from __future__ import annotations

import numpy as np

from .. import te
from ..errors import IndexOutOfRangeError
from ..graph.types import TensorType, is_int, is_float, np_dtype, DTYPES
from ..symbolic import Sym, compare
from .base import Op, Pattern, REQUIRED, register
from .reduce import normalize_axes


def _prod(xs):
    n = 1
    for x in xs:
        n = n * x
    return n


def flat_index(shape, idx):
    """Row-major linear index of ``idx`` in ``shape`` as an expression."""
    lin = None
    for d, i in zip(shape, idx):
        lin = i if lin is None else lin * d + i
    return te.const(0, "int64") if lin is None else lin


def unflat_index(shape, lin):
    """Inverse of :func:`flat_index`."""
    out = []
    for d in reversed(shape):
        out.append(lin % d if d != 1 else te.const(0, "int64"))
        lin = lin // d
    return tuple(reversed(out))


@register
class Reshape(Op):
    """Reshape to a fully known shape (frontends resolve 0 and -1).  ``checked``: symbolic element
    counts that the algebra cannot prove equal are equal by a check of the graph
    (``Graph.checks``, made before anything runs)."""

    name = "reshape"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"shape": REQUIRED, "checked": False}

    def infer(self, a, x):
        t = TensorType(tuple(a["shape"]), x.dtype)
        shape = t.shape
        if any(isinstance(d, int) and d < 0 for d in shape):
            raise self.fail(f"target shape {list(shape)} has a negative dimension")
        if x.is_static and t.is_static:
            if _prod(shape) != x.size:
                raise self.fail(f"cannot reshape {x} ({x.size} elements) to {list(shape)} ({_prod(shape)} elements)")
        elif _prod(shape) != x.num_elements and not a["checked"]:
            raise self.fail(f"cannot reshape {x} ({x.num_elements} elements) to {t} ({_prod(shape)} elements): "
                            "the element counts differ")
        return t

    def reference(self, a, x):
        return x.reshape(a["shape"])

    def compute(self, a, x):
        shape = TensorType(tuple(a["shape"]), x.dtype).shape
        return te.compute(shape, lambda *i: x[reshape_index(tuple(x.shape), tuple(shape), i)], name="reshape")


def reshape_index(in_shape, out_shape, idx) -> tuple:
    """The input index that output index ``idx`` of a reshape reads.

    The dims split into runs with equal products (numpy's compatible groups): a run of one input
    dim split into several output dims, several merged into one, or one kept.  Each input index
    is computed from its own run only, so splitting C into [C/cb, cb] reads ``c = cb_i * cb + i``
    rather than going through the whole tensor's linear index (whose divisions and remainders
    the loop-IR simplifier cannot always remove, e.g. under a padding offset).  Unit dims read
    index 0.
    """
    if not all(isinstance(d, int) for d in (*in_shape, *out_shape)):
        return _kept_dims_index(in_shape, out_shape, idx)
    if 0 in in_shape or 0 in out_shape:
        return unflat_index(in_shape, flat_index(out_shape, idx))     # empty: never read
    zero = te.const(0, "int64")
    ins = [k for k, d in enumerate(in_shape) if d != 1]
    outs = [k for k, d in enumerate(out_shape) if d != 1]
    result = [zero] * len(in_shape)
    i = j = 0
    while i < len(ins) and j < len(outs):
        gi, gj = [ins[i]], [outs[j]]
        pi, pj = in_shape[ins[i]], out_shape[outs[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                gi.append(ins[i])
                pi *= in_shape[ins[i]]
                i += 1
            else:
                gj.append(outs[j])
                pj *= out_shape[outs[j]]
                j += 1
        lin = flat_index([out_shape[k] for k in gj], [idx[k] for k in gj])
        rest = pi
        for n, k in enumerate(gi):
            rest //= in_shape[k]
            v = lin // rest if rest != 1 else lin
            result[k] = v if n == 0 else v % in_shape[k]
    return tuple(result)


def _kept_dims_index(src, dst, idx):
    """``reshape_index`` with symbolic dims: leading and trailing dims that the reshape keeps
    are read directly, so a symbolic dim is divided by only when the reshape merges or splits
    it."""
    lead = 0
    while lead < min(len(src), len(dst)) and src[lead] == dst[lead]:
        lead += 1
    trail = 0
    while trail < min(len(src), len(dst)) - lead and src[len(src) - 1 - trail] == dst[len(dst) - 1 - trail]:
        trail += 1
    mid_src, mid_dst = src[lead:len(src) - trail], dst[lead:len(dst) - trail]
    inner = unflat_index(mid_src, flat_index(mid_dst, idx[lead:len(dst) - trail])) if mid_src else ()
    return tuple(idx[:lead]) + tuple(inner) + tuple(idx[len(dst) - trail:])


@register
class Transpose(Op):
    name = "transpose"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"perm": REQUIRED}

    def infer(self, a, x):
        perm = tuple(a["perm"])
        if sorted(perm) != list(range(x.rank)):
            raise self.fail(f"perm {list(perm)} is not a permutation of the {x.rank} axes of {x}")
        return TensorType(tuple(x.shape[p] for p in perm), x.dtype)

    def reference(self, a, x):
        return np.ascontiguousarray(np.transpose(x, a["perm"]))

    def compute(self, a, x):
        perm = a["perm"]
        inv = [perm.index(k) for k in range(len(perm))]
        shape = tuple(x.shape[p] for p in perm)
        return te.compute(shape, lambda *i: x[tuple(i[inv[k]] for k in range(len(perm)))], name="transpose")


def slice_extent(start, end, step: int):
    """Elements of a slice; start and end may be symbolic when the result is never negative."""
    n = (end - start + step - 1) // step if step > 0 else (start - end + (-step) - 1) // (-step)
    if isinstance(n, int):
        return max(0, n)
    if compare(n, ">=", 0):
        return n
    raise TypeError(f"the length of a slice from {start} to {end} (step {step}) may be negative")


@register
class Slice(Op):
    """Strided slice with one (start, end, step) per axis, already clamped by the frontend:
    start in [0, dim) (or dim for an empty slice), end in [-1, dim]."""

    name = "slice"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"starts": REQUIRED, "ends": REQUIRED, "steps": REQUIRED}

    def infer(self, a, x):
        st, en, sp = a["starts"], a["ends"], a["steps"]
        if not len(st) == len(en) == len(sp) == x.rank:
            raise self.fail(f"needs one start/end/step per axis of {x}")
        if any(s == 0 for s in sp):
            raise self.fail("step 0 is not allowed")
        # a whole axis keeps its size, whatever the algebra can prove of its sign
        return TensorType(tuple(d if isinstance(s, int) and s == 0 and p == 1 and e == d else slice_extent(s, e, p)
                                for s, e, p, d in zip(st, en, sp, x.shape)), x.dtype)

    def reference(self, a, x):
        sl = tuple(slice(s, e if e >= 0 else None, p) for s, e, p in zip(a["starts"], a["ends"], a["steps"]))
        return np.ascontiguousarray(x[sl])

    def compute(self, a, x):
        shape = self.infer(a, TensorType(x.shape, x.dtype)).shape
        return te.compute(shape, lambda *i: x[tuple(s + ii * p if p != 1 else ii if isinstance(s, int) and s == 0
                                                    else s + ii for s, p, ii in zip(a["starts"], a["steps"], i))],
                          name="slice")


@register
class Concat(Op):
    name = "concat"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"axis": REQUIRED}
    num_inputs = (1, 1 << 30)

    def infer(self, a, *xs):
        (ax,) = normalize_axes((a["axis"],), xs[0].rank, self)
        dts = {x.dtype for x in xs}
        if len(dts) != 1:
            raise self.fail(f"operands must share a dtype, got {', '.join(map(str, xs))}")
        total = 0
        for x in xs:
            if x.rank != xs[0].rank or any(d != e for k, (d, e) in enumerate(zip(x.shape, xs[0].shape)) if k != ax):
                raise self.fail(f"operands {', '.join(map(str, xs))} differ outside axis {ax}")
            total = total + x.shape[ax]
        shape = list(xs[0].shape)
        shape[ax] = total
        return TensorType(tuple(shape), xs[0].dtype)

    def reference(self, a, *xs):
        return np.concatenate(xs, axis=a["axis"])

    def compute(self, a, *xs):
        ax = a["axis"] % len(xs[0].shape)
        shape = list(xs[0].shape)
        shape[ax] = sum(x.shape[ax] for x in xs)

        offsets, off = [], 0
        for x in xs:
            offsets.append(off)
            off += x.shape[ax]

        def f(*i):
            # the input whose range [offset, offset + extent) holds i[ax]: later ones win
            expr = None
            for x, o in zip(xs, offsets):
                if isinstance(x.shape[ax], int) and x.shape[ax] == 0:
                    continue
                shifted = not (isinstance(o, int) and o == 0)
                idx = tuple(ii - o if k == ax and shifted else ii for k, ii in enumerate(i))
                expr = x[idx] if expr is None else te.select(te.ge(i[ax], te.const(o, "int64")), x[idx], expr)
            return te.const(0, xs[0].dtype) if expr is None else expr

        return te.compute(tuple(shape), f, name="concat")


@register
class Pad(Op):
    """Pad with ``pads`` = begins of every axis then ends of every axis (may be negative)."""

    name = "pad"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"pads": REQUIRED, "mode": "constant", "value": 0.0}

    def infer(self, a, x):
        pads = a["pads"]
        if len(pads) != 2 * x.rank:
            raise self.fail(f"needs {2 * x.rank} pads for {x}, got {len(pads)}")
        if a["mode"] not in ("constant", "reflect", "edge", "wrap"):
            raise self.fail(f"unknown mode {a['mode']!r}")
        r = x.rank
        shape = tuple(d + pads[k] + pads[k + r] for k, d in enumerate(x.shape))
        # (a symbolic size that only some inputs make negative is the frontend's check)
        if any(compare(d, "<", 0) is True for d in shape):
            raise self.fail(f"pads {list(pads)} make a negative dimension from {x}")
        return TensorType(shape, x.dtype)

    def reference(self, a, x):
        r = x.ndim
        pads = a["pads"]
        # negative pads crop first
        crop = tuple(slice(max(0, -pads[k]), x.shape[k] - max(0, -pads[k + r])) for k in range(r))
        x = x[crop]
        width = [(max(0, pads[k]), max(0, pads[k + r])) for k in range(r)]
        if a["mode"] == "constant":
            return np.pad(x, width, mode="constant", constant_values=np.array(a["value"]).astype(x.dtype))
        return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[a["mode"]])

    def compute(self, a, x):
        r = len(x.shape)
        pads = a["pads"]
        shape = tuple(d + pads[k] + pads[k + r] for k, d in enumerate(x.shape))
        if a["mode"] != "constant":
            return self._compute_index_mode(a, x, shape)

        def f(*i):
            idx, conds = [], []
            for k in range(r):
                j = i[k] - pads[k] if pads[k] else i[k]
                idx.append(j)
                if pads[k] > 0:
                    conds.append(te.ge(j, te.const(0, "int64")))
                if pads[k + r] > 0:
                    conds.append(te.lt(j, te.const(x.shape[k], "int64")))
            if not conds:
                return x[tuple(idx)]
            cond = conds[0]
            for c in conds[1:]:
                cond = te.logical_and(cond, c)
            return te.select(cond, x[tuple(idx)], te.const(a["value"], x.dtype))

        return te.compute(shape, f, name="pad")

    @staticmethod
    def _compute_index_mode(a, x, shape):
        """reflect / edge / wrap: every output element reads one input element.  Negative pads
        crop first (as the reference does), then the cropped axis is extended."""
        r = len(x.shape)
        pads, mode = a["pads"], a["mode"]

        def source(k, i):
            n = x.shape[k]
            c0, c1 = max(0, -pads[k]), max(0, -pads[k + r])
            p0, p1 = max(0, pads[k]), max(0, pads[k + r])
            m = n - c0 - c1                   # extent of the cropped axis
            if p0 == 0 and p1 == 0:
                return i + c0 if c0 else i
            if isinstance(m, Sym):
                return symbolic_source(i, m, c0, p0)
            if m <= 0:
                return te.const(0, "int64")   # the output is empty along k
            if p0 == 0 and p1 == 0:
                return i + c0 if c0 else i
            j = i - p0                        # in [-p0, m + p1)
            if mode == "edge" or m == 1:
                j = te.minimum(te.maximum(j, te.const(0, "int64")), te.const(m - 1, "int64"))
            elif mode == "wrap":
                j = (j + ((p0 + m - 1) // m) * m) % m
            else:                             # reflect: a triangle wave of period 2 (m - 1)
                period = 2 * (m - 1)
                t = (j + ((p0 + period - 1) // period) * period) % period
                j = te.minimum(t, te.const(period, "int64") - t)
            return j + c0 if c0 else j

        def symbolic_source(i, m, c0, p0):
            # the same over a symbolic extent, its period at least 1 (an extent of 1 or less,
            # which a reflection cannot take, reads its first element)
            one, me = te.const(1, "int64"), te.const(m)
            j = i - p0
            if mode == "edge":
                j = te.minimum(te.maximum(j, te.const(0, "int64")), te.maximum(me - one, te.const(0, "int64")))
            else:
                period = te.maximum(me, one) if mode == "wrap" else te.maximum((me - one) * 2, one)
                t = (j + ((period + (p0 - 1)) // period) * period) % period
                j = t if mode == "wrap" else te.minimum(t, period - t)
            return j + c0 if c0 else j

        return te.compute(shape, lambda *i: x[tuple(source(k, i[k]) for k in range(r))], name="pad")


@register
class BroadcastTo(Op):
    """``x`` broadcast to ``shape``.  An optional second operand, the output of the
    ``bind_dims`` node that binds symbols of ``shape`` from data, only orders it after that node
    (ConstantOfShape, Expand and Tile with run-time shapes)."""

    name = "broadcast_to"
    moves_data = True
    pattern = Pattern.BROADCAST
    attrs = {"shape": REQUIRED}
    num_inputs = (1, 2)

    def infer(self, a, x, *after):
        shape = tuple(a["shape"])
        off = len(shape) - x.rank
        if off < 0 or any(d != 1 and d != shape[off + k] for k, d in enumerate(x.shape)):
            raise self.fail(f"cannot broadcast {x} to {list(shape)}")
        return TensorType(shape, x.dtype)

    def reference(self, a, x, *after):
        return np.ascontiguousarray(np.broadcast_to(x, a["shape"]))

    def compute(self, a, x, *after):
        from .elementwise import broadcast_index

        shape = tuple(a["shape"])
        return te.compute(shape, lambda *i: x[broadcast_index(x.shape, shape, i)], name="broadcast")


@register
class Gather(Op):
    """out = take(data, indices, axis); negative indices count from the end."""

    name = "gather"
    moves_data = True
    pattern = Pattern.INJECTIVE
    attrs = {"axis": 0}
    num_inputs = 2

    def infer(self, a, x, idx):
        (ax,) = normalize_axes((a["axis"],), x.rank, self)
        if not is_int(idx.dtype):
            raise self.fail(f"indices must be integers, got {idx}")
        return TensorType(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)

    def reference(self, a, x, idx):
        ax = a["axis"] % x.ndim
        n = x.shape[ax]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = int(idx.reshape(-1)[np.flatnonzero((idx.reshape(-1) < -n) | (idx.reshape(-1) >= n))[0]])
            raise IndexOutOfRangeError(f"index {bad} is out of range [-{n}, {n}) for axis {ax} of the data "
                                       f"[{', '.join(str(d) for d in x.shape)}]", op=self.name)
        return np.take(x, np.where(idx < 0, idx + n, idx), axis=ax)

    def compute(self, a, x, idx):
        ax = a["axis"] % len(x.shape)
        ir = len(idx.shape)
        shape = tuple(x.shape[:ax]) + tuple(idx.shape) + tuple(x.shape[ax + 1:])
        n = x.shape[ax]
        what = f"axis {ax} of the data [{', '.join(str(d) for d in x.shape)}]"

        def f(*i):
            # an index outside [-n, n) is an error of the run; the kernel goes on with 0
            j = te.checked_index(te.cast("int64", idx[i[ax:ax + ir]]), n, what)
            v = x[i[:ax] + (j,) + i[ax + ir:]]
            if isinstance(n, int) and n > 0:
                return v
            # an axis that is (or may be) empty has no element to read: every index is an
            # error there, and the value (the index, 0) only keeps the check in the kernel
            return te.select(te.gt(te.const(n, "int64"), te.const(0, "int64")), v, te.cast(x.dtype, j))

        return te.compute(shape, f, name="gather")


@register
class CheckIndex(Op):
    """Indices into axes of some data, checked at run time: ``out = idx + d if idx < 0 else idx``
    for idx in [-d, d), and any other idx an error of the run (an op that indexes through
    computed linear indices, such as ONNX's GatherElements and GatherND, checks each axis's
    index with it first).  ``dims`` holds one extent ``d`` for every element, or one per
    position along the last axis (index tuples); ``what`` says, one string per extent, which
    axis of which data each indexes, for the error message."""

    name = "check_index"
    pattern = Pattern.ELEMWISE
    attrs = {"dims": REQUIRED, "what": REQUIRED}
    num_inputs = 1

    def infer(self, a, idx):
        dims, what = tuple(a["dims"]), tuple(a["what"])
        if not is_int(idx.dtype):
            raise self.fail(f"indices must be integers, got {idx}")
        if not dims or len(what) != len(dims):
            raise self.fail(f"needs one description per extent, got dims={list(dims)}, what={list(what)}")
        if len(dims) > 1 and (idx.rank == 0 or idx.shape[-1] != len(dims)):
            raise self.fail(f"{len(dims)} extents need indices whose last axis has {len(dims)} elements, got {idx}")
        if any(isinstance(d, int) and d < 0 for d in dims):
            raise self.fail(f"negative extent in {list(dims)}")
        return TensorType(idx.shape, "int64")

    def reference(self, a, idx):
        d = np.array([int(x) for x in a["dims"]], dtype=np.int64)
        d = d[0] if len(d) == 1 else d
        i = idx.astype(np.int64)
        bad = (i < -d) | (i >= d)
        if bad.any():
            k = np.argwhere(bad)[0]
            n = int(d if np.ndim(d) == 0 else d[k[-1]])
            what = a["what"][0 if len(a["what"]) == 1 else k[-1]]
            raise IndexOutOfRangeError(f"index {int(i[tuple(k)])} is out of range [-{n}, {n}) for {what}",
                                       op=self.name)
        return np.where(i < 0, i + d, i)

    def compute(self, a, idx):
        dims, what = tuple(a["dims"]), tuple(a["what"])

        def f(*i):
            j = te.cast("int64", idx[i])
            out = None
            for k in reversed(range(len(dims))):
                c = te.checked_index(j, dims[k], what[k])
                out = c if out is None else te.select(te.eq(i[-1], te.const(k, "int64")), c, out)
            return out

        return te.compute(tuple(idx.shape), f, name="check_index")


@register
class CheckPresent(Op):
    """The run-time check that an optional holds a value: ``flag`` (a bool scalar, an optional
    graph input's presence) false is an error of the run naming ``what``; the output, int64 0,
    orders what reads the optional's value after the check (the ``broadcast_to`` of ONNX's
    OptionalGetElement).  Always a kernel of its own, so the check runs once whatever the
    value's size."""

    name = "check_present"
    pattern = Pattern.OPAQUE
    attrs = {"what": REQUIRED}
    num_inputs = 1

    def infer(self, a, flag):
        if flag.dtype != "bool" or flag.shape != ():
            raise self.fail(f"the presence flag must be a bool scalar, got {flag}")
        if not isinstance(a["what"], str):
            raise self.fail(f"what must be a string, got {a['what']!r}")
        return TensorType((), "int64")

    def reference(self, a, flag):
        if not bool(flag):
            raise IndexOutOfRangeError(f"index 0 into {a['what']}, which is empty", op=self.name)
        return np.array(0, np.int64)

    def compute(self, a, flag):
        # the index 0 checked against an extent of 1 where the flag holds, 0 (empty) where not
        return te.compute((), lambda: te.checked_index(te.const(0, "int64"), te.cast("int64", flag[()]), a["what"]),
                          name="check_present")


@register
class Arange(Op):
    """The sequence ``start, start + delta, ...`` of ``length`` elements (``length`` and, for
    integer dtypes, ``start`` and ``delta`` may be symbolic: ONNX ``Range`` over a run-time
    length, or a symbolic size needed as a tensor).  Optional operands, scalars of the dtype,
    give ``start`` and ``delta`` as data read at run time instead (a Range whose operands are
    computed from inputs); the attributes are then ignored."""

    name = "arange"
    pattern = Pattern.INJECTIVE
    attrs = {"length": REQUIRED, "start": 0, "delta": 1, "dtype": "int64"}
    num_inputs = (0, 2)

    def infer(self, a, *operands):
        if a["dtype"] not in DTYPES or a["dtype"] == "bool":
            raise self.fail(f"cannot make a sequence of dtype {a['dtype']!r}")
        if not is_int(a["dtype"]) and (isinstance(a["start"], Sym) or isinstance(a["delta"], Sym)):
            raise self.fail(f"a symbolic start or delta needs an integer dtype, got {a['dtype']}")
        for t in operands:
            if t.rank != 0 or t.dtype != a["dtype"]:
                raise self.fail(f"start and delta operands must be {a['dtype']} scalars, got {t}")
        t = TensorType((a["length"],), a["dtype"])
        if isinstance(t.shape[0], int) and t.shape[0] < 0:
            raise self.fail(f"length {t.shape[0]} is negative")
        return t

    def reference(self, a, *operands):
        n = a["length"]
        start = operands[0][()] if operands else a["start"]
        delta = operands[1][()] if len(operands) > 1 else a["delta"]
        dt = np_dtype(a["dtype"])
        if is_float(a["dtype"]):
            return (np.array(start, dt) + np.arange(n, dtype=dt) * np.array(delta, dt)).astype(dt)
        with np.errstate(over="ignore"):
            return (np.int64(start) + np.arange(n, dtype=np.int64) * np.int64(delta)).astype(dt)

    def compute(self, a, *operands):
        dt = a["dtype"]
        if not operands:
            if is_float(dt):
                return te.compute((a["length"],),
                                  lambda i: te.const(a["start"], dt) + te.cast(dt, i) * te.const(a["delta"], dt),
                                  name="arange")
            return te.compute((a["length"],), lambda i: te.cast(dt, te.const(a["start"], "int64") + i * a["delta"]),
                              name="arange")
        start = operands[0][()]
        delta = operands[1][()] if len(operands) > 1 else te.const(a["delta"], dt if is_float(dt) else "int64")
        if is_float(dt):
            return te.compute((a["length"],), lambda i: start + te.cast(dt, i) * delta, name="arange")
        start, delta = te.cast("int64", start), te.cast("int64", delta)
        return te.compute((a["length"],), lambda i: te.cast(dt, start + i * delta), name="arange")

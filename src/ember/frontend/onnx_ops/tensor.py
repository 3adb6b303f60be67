"""ONNX ops that make, reshape or move tensors: Constant, Shape, Reshape, Flatten, (Un)Squeeze,
Transpose, Concat, Split, Slice, Pad, Expand, Tile, Gather(Elements), OneHot, ..."""

from __future__ import annotations

import math

import numpy as np

from ... import limits
from ...errors import InvalidModelError, ShapeError, UnsupportedOpError
from ...graph.ir import Value
from ...graph.types import NARROW_INT_DTYPES, broadcast_shapes, is_int, np_dtype
from ...symbolic import Sym, compare, exact_div, product
from ..onnx import OperandNotConstantError, onnx_dtype
from . import data_dims, translates
from .arith import T


def norm_axis(cx, axis: int, rank: int, what: str = "axis") -> int:
    """An axis in [-rank, rank) as a non-negative index."""
    if not -rank <= axis < max(rank, 1):
        raise cx.fail(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def pick_by_axis(cx, axis, rank: int, count: int, make, what: str = "axis", shaped: bool = False):
    """The result for an axis known at run time only (``axis``, a one-element integer tensor
    counting from the back of ``rank`` dimensions when negative): ``make(k)`` builds the result
    for axis ``k`` in ``0..count-1``, all of one shape.  They are stacked and the one named is
    picked by a ``gather``, which refuses an axis outside ``0..count-1`` (once normalized) at run
    time as an index error.  Every candidate is computed: for operands that change no shape,
    over few axes.  With ``shaped`` the candidates (static, of one rank) may differ in shape:
    each is padded to the largest, and the dimensions that differ are bound (data symbols) to
    the named candidate's and cut to them; an axis along which ``make`` refuses the op is then
    refused at run time, as an index error, when the run names it."""
    if axis.type.num_elements != 1 or not is_int(axis.dtype):
        raise cx.fail(f"{what} must be one integer, got {axis.type}")
    results, refused = [], []
    for k in range(count):
        try:
            results.append(make(k))
        except OperandNotConstantError:
            raise                       # another operand, named by its own error
        except (InvalidModelError, UnsupportedOpError) as e:
            why = str(e).split("] ", 1)[-1].removeprefix(f"{cx.op_type} node {cx.name!r}: ")
            if not shaped:
                raise cx.needs_constant(axis, what, f"may name axis {k}, along which the op is refused ({why})") from None
            results.append(None)
            refused.append(f"{k} ({why})")
    ok = [v for v in results if v is not None]
    if not ok:
        raise cx.needs_constant(axis, what, f"names one of the axes along which the op is refused: {', '.join(refused)}")
    shapes = {tuple(v.shape) for v in ok}
    if len(shapes) != 1 and (not shaped or len({len(sh) for sh in shapes}) != 1
                             or not all(isinstance(d, int) for sh in shapes for d in sh)):
        raise cx.needs_constant(axis, what, "decides the output's shape ("
                                + " or ".join(str(list(s)) for s in sorted(shapes, key=str)) + ")")
    big = tuple(max(sh[d] for sh in shapes) for d in range(len(next(iter(shapes)))))
    varying = [d for d in range(len(big)) if len({sh[d] for sh in shapes}) > 1]
    n = len(ok)
    a = reshape(cx, axis if axis.dtype == "int64" else cx.op("cast", [axis], to="int64"), ())
    zero = cx.scalar(0, "int64")
    a = cx.op("where", [cx.op("less", [a, zero]), cx.op("add", [a, cx.scalar(rank, "int64")]), a])
    # still negative: below -rank; made n, which the check refuses (it would count it from the back)
    a = cx.op("where", [cx.op("less", [a, zero]), cx.scalar(count, "int64"), a])
    bad = f"; refused along {', '.join(refused)}" if refused else ""
    if refused:
        # the candidate of each axis; n for an axis refused or out of range
        slots, at = [], 0
        for v in results + [None]:
            slots.append(n if v is None else at)
            at += v is not None
        a = cx.op("gather", [cx.const(np.array(slots, np.int64)), cx.op("minimum", [a, cx.scalar(count, "int64")])],
                  axis=0)
    a = cx.op("check_index", [a], dims=(n,),
              what=(f"the {what} of this {cx.op_type} (axes 0..{count - 1}, or counted back from rank {rank}{bad})",))
    if n == 1:
        # (a gather along an axis of one element would need no index, and lose the check)
        return cx.op("where", [cx.op("equal", [a, zero]), ok[0], cx.scalar(0, ok[0].dtype)])
    table = np.array([[v.shape[d] for d in varying] for v in ok], np.int64)
    if varying:
        ok = [cx.op("pad", [v], pads=(0,) * len(big) + tuple(b - d for b, d in zip(big, v.shape)), mode="constant",
                    value=0) if tuple(v.shape) != big else v for v in ok]
    stacked = cx.op("concat", [reshape(cx, v, (1,) + big) for v in ok], axis=0)
    out = cx.op("gather", [stacked, a], axis=0)
    if not varying:
        return out
    # the named candidate's sizes along the axes where they differ, bound, and the padding cut off
    sizes = cx.op("gather", [cx.const(table), a], axis=0)
    bound, dims = data_dims.bind(cx, sizes, [f"{what}_dim{d}" for d in varying], limits=[big[d] for d in varying])
    for d, sym in zip(varying, dims):
        out = cx.op("gather", [out, data_dims.iota(cx, bound, sym)], axis=d)
    return out


def norm_axes(cx, axes, rank: int, what: str = "axes") -> list[int]:
    out = [norm_axis(cx, a, rank, what) for a in axes]
    if len(set(out)) != len(out):
        raise cx.fail(f"{what} {list(axes)} repeat an axis")
    return out


def static_shape(cx, v, what: str = "input") -> tuple[int, ...]:
    if not v.type.is_static:
        raise cx.fail(f"{what} '{v.name}' has the symbolic shape {v.type}; a static shape is needed")
    return tuple(v.shape)


def prod(xs):
    """The product of dimensions, symbolic where any is."""
    n = 1
    for x in xs:
        n = n * (x if isinstance(x, Sym) else int(x))
    return n


def reshape(cx, v, shape):
    return cx.op("reshape", [v], shape=tuple(d if isinstance(d, Sym) else int(d) for d in shape))


# ---- aliases and constants ------------------------------------------------------------------

@translates("Identity")
def identity(cx):
    return cx.input(0)


@translates("Dropout")
def dropout(cx):
    # inference: the output is the input; the mask, when read, keeps everything
    x = cx.input(0)
    ratio, training = cx.known_input(1), cx.known_input(2)
    keeps_all = ratio is not None and float(np.asarray(ratio).reshape(-1)[0]) == 0.0
    inference = not cx.has_input(2) or (training is not None and not bool(np.any(training)))
    if not inference and not keeps_all and training is not None and (ratio is not None or not cx.has_input(1)):
        raise cx.unsupported("training_mode with a ratio other than 0 (random dropping)")
    if not inference and not keeps_all:
        # training_mode or the ratio known at run time only: a run in training mode with a
        # ratio other than 0 is refused then (random dropping); the output goes through the check
        t = cx.input(2)
        if t.type.num_elements != 1:
            raise cx.fail(f"training_mode must hold one value, got {t.type}")
        drops = reshape(cx, t if t.dtype == "bool" else cx.op("not_equal", [t, cx.scalar(0, t.dtype)]), ())
        if cx.has_input(1):
            r = reshape(cx, cx.input(1), ())
            drops = cx.op("logical_and", [drops, cx.op("not_equal", [r, cx.scalar(0, r.dtype)])])
        flag = cx.op("where", [drops, cx.scalar(1, "int64"), cx.scalar(0, "int64")])
        ok = cx.op("check_index", [flag], dims=(1,),
                   what=("Dropout in training mode with a ratio other than 0 (random dropping, which Ember "
                         "does not run): 1 means it was asked for",))
        # (ok is 0 when the run goes on; read by every element, so the check stays in the kernel)
        x = cx.op("where", [cx.op("equal", [ok, cx.scalar(0, "int64")]), x, cx.scalar(0, x.dtype)])
    outs = [x]
    if cx.output_used(1):
        one = cx.scalar(1, "bool" if cx.opset >= 7 else x.dtype)
        outs.append(cx.op("broadcast_to", [one], shape=tuple(x.shape)))
    return outs


@translates("Constant")
def constant(cx):
    node = cx.node
    if len(node.attribute) != 1:
        raise cx.fail(f"needs exactly one value attribute, got {[a.name for a in node.attribute]}")
    name = node.attribute[0].name
    if name == "value":
        t = node.attribute[0].t
        dtype = onnx_dtype(t.data_type, "value", cx.name, cx.op_type)
        return cx.const(cx.attr("value"), dtype)
    if name == "value_float":
        return cx.const(np.array(cx.attr(name), dtype=np.float32))
    if name == "value_floats":
        return cx.const(np.array(cx.attr(name), dtype=np.float32))
    if name == "value_int":
        return cx.const(np.array(cx.attr(name), dtype=np.int64))
    if name == "value_ints":
        return cx.const(np.array(cx.attr(name), dtype=np.int64))
    raise cx.unsupported(f"attribute '{name}'")


@translates("Shape")
def shape(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    start, end = cx.attr("start", 0), cx.attr("end", r)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = min(max(end + r if end < 0 else end, 0), r)
    return cx.sym_value(np.array(dims[start:end] or [], dtype=object).reshape(-1))


@translates("Size")
def size(cx):
    return cx.sym_value(np.array(product(cx.input(0).shape), dtype=object))


@translates("ConstantOfShape")
def constant_of_shape(cx):
    run_time = data_dims.runtime_operand(cx, 0)
    dims = cx.dims_input(0, "shape", required=True) if run_time is None else []
    if any(isinstance(d, int) and d < 0 for d in dims):
        raise cx.fail(f"shape {dims} has a negative dimension")
    if cx.has_attr("value"):
        val = np.asarray(cx.attr("value"))
        if val.size != 1:
            raise cx.fail(f"value must hold one element, got shape {list(val.shape)}")
        dtype = onnx_dtype(cx.node.attribute[0].t.data_type, "value", cx.name, cx.op_type)
    else:
        val, dtype = np.zeros((), np.float32), "float32"
    if run_time is not None:
        return data_dims.constant_of_shape_at_run_time(cx, run_time, cx.const(val.reshape(()), dtype))
    if any(isinstance(d, Sym) for d in dims) or not limits.may_fold(product(dims) * val.dtype.itemsize, 0):
        # a symbolic shape, or too large a constant: the value broadcast at run time
        return cx.op("broadcast_to", [cx.const(val.reshape(()), dtype)], shape=tuple(dims))
    return cx.const(np.full(dims, val.reshape(()), dtype=val.dtype), dtype)


@translates("Range")
def range_(cx):
    if any(cx.is_symbolic(cx.input(k)) for k in range(3)) and \
            all(cx.is_symbolic(cx.input(k)) or cx.input(k).is_const for k in range(3)):
        return _symbolic_range(cx)
    if any(data_dims.runtime_operand(cx, k) is not None for k in range(3)):
        return data_dims.range_at_run_time(cx, cx.input(0), cx.input(1), cx.input(2))
    if any(cx.is_symbolic(cx.input(k)) for k in range(3)):
        return _symbolic_range(cx)
    start = cx.const_input(0, "start", required=True)
    limit = cx.const_input(1, "limit", required=True)
    delta = cx.const_input(2, "delta", required=True)
    ir_dtype = cx.input(0).dtype
    dtype = start.dtype
    s, l, d = start.reshape(()).item(), limit.reshape(()).item(), delta.reshape(()).item()
    if d == 0:
        raise cx.fail("delta must not be 0")
    n = max(int(math.ceil((l - s) / d)), 0)
    if not limits.may_fold(n * dtype.itemsize, 0):
        # too large a constant: computed at run time (the core op checks the tensor size)
        return cx.op("arange", [], length=n, start=s, delta=d, dtype=ir_dtype)
    if np.issubdtype(dtype, np.integer):
        vals = np.array([s + i * d for i in range(n)], dtype=dtype)
    else:
        vals = (np.array(s, dtype) + np.arange(n, dtype=dtype) * np.array(d, dtype)).astype(dtype)
    return cx.const(vals.reshape(n), ir_dtype)


def _symbolic_range(cx):
    """Range over a length known at run time: the core arange op."""
    dtype = cx.input(0).dtype
    if is_int(dtype):
        start, limit, delta = (cx.dims_input(k, what, required=True) for k, what in
                               ((0, "start"), (1, "limit"), (2, "delta")))
    else:
        # float bounds from shape arithmetic (a grid of cell centres): whole numbers only
        start, limit, delta = ([d.item() if isinstance(d, np.generic) else d
                                for d in (cx._tr.symvals[v.uid] if cx.is_symbolic(v) else v.const).reshape(-1)]
                               for v in (cx.input(k) for k in range(3)))
        for v in (start, limit, delta):
            if any(not isinstance(d, Sym) and not (isinstance(d, (int, float)) and float(d).is_integer()) for d in v):
                return data_dims.range_at_run_time(cx, cx.input(0), cx.input(1), cx.input(2))
        start, limit, delta = ([d if isinstance(d, Sym) else int(d) for d in v] for v in (start, limit, delta))
    for what, v in (("start", start), ("limit", limit), ("delta", delta)):
        if len(v) != 1:
            raise cx.fail(f"{what} must be a scalar, got {len(v)} values")
    start, limit, delta = start[0], limit[0], delta[0]
    if not isinstance(delta, int) or delta <= 0:
        raise cx.fail(f"a Range over a symbolic length needs a positive constant delta, got {delta}")
    n = (limit - start + delta - 1) // delta
    if isinstance(n, Sym):
        # ONNX gives an empty range for a negative length; the run refuses those sizes
        cx.require(n, ">=", f"the range from {start} to {limit} to have at least 0 elements")
    return cx.op("arange", [], length=max(n, 0) if isinstance(n, int) else n, start=start, delta=delta, dtype=dtype)


# ---- reshaping ----------------------------------------------------------------------------

@translates("Reshape")
def reshape_(cx):
    x = cx.input(0)
    if cx.opset >= 5 and data_dims.runtime_operand(cx, 1) is not None:
        return data_dims.reshape_at_run_time(cx, x, cx.input(1), bool(cx.attr("allowzero", 0)))
    target = cx.attr("shape") if cx.opset < 5 else cx.dims_input(1, "shape", required=True)
    if not x.type.is_static or any(isinstance(d, Sym) for d in target):
        return _symbolic_reshape(cx, x, target)
    dims = static_shape(cx, x)
    allowzero = cx.attr("allowzero", 0)
    out = []
    for k, d in enumerate(target):
        if d == 0 and not allowzero:
            if k >= len(dims):
                raise cx.fail(f"shape {target} copies dimension {k} (0), but the input {x.type} has rank {len(dims)}")
            out.append(dims[k])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise cx.fail(f"shape {target} has more than one -1")
    if any(d < -1 for d in out):
        raise cx.fail(f"shape {target} has a negative dimension")
    if -1 in out:
        known = prod(d for d in out if d != -1)
        total = prod(dims)
        if known == 0 or total % known:
            raise cx.fail(f"cannot reshape {x.type} to {target}: {total} elements do not fill -1")
        out[out.index(-1)] = total // known
    if prod(out) != prod(dims):
        raise cx.fail(f"cannot reshape {x.type} ({prod(dims)} elements) to {target} ({prod(out)} elements)")
    return reshape(cx, x, out)


def _symbolic_reshape(cx, x, target):
    """Reshape where the input's shape or the target holds symbolic dimensions."""
    dims = tuple(x.shape)
    allowzero = cx.attr("allowzero", 0)
    out = []
    for k, d in enumerate(target):
        if isinstance(d, int) and d == 0 and not allowzero:
            if k >= len(dims):
                raise cx.fail(f"shape {target} copies dimension {k} (0), but the input {x.type} has rank {len(dims)}")
            out.append(dims[k])
        else:
            out.append(d)
    if sum(1 for d in out if isinstance(d, int) and d == -1) > 1:
        raise cx.fail(f"shape {[str(d) for d in target]} has more than one -1")
    if any(isinstance(d, int) and d < -1 for d in out):
        raise cx.fail(f"shape {[str(d) for d in target]} has a negative dimension")
    total = product(dims)
    holes = [k for k, d in enumerate(out) if isinstance(d, int) and d == -1]
    if holes:
        known = product(d for d in out if not (isinstance(d, int) and d == -1))
        q = exact_div(total, known)
        if q is None and isinstance(known, int) and known > 0:
            # a whole multiple for some sizes only (e.g. 32*b*h*w of 2048): the floor quotient,
            # and the run refuses the sizes where it leaves a remainder
            q = total // known
            cx.require(total % known, "==", f"the {total} elements of its input to be a whole multiple "
                                            f"of {known} to fill the -1 of {[str(d) for d in target]}")
        if q is None:
            raise cx.fail(f"cannot reshape {x.type} to {[str(d) for d in target]}: {total} elements are not "
                          f"a whole multiple of {known} for every value of the symbols")
        out[holes[0]] = q
    checked = product(out) != total
    if checked:
        # equal only for some values of the symbols (a pooled size that is 1 at run time):
        # the run checks it; refused here when no values make them equal
        cx.require(product(out) - total, "==", f"its input's {total} elements to fill the shape "
                                               f"{[str(d) for d in out]} ({product(out)} elements)")
    return cx.op("reshape", [x], shape=tuple(out), checked=checked)


@translates("Flatten")
def flatten(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    axis = cx.attr("axis", 1)
    if not -r <= axis <= r:
        raise cx.fail(f"axis {axis} is out of range for rank {r}")
    if axis < 0:
        axis += r
    return reshape(cx, x, (product(dims[:axis]), product(dims[axis:])))


def _axes_arg(cx, what="axes"):
    """axes from the attribute (before opset 13) or the second input (from 13)."""
    if cx.opset >= 13:
        return cx.ints_input(1, what)
    return cx.attr("axes", None)


def _squeeze_at_run_time(cx, x, axes_v):
    """Squeeze by axes read at run time (their count static): each dimension named must be 1
    (else the binding fails, as for repeated axes); the others, in order, are bound as the
    output's shape."""
    dims = list(x.shape)
    r = len(dims)
    _, mask, repeated = data_dims.axes_at_run_time(cx, axes_v, r)
    k = axes_v.shape[0]
    if k > r:
        raise cx.fail(f"axes {axes_v.type} hold more axes than the input {x.type} has")
    one = cx.scalar(1, "int64")
    d = data_dims.dims_tensor(cx, dims)
    not_one = cx.op("logical_and", [cx.op("equal", [mask, one]), cx.op("not_equal", [d, one])])
    bad = cx.op("logical_or", [repeated, cx.op("greater", [cx.op("reduce_max", [cx.op("cast", [not_one], to="int64")],
                                                                   axes=(0,), keepdims=False), cx.scalar(0, "int64")])])
    if k == r:                         # nothing left: the check alone, bound to one symbol (always 1)
        vals = cx.const(np.ones(1, np.int64))
    else:
        vals = data_dims.in_order(cx, cx.op("sub", [one, mask]), d, r - k)
    static = [n for n in dims if isinstance(n, int)]
    lim = max(static + [1]) if len(static) == r else None
    bound, out = data_dims.bind(cx, data_dims.invalid_if(cx, vals, bad), "dim", [lim] * max(r - k, 1),
                                numel=product(dims) if k < r else None)
    return cx.op("reshape_data", [x, bound], shape=tuple(out) if k < r else ())


def _unsqueeze_at_run_time(cx, x, axes_v):
    """Unsqueeze by axes read at run time (their count static, so the output's rank is): a 1
    where an axis names the output's dimension, the input's dimensions in order elsewhere,
    bound as the output's shape (repeated axes fail the binding)."""
    dims = list(x.shape)
    if axes_v.type.rank != 1 or not isinstance(axes_v.shape[0], int):
        raise cx.fail(f"axes must be a 1-D tensor of static length, got {axes_v.type}")
    rr = len(dims) + axes_v.shape[0]
    _, mask, repeated = data_dims.axes_at_run_time(cx, axes_v, rr)
    one = cx.scalar(1, "int64")
    left = cx.op("sub", [one, mask])
    # output dimension j not named takes input dimension (count of those not named before j)
    pos = cx.op("sub", [data_dims.prefix_sum(cx, left), one])
    src = cx.op("where", [cx.op("equal", [mask, one]), cx.scalar(len(dims), "int64"),
                          cx.op("minimum", [cx.op("maximum", [pos, cx.scalar(0, "int64")]),
                                            cx.scalar(len(dims), "int64")])])
    d = cx.op("concat", [data_dims.dims_tensor(cx, dims), cx.const(np.ones(1, np.int64))], axis=0) if dims else \
        cx.const(np.ones(1, np.int64))
    vals = cx.op("gather", [d, src], axis=0)
    static = [n for n in dims if isinstance(n, int)]
    lim = max(static + [1]) if len(static) == len(dims) else None
    bound, out = data_dims.bind(cx, data_dims.invalid_if(cx, vals, repeated), "dim", [lim] * rr,
                                numel=product(dims))
    return cx.op("reshape_data", [x, bound], shape=tuple(out))


@translates("Squeeze")
def squeeze(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if cx.opset >= 13 and data_dims.runtime_operand(cx, 1) is not None:
        return _squeeze_at_run_time(cx, x, cx.input(1))
    axes = _axes_arg(cx)
    if axes is None:
        # every axis of size 1, a symbolic one among them where the graph already checks that
        # it is 1 (a GRU's batch fixed by its initial state); any other stays
        ones = {c[0] + 1 for c in cx._tr.b.checks if c[1] == "==" and isinstance(c[0], Sym)}
        keep = [d for d in dims if d != 1 and not (isinstance(d, Sym) and d in ones)]
        if len(keep) < len([d for d in dims if d != 1]):
            y = cx.op("reshape", [x], shape=tuple(keep), checked=True)
        else:
            y = reshape(cx, x, keep)
        # a symbolic size kept is dropped where it is 1 at run time: a rank the run decides,
        # which an output reached through elementwise ops only can take (Graph.squeezes)
        axes = tuple(k for k, d in enumerate(keep) if isinstance(d, Sym))
        if axes:
            cx._tr.run_time_squeezes[y.uid] = axes
        return y
    else:
        axes = norm_axes(cx, axes, len(dims))
        for a in axes:
            if isinstance(dims[a], Sym):
                # 1 for some sizes only: the run checks it (onnxruntime refuses the others too)
                cx.require(dims[a] - 1, "==", f"axis {a} of {x.type} to squeeze to be of size 1")
            elif dims[a] != 1:
                raise cx.fail(f"cannot squeeze axis {a} of {x.type}: its size is {dims[a]}, not 1")
        keep = [d for k, d in enumerate(dims) if k not in axes]
        if any(isinstance(dims[a], Sym) for a in axes):
            return cx.op("reshape", [x], shape=tuple(keep), checked=True)
    return reshape(cx, x, keep)


def squeezed_outputs(outputs, marked: dict) -> dict:
    """``Graph.squeezes`` of a translated graph: output index -> axes, for each output computed
    from a Squeeze (no axes) of a symbolic size (``marked``: value uid -> axes) through ops
    that map each element to one (Sigmoid, a Mul by a scalar constant, ...), so that the output
    dropping a size-1 axis at run time is what ONNX computes."""
    from ...ops import get_op
    from ...ops.base import Pattern

    found = {}
    for k, v in enumerate(outputs):
        while v is not None and v.uid not in marked:
            p = v.producer
            if p is None or len(p.outputs) != 1 or get_op(p.op).pattern > Pattern.BROADCAST:
                v = None
                break
            data = [u for u in p.inputs if not u.is_const]
            scalars = all(u.type.rank == 0 for u in p.inputs if u.is_const)
            v = data[0] if len(data) == 1 and scalars and tuple(data[0].shape) == tuple(v.shape) else None
        if v is not None:
            found[k] = marked[v.uid]
    return found


@translates("Unsqueeze")
def unsqueeze(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if cx.opset >= 13 and data_dims.runtime_operand(cx, 1) is not None:
        return _unsqueeze_at_run_time(cx, x, cx.input(1))
    axes = _axes_arg(cx)
    if axes is None:
        raise cx.fail("needs axes")
    r = len(dims) + len(axes)
    axes = set(norm_axes(cx, axes, r))
    it = iter(dims)
    return reshape(cx, x, [1 if k in axes else next(it) for k in range(r)])


@translates("Transpose")
def transpose(cx):
    x = cx.input(0)
    r = x.type.rank
    perm = cx.attr("perm", None)
    perm = list(reversed(range(r))) if perm is None else [p + r if p < 0 else p for p in perm]
    return cx.op("transpose", [x], perm=tuple(perm))


@translates("DepthToSpace")
def depth_to_space(cx):
    x = cx.input(0)
    n, c, h, w = _rank4(cx, x)
    bs = cx.attr("blocksize")
    c2 = exact_div(c, bs * bs)
    if c2 is None:
        raise cx.fail(f"{c} channels are not divisible by blocksize^2 = {bs * bs}")
    if cx.attr("mode", "DCR") == "DCR":
        t = reshape(cx, x, (n, bs, bs, c2, h, w))
        t = cx.op("transpose", [t], perm=(0, 3, 4, 1, 5, 2))
    else:
        t = reshape(cx, x, (n, c2, bs, bs, h, w))
        t = cx.op("transpose", [t], perm=(0, 1, 4, 2, 5, 3))
    return reshape(cx, t, (n, c2, h * bs, w * bs))


@translates("SpaceToDepth")
def space_to_depth(cx):
    x = cx.input(0)
    n, c, h, w = _rank4(cx, x)
    bs = cx.attr("blocksize")
    if isinstance(h, int) and h % bs or isinstance(w, int) and w % bs:
        raise cx.fail(f"spatial size {h}x{w} is not divisible by blocksize {bs}")
    for a, d in ((2, h), (3, w)):
        if isinstance(d, Sym) and exact_div(d, bs) is None:
            # whole blocks only, the run refused otherwise: the axis cut to them (a no-op then)
            cx.require(d % bs, "==", f"the size {d} of axis {a} divisible by the blocksize {bs}")
            x = cx.op("slice", [x], starts=(0,) * 4, ends=tuple(d // bs * bs if k == a else e
                                                                for k, e in enumerate(x.shape)), steps=(1,) * 4)
    h, w = tuple(x.shape[2:])
    t = reshape(cx, x, (n, c, h // bs, bs, w // bs, bs))
    perm = (0, 3, 5, 1, 2, 4) if cx.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    t = cx.op("transpose", [t], perm=perm)
    return reshape(cx, t, (n, c * bs * bs, h // bs, w // bs))


def _rank4(cx, x):
    dims = tuple(x.shape)
    if len(dims) != 4:
        raise cx.fail(f"expects a 4-D input, got {x.type}")
    return dims


# ---- joining and splitting ------------------------------------------------------------------

def agreeing(cx, *xs, concat_axis: int | None = None):
    """The operands of a broadcasting op (or of a concatenation along ``concat_axis``), where two
    different dimensions meet of which one is symbolic (``S`` and ``T``, ``S`` and 5, or
    ``(h + 1)//2`` and ``h//2``) taken to be equal: the graph checks that they are when the run
    binds the symbols (``NodeContext.require``; a broadcasting 1 among them is refused there,
    by name), and the operand that has the other one is sliced to the first's expression (all
    of it).  Operands that agree as they are come back unchanged."""
    shapes = [tuple(x.shape) for x in xs]
    if concat_axis is None:
        try:
            broadcast_shapes(*shapes)
            return list(xs)
        except ShapeError:
            pass
    elif len({len(s) for s in shapes}) != 1 or all(
            all(s[k] == shapes[0][k] for k in range(len(s)) if k != concat_axis) for s in shapes):
        return list(xs)                  # equal (or a rank error the op's type rule names)
    rank = max(len(s) for s in shapes)
    out = list(xs)
    for i in range(rank):
        if i == concat_axis:
            continue
        at = [(k, s[i - rank + len(s)]) for k, s in enumerate(shapes) if i - rank + len(s) >= 0]
        dims = [(k, d) for k, d in at if concat_axis is not None or not (isinstance(d, int) and d == 1)]
        fixed = [d for _, d in dims if isinstance(d, int)]
        if len(set(fixed)) > 1:
            continue                     # an error of the model: the op's type rule names it
        target = fixed[0] if fixed else dims[0][1] if dims else 1
        for k, d in dims:
            if d == target:
                continue
            how = "meet in the concatenation" if concat_axis is not None else "broadcast against each other"
            cx.require(d - target, "==", f"dimension {i} of its operands to agree: {d} and {target} {how} only "
                                         f"when equal" + ("" if concat_axis is not None else
                                                          " (one of them 1 is not compiled)"))
            v = out[k]
            ax = i - rank + v.type.rank
            ends = tuple(target if a == ax else e for a, e in enumerate(v.shape))
            out[k] = cx.op("slice", [v], starts=(0,) * v.type.rank, ends=ends, steps=(1,) * v.type.rank)
    return out


@translates("Concat")
def concat(cx):
    xs = cx.inputs()
    if not xs:
        raise cx.fail("needs at least one input")
    axis = cx.attr("axis", 1 if cx.opset < 4 else None)
    if axis is None:
        raise cx.fail("missing required attribute 'axis'")
    axis = norm_axis(cx, axis, xs[0].type.rank)
    return cx.op("concat", agreeing(cx, *xs, concat_axis=axis), axis=axis)


@translates("Split")
def split(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    ax = norm_axis(cx, cx.attr("axis", 0), len(dims))
    d = dims[ax]
    if cx.opset >= 13 and data_dims.runtime_operand(cx, 1) is not None:
        return data_dims.split_at_run_time(cx, x, ax, cx.input(1), cx.num_outputs)
    n_out = cx.num_outputs
    if cx.opset >= 13 or (cx.opset < 2 and cx.has_input(1)):
        sizes = cx.dims_input(1, "split")
    else:
        sizes = cx.attr("split", None)
    gathered = False            # the last part's size is >= 0 by a check only: read by a gather
    if sizes is None:
        if cx.has_attr("num_outputs"):
            n = cx.attr("num_outputs")
            if n != n_out:
                raise cx.fail(f"num_outputs={n} but the node has {n_out} outputs")
            chunk = (d + n - 1) // n
            sizes = [chunk] * (n - 1) + [d - chunk * (n - 1)]
            if isinstance(d, int) and sizes[-1] < 0:
                raise cx.fail(f"cannot split {d} elements into {n} parts of {chunk}")
            if compare(sizes[-1], ">=", 0, cx.bounds) is not True:
                cx.require(sizes[-1], ">=", f"a last part of at least 0 elements when splitting axis {ax} "
                                            f"(size {d}) into {n} parts of {chunk}")
                gathered = True
        else:
            q = exact_div(d, n_out)
            if isinstance(d, int) and q is None:
                raise cx.fail(f"cannot split axis {ax} of size {d} evenly into {n_out} outputs")
            if q is None:
                q = d // n_out
                cx.require(d % n_out, "==", f"the size {d} of axis {ax} divisible by {n_out} (equal parts)")
            sizes = [q] * n_out
            d = q * n_out                # what the parts add up to (d itself, by the check)
    if len(sizes) != n_out or any(isinstance(s, int) and s < 0 for s in sizes):
        raise cx.fail(f"split sizes {[str(s) for s in sizes]} do not cut axis {ax} of size {d} "
                      f"into {n_out} outputs")
    if sum(sizes) != d:
        if not any(isinstance(v, Sym) for v in (d, *sizes)):
            raise cx.fail(f"split sizes {list(sizes)} add up to {sum(sizes)}, not to the size {d} of axis {ax}")
        cx.require(d - sum(sizes), "==", f"split sizes {[str(s) for s in sizes]} that add up to the size {d} "
                                          f"of axis {ax}")
    outs, off = [], 0
    for k, s in enumerate(sizes):
        if gathered and k == len(sizes) - 1:
            idx = cx.op("arange", [], length=s, start=off, delta=1, dtype="int64")
            outs.append(cx.op("gather", [x, idx], axis=ax))
        else:
            starts = [0] * len(dims)
            ends = list(dims)
            starts[ax], ends[ax] = off, off + s
            outs.append(cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * len(dims)))
        off += s
    return outs


@translates("Slice")
def slice_(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    r = len(dims)
    if cx.opset < 10:
        starts, ends = cx.attr("starts"), cx.attr("ends")
        axes, steps = cx.attr("axes", None), None
    else:
        if any(data_dims.runtime_operand(cx, k) is not None for k in (1, 2, 3, 4)):
            return _slice_at_run_time(cx, x)
        if cx._tr.region_depth:
            window = _window_at_run_time(cx, x)
            if window is not None:
                return window
        starts = cx.dims_input(1, "starts", required=True)
        ends = cx.dims_input(2, "ends", required=True)
        axes = cx.ints_input(3, "axes")
        steps = cx.ints_input(4, "steps")
    if axes is None:
        axes = list(range(len(starts)))
    if steps is None:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise cx.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    axes = norm_axes(cx, axes, r)
    st, en, sp = [0] * r, list(dims), [1] * r
    for a, s, e, p in zip(axes, starts, ends, steps):
        d = dims[a]
        if p == 0:
            raise cx.fail(f"step 0 on axis {a}")
        if any(isinstance(v, Sym) for v in (s, e, d)):
            row = product(v for k, v in enumerate(dims) if k != a and isinstance(v, int))
            try:
                st[a], en[a], sp[a] = _symbolic_slice_range(cx, a, s, e, p, d,
                                                            row * np_dtype(x.dtype).itemsize)
            except _RunTimeOnly:
                if cx.opset < 10:
                    raise
                return _slice_at_run_time(cx, x)      # the clamping is decided by the run
            continue
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if p > 0:
            s, e = min(max(s, 0), d), min(max(e, 0), d)
        else:
            s, e = min(max(s, 0), d - 1), min(max(e, -1), d - 1)
            if d == 0:
                s, e = 0, 0
        st[a], en[a], sp[a] = s, e, p
    # an axis whose length is >= 0 by a check only (Graph.checks) is read by a gather
    gathered = [a for a in range(r) if sp[a] > 0 and (isinstance(st[a], Sym) or isinstance(en[a], Sym))
                and compare(en[a] - st[a], ">=", 0, cx.bounds) is not True]
    y = cx.op("slice", [x], starts=tuple(0 if a in gathered else v for a, v in enumerate(st)),
              ends=tuple(dims[a] if a in gathered else v for a, v in enumerate(en)),
              steps=tuple(1 if a in gathered else v for a, v in enumerate(sp)))
    for a in gathered:
        n = (en[a] - st[a] + sp[a] - 1) // sp[a]
        idx = cx.op("arange", [], length=n, start=st[a], delta=sp[a], dtype="int64")
        y = cx.op("gather", [y, idx], axis=a)
    return y


#: a constant end (or start) at or past INT32_MAX is "to the end" of a symbolic axis, as the
#: exporters that write INT32_MAX for it mean (an axis of 2**31 elements or more is not assumed)
_TO_THE_END = (1 << 31) - 1


def _stripped(v):
    """``v`` without the reshapes (Unsqueeze, Squeeze, Reshape) that produce it."""
    while v.producer is not None and v.producer.op == "reshape":
        v = v.producer.inputs[0]
    return v


def _const_offset(ends, starts) -> np.ndarray | None:
    """``k`` (int64, one per element of ``starts``) when ``ends`` is computed as ``starts + k``
    for constants ``k`` (through reshapes and casts of integers), else None."""
    e, s = _stripped(ends), _stripped(starts)
    node = e.producer
    if node is None or node.op not in ("add", "sub") or len(node.inputs) != 2:
        return None
    a, b = (_stripped(v) for v in node.inputs)
    if b.is_const and a is s:
        k = np.asarray(b.const)
    elif a.is_const and b is s and node.op == "add":
        k = np.asarray(a.const)
    else:
        return None
    if node.op == "sub":
        k = -k
    if k.dtype.kind not in "iu" or k.size not in (1, starts.type.num_elements):
        return None
    return np.broadcast_to(k.astype(np.int64).reshape(-1), (starts.type.num_elements,))


def _window_at_run_time(cx, x):
    """A Slice in the body of a run-time region (where no dimension may come from the data)
    whose ends are its starts plus constants ``k`` >= 0 and whose steps are 1 (``x[i:i+k]`` by a
    loop's iteration number): ``k`` elements along each axis, gathered from the start read at
    run time.  A start where ONNX's clamping would give fewer than ``k`` elements (past the end,
    or a negative start whose end is 0 or more) is an index error of the run.  None where the
    Slice is not of that form."""
    starts, ends = cx.input(1), cx.input(2)
    if not isinstance(starts, Value) or not isinstance(ends, Value) or starts.is_const or \
            not is_int(starts.dtype) or not starts.type.is_static or starts.type.rank > 1:
        return None
    k = _const_offset(ends, starts)
    if k is None or (k < 0).any():
        return None
    steps = cx.ints_input(4, "steps")
    if steps is not None and any(p != 1 for p in steps):
        return None
    n = len(k)
    axes = cx.ints_input(3, "axes")
    axes = norm_axes(cx, list(range(n)) if axes is None else axes, x.type.rank)
    if len(axes) != n:
        raise cx.fail(f"axes {axes} and starts {starts.type} differ in length")
    flat = reshape(cx, starts if starts.dtype == "int64" else cx.op("cast", [starts], to="int64"), (n,))
    y = x
    zero = cx.scalar(0, "int64")
    for j, (a, kj) in enumerate(zip(axes, k.tolist())):
        d = x.shape[a]
        s = cx.op("gather", [flat, cx.scalar(j, "int64")], axis=0)
        dt = _dim_tensor(cx, d)
        neg = cx.op("less", [s, zero])
        u = cx.op("where", [neg, cx.op("add", [s, dt]), s])
        # the last element a window from a negative start may reach is d - 2 (its end, then 0 or
        # more, is not counted from the back)
        room = cx.op("where", [neg, cx.op("sub", [dt, cx.scalar(1, "int64")]), dt])
        bad = cx.op("logical_or", [cx.op("less", [u, zero]),
                                   cx.op("greater", [cx.op("add", [u, cx.scalar(kj, "int64")]), room])])
        first = cx.op("check_index", [cx.op("where", [bad, dt, u])], dims=(d,),
                      what=(f"axis {a} of the data {list(x.shape)}: the start of a slice of {kj} element(s) read "
                            f"at run time ({d} stands for a start that clamping would shorten, which is refused)",))
        idx = cx.op("add", [first, cx.op("arange", [], length=kj, start=0, delta=1, dtype="int64")])
        y = cx.op("gather", [y, idx], axis=a)
    return y


def _slice_at_run_time(cx, x):
    """Slice (opset >= 10) with its starts, ends and steps taken at run time (the axes must be
    constants)."""
    starts, ends = cx.input(1), cx.input(2)
    n = starts.shape[0] if starts.type.rank == 1 else None
    if not isinstance(n, int) or ends.type.rank != 1 or ends.shape[0] != n:
        raise cx.fail(f"starts {starts.type} and ends {ends.type} must be 1-D of one static length")
    run_axes = data_dims.runtime_operand(cx, 3)
    if run_axes is None:
        axes = cx.ints_input(3, "axes (the starts, ends or steps are taken at run time)")
        axes = norm_axes(cx, list(range(n)) if axes is None else axes, x.type.rank)
        if len(axes) != n:
            raise cx.fail(f"axes {axes} and starts {starts.type} differ in length")
    steps = cx.input(4, required=False)
    as_tensor = lambda v: data_dims.dims_tensor(cx, list(cx.dims_input(v[0], v[1], required=True)))  # noqa: E731
    starts, ends = (cx.input(k) if data_dims.runtime_operand(cx, k) is not None else as_tensor((k, w))
                    for k, w in ((1, "starts"), (2, "ends")))
    if steps is not None and data_dims.runtime_operand(cx, 4) is None:
        steps = as_tensor((4, "steps"))
    if run_axes is not None:
        # axes read at run time: every axis sliced, from 0 to the end by 1 where none names it
        # (two naming one axis: a step of 0, which the binding refuses)
        r = x.type.rank
        if run_axes.type.rank != 1 or run_axes.shape[0] != n:
            raise cx.fail(f"axes {run_axes.type} and starts {starts.type} differ in length")
        named, _, repeated = data_dims.axes_at_run_time(cx, run_axes, r)
        i64 = lambda v: v if v.dtype == "int64" else cx.op("cast", [v], to="int64")  # noqa: E731
        starts = data_dims.spread(cx, named, i64(starts), 0)
        ends = data_dims.spread(cx, named, i64(ends), np.iinfo(np.int64).max)
        steps = data_dims.spread(cx, named, i64(steps) if steps is not None else cx.const(np.ones(n, np.int64)), 1)
        steps = cx.op("where", [repeated, cx.scalar(0, "int64"), steps])
        axes = list(range(r))
    return data_dims.slice_at_run_time(cx, x, starts, ends, axes, steps)


class _RunTimeOnly(InvalidModelError):
    """A slice whose clamping only the run can decide (it is then computed at run time)."""

    def __init__(self, cx, message: str):
        super().__init__(message, node=cx.name, op=cx.op_type)


def _symbolic_slice_range(cx, axis, s, e, p, d, row_bytes=0):
    """(start, end, step) of a slice along an axis where the start, the end or the size is
    symbolic, clamped as ONNX defines where the bounds decide it; where only the run can tell
    (a start counting from the end of an axis that may be shorter), the slice takes the
    unclamped value and the graph checks that it needs no clamping (``NodeContext.require``).
    A constant past what an axis can hold within the tensor limit (``row_bytes``: the bytes of
    one index along it, counting the static dimensions) means its end, checked the same way
    (jax2tf writes 1e9 for "to the end").
    What not even that decides (``_RunTimeOnly``) leaves the slice to the run (opset >= 10)."""
    where = f"the slice along axis {axis} (size {d})"

    def huge(v):
        return isinstance(v, int) and v >= _TO_THE_END

    def tiny(v):
        return isinstance(v, int) and v <= -_TO_THE_END - 1

    if p < 0:
        # a reversal: from the end (or a start the bounds put inside) to before the beginning
        s2 = d - 1 if huge(s) or (isinstance(s, int) and s == -1) else s
        e2 = -1 if tiny(e) else e
        if isinstance(s2, Sym) and compare(s2, "<=", d - 1, cx.bounds) is not True or \
                not (isinstance(e2, int) and e2 == -1) or compare(s2, ">=", -1, cx.bounds) is not True:
            raise _RunTimeOnly(cx, f"a slice with step {p} from {s} to {e} along axis {axis} (size {d}): only "
                               "whole reversals are compiled over symbolic sizes")
        return s2, e2, p

    def resolve(v, what):
        if huge(v):
            return d
        if tiny(v):
            return 0
        if isinstance(v, int) and v < 0:
            v = d + v                       # counts from the end
            if isinstance(v, int):
                return max(v, 0)
            nonneg = compare(v, ">=", 0, cx.bounds)
            if nonneg is None:
                cx.require(v, ">=", f"{d} >= {d - v} for the {what} {v - d} of {where}, which counts from its end")
                return v
            return v if nonneg else 0
        nonneg = compare(v, ">=", 0, cx.bounds)
        if nonneg is None:
            raise _RunTimeOnly(cx, f"the {what} {v} of the slice along axis {axis} may be negative")
        if not nonneg:
            return 0
        if isinstance(d, int):
            return v if cx.assume_at_most(v, d, f"the {what} of the slice along axis {axis}") else d
        within = compare(v, "<=", d, cx.bounds)
        if within is None and isinstance(v, int) and v * row_bytes > limits.current().tensor_bytes:
            cx.require(v - d, ">=", f"the {what} {v} of {where} at or past its end")
            return d
        if within is None:
            cx.require(d - v, ">=", f"the {what} {v} of {where} within it")
            return v
        return v if within else d

    s2, e2 = resolve(s, "start"), resolve(e, "end")
    if compare(e2, ">=", s2, cx.bounds) is not True:
        cx.require(e2 - s2, ">=", f"its end {e2} at or after its start {s2} in {where}")
    return s2, e2, p


@translates("Pad")
def pad(cx):
    x = cx.input(0)
    r = x.type.rank
    mode = cx.attr("mode", "constant")
    at_run_time = None      # constant_value known at run time only
    if cx.opset < 11:
        pads = cx.attr("paddings" if cx.opset < 2 and cx.has_attr("paddings") else "pads")
        value = cx.attr("value", 0.0)
        axes = None
    else:
        if data_dims.runtime_operand(cx, 1) is not None or data_dims.runtime_operand(cx, 3) is not None:
            return _pad_at_run_time(cx, x, mode)      # pads (axes) of the run: the output's size too
        pads = cx.dims_input(1, "pads", required=True)
        cv = cx.known_input(2)
        if cx.has_input(2) and cx.input(2).type.num_elements != 1:
            raise cx.fail(f"constant_value must be a scalar, got {cx.input(2).type}")
        if cx.has_input(2) and cv is None and mode == "constant":
            at_run_time = cx.input(2)
        value = 0 if cv is None else cv.reshape(()).item()
        axes = cx.ints_input(3, "axes")
    if axes is not None:
        axes = norm_axes(cx, axes, r)
        if len(pads) != 2 * len(axes):
            raise cx.fail(f"needs {2 * len(axes)} pads for axes {axes}, got {len(pads)}")
        full = [0] * (2 * r)
        for k, a in enumerate(axes):
            full[a], full[a + r] = pads[k], pads[k + len(axes)]
        pads = full
    if len(pads) != 2 * r:
        raise cx.fail(f"needs {2 * r} pads for {x.type}, got {len(pads)}")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise cx.fail(f"unknown mode {mode!r}")
    if any(isinstance(p, Sym) for p in pads):
        return _symbolic_pad(cx, x, pads, mode, value if at_run_time is None else at_run_time)
    cv = np.array(value).astype(np_dtype(x.dtype))
    value = bool(cv) if x.dtype == "bool" else int(cv) if is_int(x.dtype) or x.dtype in NARROW_INT_DTYPES else float(cv)
    out = cx.op("pad", [x], pads=tuple(int(p) for p in pads), mode=mode, value=value)
    if at_run_time is not None:
        # the padding filled in by a select: where the input lies (a constant mask when x is static)
        inside = cx.op("pad", [cx.op("broadcast_to", [cx.scalar(True, "bool")], shape=tuple(x.shape))],
                       pads=tuple(int(p) for p in pads), mode="constant", value=False)
        fill = at_run_time if at_run_time.dtype == x.dtype else cx.op("cast", [at_run_time], to=x.dtype)
        out = cx.op("where", [inside, out, reshape(cx, fill, ())])
    return out


@translates("CenterCropPad")
def center_crop_pad(cx):
    """Each of ``axes`` cropped or zero-padded to ``shape``, centered (the begin gets the
    smaller half of the difference): a gather of the positions ``i - (t - d) // 2`` (padding)
    or ``i + (d - t) // 2`` (cropping), zero where they fall outside; the positions are
    computed at run time when the size ``d`` is symbolic, so the run decides crop or pad."""
    x = cx.input(0)
    dims = tuple(x.shape)
    axes = cx.attr("axes", None)
    axes = norm_axes(cx, axes, len(dims)) if axes is not None else list(range(len(dims)))
    if data_dims.runtime_operand(cx, 1) is not None:
        return _center_crop_pad_at_run_time(cx, x, cx.input(1), axes)
    target = cx.ints_input(1, "shape", required=True)
    if len(target) != len(axes) or any(t < 0 for t in target):
        raise cx.fail(f"shape {target} needs {len(axes)} sizes >= 0")
    out = x
    for a, t in zip(axes, target):
        d = dims[a]
        if isinstance(d, int):
            if d == t:
                continue
            diff = t - d
            off = -(diff // 2) if diff > 0 else (-diff) // 2
            src = np.arange(t, dtype=np.int64) + off
            inside = (src >= 0) & (src < d)
            g = cx.op("gather", [out, cx.const(np.clip(src, 0, max(d - 1, 0)))], axis=a) if d else None
        else:
            # an empty axis has nothing to gather from: the run refuses it (Graph.checks)
            cx.require(d - 1, ">=", f"axis {a} ({d}) of at least 1 element to crop or pad")
            n = T(cx, _dim_tensor(cx, d))
            diff = T(cx, cx.scalar(t, "int64")) - n
            off = (diff > 0).where((diff / 2) * -1, (n - t) / 2)       # both halves >= 0: C's division
            src = T(cx, cx.op("arange", [], length=t, start=0, delta=1, dtype="int64")) + off
            inside = ((src >= 0) & (src < n)).v
            g = cx.op("gather", [out, src.clip(0, n - 1).v], axis=a)
        shp = [1] * len(dims)
        shp[a] = t
        zero = cx.scalar(0, x.dtype)
        if g is None:
            out = cx.op("broadcast_to", [zero], shape=tuple(t if k == a else e for k, e in enumerate(out.shape)))
        else:
            keep = cx.const(inside.reshape(shp)) if isinstance(inside, np.ndarray) else reshape(cx, inside, shp)
            out = cx.op("where", [keep, g, zero])
    return out


def _center_crop_pad_at_run_time(cx, x, shape, axes):
    """CenterCropPad to sizes read at run time: each size is bound (a negative one fails the
    binding), the source positions ``i + off`` computed from the run's sizes as the symbolic
    form computes them, zero where they fall outside."""
    shape = data_dims.shape_operand(cx, shape, "shape")
    if shape.shape[0] != len(axes):
        raise cx.fail(f"shape {shape.type} needs one size per axis of {axes}")
    bound, sizes = data_dims.bind(cx, shape, [f"axis{a}" for a in axes])
    out = x
    zero = cx.scalar(0, x.dtype)
    for j, (a, t) in enumerate(zip(axes, sizes)):
        d = x.shape[a]
        full = tuple(t if k == a else e for k, e in enumerate(out.shape))
        if isinstance(d, int) and d == 0:
            out = cx.op("broadcast_to", [zero, bound], shape=full)
            continue
        if isinstance(d, Sym):
            cx.require(d - 1, ">=", f"axis {a} ({d}) of at least 1 element to crop or pad")
        n = T(cx, _dim_tensor(cx, d))
        tv = T(cx, data_dims.element(cx, bound, j))
        diff = tv - n
        off = (diff > 0).where((diff / 2) * -1, (n - tv) / 2)          # both halves >= 0: C's division
        src = T(cx, data_dims.iota(cx, bound, t)) + off
        inside = (src >= 0) & (src < n)
        shp = [1] * len(full)
        shp[a] = t
        g = cx.op("gather", [out, src.clip(0, n - 1).v], axis=a)
        out = cx.op("where", [reshape(cx, inside.v, shp), g, zero])
    return out


def _symbolic_pad(cx, x, pads, mode, value):
    """Pad by amounts the shape arithmetic gives as expressions of the input's sizes (to whole
    windows: ``(7 - h % 7) % 7``): per axis a gather of the source positions, computed at run
    time, over the new length, which stays a symbolic dimension."""
    r = x.type.rank
    axes = [a for a in range(r) if not (isinstance(pads[a], int) and isinstance(pads[a + r], int)
                                        and pads[a] == 0 and pads[a + r] == 0)]
    lengths = []
    for a in axes:
        n = x.shape[a] + pads[a] + pads[a + r]
        if compare(n, ">=", 0, cx.bounds) is not True:
            cx.require(n, ">=", f"pads {[str(p) for p in pads]} that leave axis {a} of {x.type} a size >= 0")
        lengths.append(n)
    if not isinstance(value, Value):
        value = cx.scalar(value, x.dtype)
    elif value.dtype != x.dtype:
        value = cx.op("cast", [value], to=x.dtype)
    value = reshape(cx, value, ())
    sel = data_dims.dims_tensor(cx, [pads[a] for a in axes] + [pads[a + r] for a in axes])
    return data_dims.pad_at_run_time(cx, x, sel, axes, mode, value, lengths=lengths)


def _pad_at_run_time(cx, x, mode):
    """Pad (opset >= 11) with its pads (and constant value) taken at run time (axes constant);
    a constant value of the run alone, with constant pads, is the select in ``pad``."""
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise cx.fail(f"unknown mode {mode!r}")
    r = x.type.rank
    run_axes = data_dims.runtime_operand(cx, 3)
    if run_axes is None:
        axes = cx.ints_input(3, "axes (the pads are taken at run time)")
        axes = list(range(r)) if axes is None else norm_axes(cx, axes, r)
    pads = cx.input(1)
    pads = data_dims.shape_operand(cx, pads, "pads") if data_dims.runtime_operand(cx, 1) is not None else \
        cx.const(np.array(cx.ints_input(1, "pads", required=True), np.int64))
    if run_axes is not None:
        # axes read at run time: every axis padded, by 0 where none names it (two naming one
        # axis: pads that make it negative, which the binding refuses)
        k = run_axes.shape[0] if run_axes.type.rank == 1 else None
        if pads.shape[0] != 2 * k if isinstance(k, int) else True:
            raise cx.fail(f"needs 2 pads per axis of {run_axes.type}, got {pads.type}")
        named, _, repeated = data_dims.axes_at_run_time(cx, run_axes, r)
        half = [cx.op("slice", [pads], starts=(j * k,), ends=((j + 1) * k,), steps=(1,)) for j in (0, 1)]
        pads = cx.op("concat", [data_dims.spread(cx, named, h, 0) for h in half], axis=0)
        pads = cx.op("where", [repeated, cx.scalar(-(1 << 40), "int64"), pads])
        axes = list(range(r))
    value = cx.input(2, required=False)
    if value is None:
        value = cx.scalar(False if x.dtype == "bool" else 0, x.dtype)
    elif value.type.num_elements != 1 or value.dtype != x.dtype:
        raise cx.fail(f"constant_value must be one {x.dtype}, got {value.type}")
    else:
        value = data_dims.scalar_of(cx, value)
    return data_dims.pad_at_run_time(cx, x, pads, axes, mode, value)


@translates("Expand")
def expand(cx):
    x = cx.input(0)
    if data_dims.runtime_operand(cx, 1) is not None:
        return data_dims.expand_at_run_time(cx, x, cx.input(1))
    target = cx.dims_input(1, "shape", required=True)
    try:
        out = broadcast_shapes(tuple(x.shape), tuple(target))
    except ShapeError:
        raise cx.fail(f"cannot expand {x.type} to {target}") from None
    return cx.op("broadcast_to", [x], shape=out)


@translates("Tile")
def tile(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if cx.opset < 6:
        raise cx.unsupported("opset < 6 form with tiles/axis inputs")
    if data_dims.runtime_operand(cx, 1) is not None:
        return data_dims.tile_at_run_time(cx, x, cx.input(1))
    reps = cx.ints_input(1, "repeats", required=True)
    if len(reps) != len(dims) or any(rp < 0 for rp in reps):
        raise cx.fail(f"repeats {reps} must be {len(dims)} non-negative integers")
    # [d0, d1] -> [1, d0, 1, d1] -> broadcast [r0, d0, r1, d1] -> [r0*d0, r1*d1]
    inter = [v for d in dims for v in (1, d)]
    big = [v for d, rp in zip(dims, reps) for v in (rp, d)]
    t = cx.op("broadcast_to", [reshape(cx, x, inter)], shape=tuple(big))
    return reshape(cx, t, [d * rp for d, rp in zip(dims, reps)])


# ---- indexing -----------------------------------------------------------------------------

@translates("Gather")
def gather(cx):
    x, idx = cx.input(0), cx.input(1)
    return cx.op("gather", [x, idx], axis=norm_axis(cx, cx.attr("axis", 0), x.type.rank))


@translates("GatherElements")
def gather_elements(cx):
    # out[i] = x[i with i[axis] := idx[i]]: a gather from the flattened data at linear indices
    x, idx = cx.input(0), cx.input(1)
    return gather_elements_values(cx, x, idx, norm_axis(cx, cx.attr("axis", 0), x.type.rank))


def _check_gather_elements_operands(cx, x, idx) -> None:
    if idx.type.rank != x.type.rank:
        raise cx.fail(f"indices {idx.type} must have the rank of data {x.type}")
    if not is_int(idx.dtype):
        raise cx.fail(f"indices must be integers, got {idx.type}")


def gather_elements_values(cx, x, idx, ax: int):
    if not (x.type.is_static and idx.type.is_static):
        return _symbolic_gather_elements(cx, x, idx, ax)
    dims, idims = static_shape(cx, x), static_shape(cx, idx, "indices")
    r = len(dims)
    _check_gather_elements_operands(cx, x, idx)
    for k in range(r):
        if k != ax and idims[k] > dims[k]:
            raise cx.fail(f"indices {idx.type} exceed data {x.type} on axis {k}")
    strides = [prod(dims[k + 1:]) for k in range(r)]
    base = np.zeros(idims, dtype=np.int64)
    for k in range(r):
        if k != ax:
            shp = [1] * r
            shp[k] = idims[k]
            base = base + (np.arange(idims[k], dtype=np.int64) * strides[k]).reshape(shp)
    i64 = checked_indices(cx, idx, (dims[ax],), (ax,), dims)
    lin = cx.op("add", [cx.op("mul", [i64, cx.scalar(strides[ax], "int64")]), cx.const(base)])
    return cx.op("gather", [reshape(cx, x, (prod(dims),)), lin], axis=0)


def _symbolic_gather_elements(cx, x, idx, ax: int):
    """GatherElements with symbolic shapes: linear indices into the flattened data, the
    offsets of the other axes as broadcast sequences (``arange`` when their length is symbolic)."""
    dims, idims = tuple(x.shape), tuple(idx.shape)
    r = len(dims)
    _check_gather_elements_operands(cx, x, idx)
    for k in range(r):
        if k != ax and idims[k] != dims[k] and not (isinstance(idims[k], int) and isinstance(dims[k], int)
                                                     and idims[k] <= dims[k]):
            raise cx.fail(f"indices {idx.type} must match data {x.type} on axis {k}")
    strides = [product(dims[k + 1:]) for k in range(r)]
    i64 = checked_indices(cx, idx, (dims[ax],), (ax,), dims)
    lin = cx.op("mul", [i64, _dim_tensor(cx, strides[ax])])
    for k in range(r):
        if k == ax or (isinstance(idims[k], int) and idims[k] == 1):
            continue
        shp = [1] * r
        shp[k] = idims[k]
        if isinstance(idims[k], int) and isinstance(strides[k], int):
            off = cx.const((np.arange(idims[k], dtype=np.int64) * strides[k]).reshape(shp))
        else:
            seq = cx.op("arange", [], length=idims[k], start=0, delta=1, dtype="int64")
            off = reshape(cx, cx.op("mul", [seq, _dim_tensor(cx, strides[k])]), shp)
        lin = cx.op("add", [lin, off])
    return cx.op("gather", [reshape(cx, x, (product(dims),)), lin], axis=0)


def checked_indices(cx, idx, extents, axes, dims):
    """``idx`` as int64 indices into ``axes`` of data of shape ``dims`` (one axis for all of
    them, or one per position along idx's last axis), negative ones counted from the end, and
    any outside [-d, d) an error of the run that names this node (``check_index``)."""
    shape = "[" + ", ".join(str(d) for d in dims) + "]"
    return cx.op("check_index", [idx], dims=tuple(extents),
                 what=tuple(f"axis {a} of the {cx.op_type} data {shape}" for a in axes))


def _dim_tensor(cx, d):
    """A dimension as a scalar int64 tensor: a constant, or computed at run time."""
    if isinstance(d, int):
        return cx.scalar(d, "int64")
    return reshape(cx, cx.op("arange", [], length=1, start=d, delta=0, dtype="int64"), ())


@translates("OneHot")
def one_hot(cx):
    idx = cx.input(0)
    values = cx.input(2)
    run_time = data_dims.runtime_operand(cx, 1)
    if run_time is not None:
        # the depth read at run time (cast to an integer, as ONNX says), bound: a negative one
        # is an error of the run
        if run_time.type.num_elements != 1:
            raise cx.fail(f"depth must be a scalar, got {run_time.type}")
        d = data_dims.scalar_of(cx, run_time)
        d = d if d.dtype == "int64" else cx.op("cast", [d], to="int64")
        bound, (depth,) = data_dims.bind(cx, d, "depth")
        depth_t, seq = bound, data_dims.iota(cx, bound, depth)
    else:
        dv = cx.const_input(1, "depth", required=True)
        if dv.size != 1:
            raise cx.fail(f"depth must be a scalar, got shape {list(dv.shape)}")
        depth = int(dv.reshape(()).item())
        depth_t, seq = cx.scalar(depth, "int64"), None
    if values.type.rank != 1 or values.shape[0] != 2:
        raise cx.fail(f"values must be [off, on], got {values.type}")
    idims = tuple(idx.shape)
    r = len(idims) + 1
    ax = norm_axis(cx, cx.attr("axis", -1), r)
    i64 = idx if idx.dtype == "int64" else cx.op("cast", [idx], to="int64")
    i64 = cx.op("where", [cx.op("less", [i64, cx.scalar(0, "int64")]),
                          cx.op("add", [i64, depth_t]), i64])
    i64 = reshape(cx, i64, idims[:ax] + (1,) + idims[ax:])
    shp = [1] * r
    shp[ax] = depth
    seq = cx.const(np.arange(depth, dtype=np.int64).reshape(shp)) if seq is None else reshape(cx, seq, shp)
    hot = cx.op("equal", [i64, seq])
    off = cx.op("slice", [values], starts=(0,), ends=(1,), steps=(1,))
    on = cx.op("slice", [values], starts=(1,), ends=(2,), steps=(1,))
    return cx.op("where", [hot, reshape(cx, on, ()), reshape(cx, off, ())])


@translates("Trilu")
def trilu(cx):
    x = cx.input(0)
    dims = tuple(x.shape)
    if len(dims) < 2:
        raise cx.fail(f"expects rank >= 2, got {x.type}")
    n, m = dims[-2], dims[-1]
    upper = cx.attr("upper", 1)
    if isinstance(n, int) and isinstance(m, int):
        diff = cx.const((np.arange(m)[None, :] - np.arange(n)[:, None]).astype(np.int64))
    else:
        # column minus row from run-time sequences over the symbolic rows or columns
        cols, rows = (cx.op("arange", [], length=d, start=0, delta=1, dtype="int64") for d in (m, n))
        diff = cx.op("sub", [reshape(cx, cols, (1, m)), reshape(cx, rows, (n, 1))])
    kv = cx.input(1, required=False)
    if kv is not None and kv.type.num_elements != 1:
        raise cx.fail(f"k must hold one value, got {kv.type}")
    k = cx.known_input(1)
    if kv is not None and k is None:
        # k known at run time only: the mask compares the diagonal offsets with it
        if not is_int(kv.dtype):
            raise cx.fail(f"k must be an integer, got {kv.type}")
        k64 = reshape(cx, kv if kv.dtype == "int64" else cx.op("cast", [kv], to="int64"), ())
    else:
        k64 = cx.scalar(0 if k is None else int(k.reshape(()).item()), "int64")
    keep = cx.op("greater_equal" if upper else "less_equal", [diff, k64])
    return cx.op("where", [keep, x, cx.scalar(0, x.dtype)])

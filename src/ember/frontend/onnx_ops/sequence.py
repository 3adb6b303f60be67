"""ONNX sequences and optionals, resolved while translating: a sequence is a list of tensor
values of known length (:class:`~ember.frontend.onnx.SequenceValue`), an optional holds a value
or nothing (:class:`~ember.frontend.onnx.OptionalValue`).  Positions, lengths and presence must
be known at compile time; the ops only rearrange the lists, so no core op is emitted except by
SplitToSequence and ConcatFromSequence (slices and concatenations) and SequenceMap (its body).
Two exceptions: an optional tensor graph input whose presence a flag input gives at run time,
which OptionalHasElement reads and OptionalGetElement checks (``check_present``); and a sequence
graph input whose length and element shapes the run decides
(:class:`~ember.frontend.onnx.RunSequence`: its elements' data one after the other and their
shapes), which Identity, SequenceLength, SequenceInsert, SequenceAt, SequenceErase (positions
read at run time), ConcatFromSequence along axis 0, the Optional ops, and SequenceMap (or a
Loop of its form, ``map_loop``) over a body of elementwise ops, Shape and Identity take
(``_map_flat``); other ops refuse it by name (``RUN_SEQUENCE_OPS``)."""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedOpError
from ...graph.ir import Value
from ...symbolic import Sym, product
from ..onnx_proto import A
from ..onnx import OptionalValue, RunSequence, SequenceValue, onnx_dtype
from . import data_dims, translates
from .tensor import norm_axis, reshape


def _seq(cx, i: int) -> SequenceValue:
    v = cx.input(i)
    if not isinstance(v, SequenceValue):
        raise cx.fail(f"input {i} must be a sequence, got {_kind(v)}")
    return v


def _tensor(cx, i: int, required: bool = True) -> Value | None:
    v = cx.input(i, required=required)
    if v is not None and not isinstance(v, Value):
        raise cx.fail(f"input {i} must be a tensor, got {_kind(v)}")
    return v


def _kind(v) -> str:
    return "a sequence" if isinstance(v, (SequenceValue, RunSequence)) else "an optional" if isinstance(v, OptionalValue) \
        else "a tensor"


def _position(cx, i: int, n: int, default: int, inclusive_end: bool = False) -> int:
    vals = cx.ints_input(i, "position")
    if vals is None:
        return default
    if len(vals) != 1:
        raise cx.fail(f"position must be a scalar, got {vals}")
    p = vals[0]
    hi = n if inclusive_end else n - 1
    if not -n <= p <= hi:
        raise cx.fail(f"position {p} is out of range for a sequence of {n} tensors")
    return p + n if p < 0 else p


def _check_dtype(cx, seq: SequenceValue, v: Value) -> None:
    if v.dtype != seq.dtype:
        raise cx.fail(f"a sequence of {seq.dtype} cannot hold {v.type}")


@translates("SequenceConstruct")
def sequence_construct(cx):
    items = [_tensor(cx, i) for i in range(len(cx.node.input))]
    if not items:
        raise cx.fail("needs at least one tensor")
    if len({v.dtype for v in items}) != 1:
        raise cx.fail(f"tensors of different dtypes: {', '.join(str(v.type) for v in items)}")
    return SequenceValue(items, items[0].dtype)


@translates("SequenceEmpty")
def sequence_empty(cx):
    dtype = onnx_dtype(cx.attr("dtype", 1), "dtype", cx.name, cx.op_type)
    return SequenceValue([], dtype)


@translates("SequenceLength")
def sequence_length(cx):
    v = cx.input(0)
    if isinstance(v, RunSequence):     # read after what gives its shapes (a check of presence)
        n = _dim(cx, v.count)
        return cx.op("broadcast_to", [cx._tr.materialize(n, cx) if cx.is_symbolic(n) else n, v.shapes], shape=())
    return cx.const(np.array(len(_seq(cx, 0).items), dtype=np.int64))


@translates("SequenceAt")
def sequence_at(cx):
    if isinstance(cx.input(0), RunSequence) or _run_time_position(cx, 1):
        return _at_run_time(cx, _as_run(cx, cx.input(0)))
    seq = _seq(cx, 0)
    if cx.ints_input(1, "position", required=True) is None:
        raise cx.fail("position is required")
    return seq.items[_position(cx, 1, len(seq.items), 0)]


@translates("SequenceInsert")
def sequence_insert(cx):
    if isinstance(cx.input(0), RunSequence) or _run_time_position(cx, 2):
        return _insert_at_run_time(cx, _as_run(cx, cx.input(0)), _tensor(cx, 1))
    seq, v = _seq(cx, 0), _tensor(cx, 1)
    _check_dtype(cx, seq, v)
    n = len(seq.items)
    at = _position(cx, 2, n, n, inclusive_end=True)
    return SequenceValue(seq.items[:at] + [v] + seq.items[at:], seq.dtype)


@translates("SequenceErase")
def sequence_erase(cx):
    if isinstance(cx.input(0), RunSequence) or _run_time_position(cx, 1):
        return _erase_at_run_time(cx, _as_run(cx, cx.input(0)))
    seq = _seq(cx, 0)
    n = len(seq.items)
    if n == 0:
        raise cx.fail("cannot erase from an empty sequence")
    at = _position(cx, 1, n, n - 1)
    return SequenceValue(seq.items[:at] + seq.items[at + 1:], seq.dtype)


@translates("SplitToSequence")
def split_to_sequence(cx):
    x = _tensor(cx, 0)
    dims = tuple(x.shape)
    ax = norm_axis(cx, cx.attr("axis", 0), len(dims))
    d = dims[ax]
    if _run_time_position(cx, 1) and cx.input(1).type.rank == 1 and isinstance(cx.input(1).shape[0], int) and ax == 0:
        return _split_sizes_at_run_time(cx, x, cx.input(1))
    if _run_time_position(cx, 1) and cx.input(1).type.rank == 0:
        return _split_step_at_run_time(cx, x, ax, cx.input(1))
    if isinstance(d, Sym) and cx.has_input(1):
        raise cx.fail(f"axis {ax} of {x.type} has the symbolic length {d}, and with split sizes it decides the "
                      f"number of pieces (the sequence's length) at compile time; fix it with shapes=")
    if isinstance(d, Sym):
        return _split_at_run_time(cx, x, ax, bool(cx.attr("keepdims", 1)))
    split = cx.const_input(1, "split")
    squeeze = False
    if split is None:
        sizes = [1] * d
        squeeze = not cx.attr("keepdims", 1)
    elif split.ndim == 0:
        step = int(split.reshape(()))
        if step < 1:
            raise cx.fail(f"split {step} must be positive")
        sizes = [step] * (d // step) + ([d % step] if d % step else [])
    else:
        sizes = [int(s) for s in split.reshape(-1)]
        if sum(sizes) != d or any(s < 0 for s in sizes):
            raise cx.fail(f"split sizes {sizes} do not cut axis {ax} of size {d}")
    items, off = [], 0
    for size in sizes:
        starts, ends = [0] * len(dims), list(dims)
        starts[ax], ends[ax] = off, off + size
        part = cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * len(dims))
        if squeeze:
            part = reshape(cx, part, dims[:ax] + dims[ax + 1:])
        items.append(part)
        off += size
    return SequenceValue(items, x.dtype)


@translates("ConcatFromSequence")
def concat_from_sequence(cx):
    if isinstance(cx.input(0), RunSequence):
        return _concat_at_run_time(cx, cx.input(0))
    seq = _seq(cx, 0)
    if not seq.items:
        raise cx.fail("cannot concatenate an empty sequence")
    rank = seq.items[0].type.rank
    new_axis = bool(cx.attr("new_axis", 0))
    ax = norm_axis(cx, cx.attr("axis"), rank + 1 if new_axis else rank)
    items = seq.items
    if new_axis:
        items = [reshape(cx, v, tuple(v.shape[:ax]) + (1,) + tuple(v.shape[ax:])) for v in items]
    return items[0] if len(items) == 1 else cx.op("concat", items, axis=ax)


@translates("SequenceMap")
def sequence_map(cx):
    # the body once per position, on the tensors of the sequences there and the other inputs
    ins = [cx.input(i) for i in range(len(cx.node.input))]
    first = ins[0]
    if isinstance(first, RunSequence):
        return _map_flat(cx, ins)
    if not isinstance(first, SequenceValue):
        raise cx.fail(f"input 0 must be a sequence, got {_kind(first)}")
    n = len(first.items)
    for v in ins[1:]:
        if isinstance(v, SequenceValue) and len(v.items) != n:
            raise cx.fail(f"sequences of different lengths {n} and {len(v.items)}")
    body = cx.graph_attr("body")
    results: list[list[Value]] = [[] for _ in body.output]
    for k in range(n):
        args = [v.items[k] if isinstance(v, SequenceValue) else v for v in ins]
        outs = cx.inline_graph("body", args, tag=f"{k}")
        for j, o in enumerate(outs):
            results[j].append(o)
    seqs = []
    for j, vals in enumerate(results):
        if vals:
            dtype = vals[0].dtype
        else:
            tt = body.output[j].type.tensor_type
            dtype = onnx_dtype(tt.elem_type, "SequenceMap output", cx.name, cx.op_type)
        seqs.append(SequenceValue(vals, dtype))
    return seqs


@translates("Optional")
def optional(cx):
    v = cx.input(0, required=False)
    if v is None and not cx.has_attr("type"):
        raise cx.fail("an empty Optional needs the 'type' attribute")
    return OptionalValue(v)


@translates("OptionalHasElement")
def optional_has_element(cx):
    v = cx.input(0, required=False)
    if isinstance(v, OptionalValue) and v.present is not None:
        return v.present            # decided at run time
    present = v is not None and (not isinstance(v, OptionalValue) or v.value is not None)
    return cx.const(np.array(present))


@translates("OptionalGetElement")
def optional_get_element(cx):
    v = cx.input(0)
    if isinstance(v, OptionalValue):
        if v.value is None:
            raise cx.fail("the optional is empty")
        if v.present is not None:
            # checked at run time (a kernel of its own, which the value is ordered after)
            items = v.value.items if isinstance(v.value, SequenceValue) else \
                [v.value.data, v.value.shapes] if isinstance(v.value, RunSequence) else [v.value]
            what = f"the optional '{items[0].name}'" if (len(items) == 1 and v.value is items[0]) or \
                (isinstance(v.value, RunSequence) and items[0].producer is None) else \
                f"the optional that {cx.op_type} node '{cx.name}' reads"
            ok = cx.op("check_present", [v.present], what=what)
            after = [cx.op("broadcast_to", [x, ok], shape=tuple(x.shape)) for x in items]
            if isinstance(v.value, RunSequence):
                return RunSequence(after[0], after[1], v.value.dtype)
            return SequenceValue(after, v.value.dtype) if isinstance(v.value, SequenceValue) else after[0]
        return v.value
    return v


# ---- sequences whose length the run decides (RunSequence) -------------------------------------

#: ONNX ops that compute each output element from the input elements at the same position: a
#: SequenceMap body made of them (and Shape, Identity) runs on the elements' data one after the
#: other
ELEMENTWISE = frozenset("""
    Abs Acos Acosh Add And Asin Asinh Atan Atanh BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Cast Ceil
    Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor Gelu Greater GreaterOrEqual HardSigmoid HardSwish
    IsInf IsNaN LeakyRelu Less LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or Pow Reciprocal Relu
    Round Selu Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Sub Sum Tan Tanh ThresholdedRelu Where Xor
""".split())


def _retype(cx, v: Value, bound: Value, shape: tuple) -> Value:
    """``v`` ordered after the check whose bound value is ``bound``, with the type ``shape``
    that the check has shown it to have."""
    if tuple(v.shape) == tuple(shape):
        return cx.op("broadcast_to", [v, bound], shape=tuple(shape))
    return cx.op("reshape_data", [v, bound], shape=tuple(shape))


def _require_zero(cx, mismatches: Value, what: str) -> Value:
    """A check that the int64 scalar ``mismatches`` is 0 when the model runs (a data symbol
    named after ``what`` whose limit is 0: the run fails with E306 otherwise); returns the
    bound value that what relies on the check reads."""
    bound, _ = data_dims.bind(cx, mismatches, what, limits=[0])
    return bound


def _differ(cx, a: Value, b: Value) -> Value:
    """How many elements of ``a`` and ``b`` (broadcast) differ, an int64 scalar."""
    ne = cx.op("cast", [cx.op("not_equal", [a, b])], to="int64")
    if ne.type.rank == 0:
        return ne
    return cx.op("reduce_sum", [ne], axes=tuple(range(ne.type.rank)), keepdims=False)


def _dim(cx, d) -> Value:
    return cx.sym_value(np.array(d, dtype=object))


def _with_rank(cx, seq: RunSequence, rank: int, what: str) -> Value:
    """The shapes of ``seq`` as ``[count, rank]``: checked at run time where its elements' rank
    is a symbol (unless it has no elements); a declared rank other than ``rank`` is refused."""
    if isinstance(seq.rank, int):
        if seq.rank != rank:
            raise cx.fail(f"{what}: the sequence's elements have rank {seq.rank}, not {rank}")
        return seq.shapes
    # (an empty sequence has every rank: a caller cannot say which)
    nonempty = _differ(cx, _dim(cx, seq.count), cx.scalar(0, "int64"))
    wrong = cx.op("mul", [_differ(cx, _dim(cx, seq.rank), cx.scalar(rank, "int64")), nonempty])
    ok = _require_zero(cx, wrong, "rank_mismatch")
    return _retype(cx, seq.shapes, ok, (seq.count, rank))


def _insert_at_run_time(cx, seq: RunSequence, v: Value) -> RunSequence:
    """SequenceInsert into a RunSequence: the tensor's data and shape put after the sequence's
    (no position), before them (position 0), or, at a position read at run time (checked to
    lie in [-count, count]), gathered into place."""
    _check_dtype(cx, seq, v)
    r = v.type.rank
    shapes = _with_rank(cx, seq, r, "the inserted tensor")
    flat = reshape(cx, v, (product(v.shape),))
    row = reshape(cx, cx.sym_value(np.array(list(v.shape), dtype=object).reshape(-1)), (1, r))
    data = cx.op("concat", [seq.data, flat], axis=0)
    rows = cx.op("concat", [shapes, row], axis=0)
    if not cx.has_input(2):
        return RunSequence(data, rows, seq.dtype)
    if not cx.is_symbolic(cx.input(2)) and cx.input(2).is_const and cx.ints_input(2, "position") == [0]:
        return RunSequence(cx.op("concat", [flat, seq.data], axis=0), cx.op("concat", [row, shapes], axis=0),
                           seq.dtype)
    count, length = _dim(cx, seq.count), _dim(cx, seq.data.shape[0])
    # a position in [-count, count]: negative ones moved down by one so that check_index's
    # [-count - 1, count + 1) is the range allowed
    at = _position_at_run_time(cx, seq, seq.count + 1, 1, "inserts into")
    off = _sizes_before(cx, seq, shapes, at)
    n = _dim(cx, product(v.shape))
    # (read after the data: its length may be a data symbol, bound by an earlier op)
    start = cx.op("broadcast_to", [cx.scalar(0, "int64"), seq.data], shape=())
    j = cx.op("arange", [start], length=seq.data.shape[0] + product(v.shape), dtype="int64")
    end = cx.op("add", [off, n])
    src = cx.op("where", [cx.op("less", [j, off]), j,
                          cx.op("where", [cx.op("less", [j, end]), cx.op("add", [length, cx.op("sub", [j, off])]),
                                          cx.op("sub", [j, n])])])
    i = cx.op("arange", [], length=seq.count + 1, dtype="int64")
    src_row = cx.op("where", [cx.op("less", [i, at]), i,
                              cx.op("where", [cx.op("equal", [i, at]), count, cx.op("sub", [i, cx.scalar(1, "int64")])])])
    return RunSequence(cx.op("gather", [data, src], axis=0), cx.op("gather", [rows, src_row], axis=0), seq.dtype)


def _run_time_position(cx, i: int) -> bool:
    """Whether the node's position operand ``i`` is read at run time (a graph input, or
    computed from one): the sequence is then handled in its laid-out form."""
    v = cx.input(i, required=False)
    return v is not None and isinstance(v, Value) and not v.is_const and not cx.is_symbolic(v)


def _as_run(cx, seq) -> RunSequence:
    """A sequence of compile-time length laid out as a RunSequence (its elements' data
    concatenated and their shapes stacked), for an op whose position the run decides."""
    if isinstance(seq, RunSequence):
        return seq
    seq = _seq(cx, 0)
    ranks = {v.type.rank for v in seq.items}
    if len(ranks) != 1:
        # the position needed at compile time, as before (a caller that knows it specializes)
        cx.ints_input(2 if cx.op_type == "SequenceInsert" else 1, "position")
        raise cx.unsupported("a position read at run time into a sequence that is empty or whose elements "
                             "have different ranks")
    r = ranks.pop()
    data = [reshape(cx, v, (product(v.shape),)) for v in seq.items]
    rows = [reshape(cx, cx.sym_value(np.array(list(v.shape), dtype=object).reshape(-1)), (1, r)) for v in seq.items]
    cat = lambda vs: vs[0] if len(vs) == 1 else cx.op("concat", vs, axis=0)  # noqa: E731
    return RunSequence(cat(data), cat(rows), seq.dtype)


def _position_at_run_time(cx, seq: RunSequence, places, shift: int, what: str) -> Value:
    """Input 1 or 2 of the node, a position into ``places`` places of ``seq`` (count or count +
    1), as an int64 scalar in [0, places), checked at run time (``check_index``: an index error
    of the run otherwise).  ``shift`` moves negative positions down (by one where a position
    may equal the count: ONNX's [-count, count])."""
    i = 2 if cx.op_type == "SequenceInsert" else 1
    p = cx.input(i)
    if p.type.size != 1 or p.dtype not in ("int32", "int64"):
        raise cx.fail(f"position must be an integer scalar, got {p.type}")
    # (read after the shapes: a constant position is checked against the run's count too)
    p = cx.op("broadcast_to", [reshape(cx, cx.op("cast", [p], to="int64"), ()), seq.shapes], shape=())
    if shift:
        p = cx.op("where", [cx.op("less", [p, cx.scalar(0, "int64")]), cx.op("sub", [p, cx.scalar(shift, "int64")]), p])
    return cx.op("check_index", [p], dims=(places,),
                 what=(f"the position in the sequence that {cx.op_type} node '{cx.name}' {what}",))


def _sizes_before(cx, seq: RunSequence, shapes: Value, at: Value) -> Value:
    """The element count of the elements of ``seq`` before position ``at`` (its data offset)."""
    rank = shapes.shape[1]
    sizes = cx.op("reduce_prod", [shapes], axes=(1,), keepdims=False) if rank != 0 else \
        cx.op("broadcast_to", [cx.scalar(1, "int64"), shapes], shape=(seq.count,))
    k = cx.op("arange", [], length=seq.count, dtype="int64")
    before = cx.op("where", [cx.op("less", [k, at]), sizes, cx.scalar(0, "int64")])
    return cx.op("reduce_sum", [before], axes=(0,), keepdims=False)


def _at_run_time(cx, seq: RunSequence) -> Value:
    """SequenceAt of a RunSequence: the element's shape read from the shapes and bound as data
    symbols (``bind_dims``), its data gathered from its offset."""
    if not isinstance(seq.rank, int):
        raise cx.unsupported("an element of a sequence whose length the run decides and whose elements have "
                             "no declared rank (the element's rank must be known)")
    at = _position_at_run_time(cx, seq, seq.count, 0, "reads")
    row = cx.op("gather", [seq.shapes, at], axis=0)
    if seq.rank == 0:
        bound, dims = cx.op("broadcast_to", [cx.scalar(1, "int64"), row], shape=()), []
    else:
        bound, dims = data_dims.bind(cx, row, "element_dim")
    n = product(dims)
    j = data_dims.iota(cx, bound, n)
    flat = cx.op("gather", [seq.data, cx.op("add", [j, _sizes_before(cx, seq, seq.shapes, at)])], axis=0)
    return reshape(cx, flat, tuple(dims))


def _erase_at_run_time(cx, seq: RunSequence) -> RunSequence:
    """SequenceErase of a RunSequence: the data and shapes of the other elements gathered; the
    data's new length (the erased element's size read from its shape) bound as a data
    symbol."""
    if cx.has_input(1):
        at = _position_at_run_time(cx, seq, seq.count, 0, "erases from")
    else:                                   # the last element (an empty sequence: an error)
        last = cx.op("sub", [_dim(cx, seq.count), cx.scalar(1, "int64")])
        at = cx.op("check_index", [last], dims=(seq.count,),
                   what=(f"the last element of the sequence that SequenceErase node '{cx.name}' erases from",))
    rank = seq.rank
    row = cx.op("gather", [seq.shapes, at], axis=0)
    size = cx.op("reduce_prod", [row], axes=(0,), keepdims=False) if rank != 0 else cx.scalar(1, "int64")
    length = cx.op("sub", [_dim(cx, seq.data.shape[0]), size])
    bound, (m,) = data_dims.bind(cx, length, "sequence_length")
    off = _sizes_before(cx, seq, seq.shapes, at)
    j = data_dims.iota(cx, bound, m)
    src = cx.op("where", [cx.op("less", [j, off]), j, cx.op("add", [j, size])])
    i = cx.op("arange", [], length=seq.count - 1, dtype="int64")
    src_row = cx.op("where", [cx.op("less", [i, at]), i, cx.op("add", [i, cx.scalar(1, "int64")])])
    return RunSequence(cx.op("gather", [seq.data, src], axis=0), cx.op("gather", [seq.shapes, src_row], axis=0),
                       seq.dtype)


def _concat_at_run_time(cx, seq: RunSequence) -> Value:
    """ConcatFromSequence of a RunSequence along axis 0 (its elements one after the other: the
    data itself, reshaped), or stacked along a new axis 0: the other dimensions read from the
    first element's shape and bound as data symbols, every element checked to agree (and the
    sequence to have elements); other axes are refused."""
    if not isinstance(seq.rank, int):
        raise cx.unsupported("the concatenation of a sequence whose length the run decides and whose elements "
                             "have no declared rank")
    new_axis = bool(cx.attr("new_axis", 0))
    r = seq.rank
    ax = norm_axis(cx, cx.attr("axis"), r + 1 if new_axis else r)
    if ax != 0:
        raise cx.unsupported(f"axis {ax} of a sequence whose length the run decides (only 0, the elements one "
                             f"after the other)")
    zero = cx.op("broadcast_to", [cx.scalar(0, "int64"), seq.shapes], shape=())
    first = cx.op("gather", [seq.shapes, cx.op("check_index", [zero], dims=(seq.count,),
                                                what=(f"the sequence that ConcatFromSequence node '{cx.name}' "
                                                      f"concatenates (it has no elements)",))], axis=0)
    # every element's shape is the first's, but along the concatenated axis
    kept = first if new_axis else cx.op("slice", [first], starts=(1,), ends=(r,), steps=(1,))
    others = seq.shapes if new_axis else cx.op("slice", [seq.shapes], starts=(0, 1), ends=(seq.count, r),
                                                steps=(1, 1))
    wrong = _differ(cx, others, reshape(cx, kept, (1, kept.shape[0])))
    if new_axis:
        lead = _dim(cx, seq.count)
    else:
        lead = cx.op("reduce_sum", [cx.op("slice", [seq.shapes], starts=(0, 0), ends=(seq.count, 1), steps=(1, 1))],
                     axes=(0, 1), keepdims=False)
    ok = _require_zero(cx, wrong, "elements_unlike_the_first")
    kept = cx.op("broadcast_to", [kept, ok], shape=tuple(kept.shape))
    values = cx.op("concat", [reshape(cx, lead, (1,)), kept], axis=0)
    bound, dims = data_dims.bind(cx, values, ["concatenated_dim"] + [f"dim{k}" for k in range(kept.shape[0])],
                                 numel=seq.data.shape[0])
    return cx.op("reshape_data", [seq.data, bound], shape=tuple(dims))


def _split_at_run_time(cx, x: Value, ax: int, keepdims: bool) -> RunSequence:
    """SplitToSequence into pieces of 1 along an axis of symbolic length: a RunSequence of that
    many elements, its data ``x`` with the axis moved first (each element's data is then one
    block, in its own row-major order) and every element of one shape."""
    dims = tuple(x.shape)
    if ax:
        x = cx.op("transpose", [x], perm=(ax,) + tuple(k for k in range(len(dims)) if k != ax))
    data = reshape(cx, x, (product(dims),))
    shape = dims[:ax] + ((1,) if keepdims else ()) + dims[ax + 1:]
    row = reshape(cx, cx.sym_value(np.array(list(shape), dtype=object).reshape(-1)), (1, len(shape)))
    return RunSequence(data, cx.op("broadcast_to", [row], shape=(dims[ax], len(shape))), x.dtype)


def _split_sizes_at_run_time(cx, x: Value, sizes: Value) -> RunSequence:
    """SplitToSequence along axis 0 into as many pieces as ``sizes`` (read at run time) has
    elements: the data is ``x`` itself (each piece a block of rows), the shapes the sizes with
    the other dimensions; the sizes are checked to be non-negative and to add up to the axis."""
    dims = tuple(x.shape)
    k = sizes.shape[0]
    sizes = cx.op("cast", [sizes], to="int64")
    zero = cx.scalar(0, "int64")
    negative = cx.op("reduce_sum", [cx.op("cast", [cx.op("less", [sizes, zero])], to="int64")], axes=(0,),
                     keepdims=False)
    total = cx.op("reduce_sum", [sizes], axes=(0,), keepdims=False)
    ok = _require_zero(cx, cx.op("add", [negative, _differ(cx, total, _dim(cx, dims[0]))]), "split_mismatch")
    rest = reshape(cx, cx.sym_value(np.array(list(dims[1:]), dtype=object).reshape(-1)), (1, len(dims) - 1))
    rows = cx.op("concat", [reshape(cx, cx.op("broadcast_to", [sizes, ok], shape=(k,)), (k, 1)),
                            cx.op("broadcast_to", [rest], shape=(k, len(dims) - 1))], axis=1)
    return RunSequence(reshape(cx, x, (product(dims),)), rows, x.dtype)


def _split_step_at_run_time(cx, x: Value, ax: int, step: Value) -> RunSequence:
    """SplitToSequence along ``ax`` into pieces of a size ``step`` read at run time (the last
    one shorter): their count ceil(d / step) bound as a data symbol (a step below 1 fails the
    binding), and the data gathered into the pieces' order.  Piece k starts at k * step * outer
    * inner (every piece before the last is full), so the source of output position q is found
    from q's piece and its index inside the piece's shape [outer, w_k, inner]."""
    dims = tuple(x.shape)
    d, outer, inner = dims[ax], product(dims[:ax]), product(dims[ax + 1:])
    one = cx.scalar(1, "int64")
    s = reshape(cx, cx.op("cast", [step], to="int64"), ())
    dd = _dim(cx, d)
    count = cx.op("where", [cx.op("less", [s, one]), cx.scalar(-1, "int64"),
                            cx.op("div", [cx.op("sub", [cx.op("add", [dd, s]), one]), cx.op("maximum", [s, one])])])
    bound, (n,) = data_dims.bind(cx, count, "pieces", limits=[d] if isinstance(d, int) else None)
    s = cx.op("maximum", [cx.op("broadcast_to", [s, bound], shape=()), one])
    k = data_dims.iota(cx, bound, n)
    widths = cx.op("minimum", [cx.op("broadcast_to", [s], shape=(n,)), cx.op("sub", [dd, cx.op("mul", [k, s])])])
    cols = [reshape(cx, widths, (n, 1))]
    before = reshape(cx, cx.sym_value(np.array(list(dims[:ax]), dtype=object).reshape(-1)), (1, ax))
    after = reshape(cx, cx.sym_value(np.array(list(dims[ax + 1:]), dtype=object).reshape(-1)),
                    (1, len(dims) - ax - 1))
    rows = cx.op("concat", [cx.op("broadcast_to", [before, bound], shape=(n, ax)), cols[0],
                            cx.op("broadcast_to", [after, bound], shape=(n, len(dims) - ax - 1))], axis=1)
    size = product(dims)
    q = cx.op("arange", [cx.op("broadcast_to", [cx.scalar(0, "int64"), bound], shape=())], length=size,
              dtype="int64")
    oi, ii = _dim(cx, outer), _dim(cx, inner)
    block = cx.op("mul", [cx.op("mul", [s, oi]), ii])              # a full piece's elements
    piece = cx.op("div", [q, cx.op("maximum", [block, one])])
    within = cx.op("sub", [q, cx.op("mul", [piece, block])])
    w = cx.op("minimum", [s, cx.op("sub", [dd, cx.op("mul", [piece, s])])])
    per_o = cx.op("maximum", [cx.op("mul", [w, ii]), one])
    o = cx.op("div", [within, per_o])
    rest = cx.op("sub", [within, cx.op("mul", [o, per_o])])
    c = cx.op("div", [rest, cx.op("maximum", [ii, one])])
    m = cx.op("sub", [rest, cx.op("mul", [c, ii])])
    src = cx.op("add", [cx.op("mul", [cx.op("add", [cx.op("mul", [o, dd]), cx.op("add", [cx.op("mul", [piece, s]), c])]),
                                      ii]), m])
    data = cx.op("gather", [reshape(cx, x, (size,)), src], axis=0)
    return RunSequence(data, rows, x.dtype)


def _repeat(cx, t: Value, like: RunSequence) -> RunSequence:
    """The sequence of copies of tensor ``t``, as many as ``like`` has elements (ordered after
    what gives ``like``'s shapes)."""
    count = like.count
    n, r = product(t.shape), t.type.rank
    data = reshape(cx, cx.op("broadcast_to", [reshape(cx, t, (1, n))], shape=(count, n)), (count * n,))
    row = reshape(cx, cx.sym_value(np.array(list(t.shape), dtype=object).reshape(-1)), (1, r))
    return RunSequence(data, cx.op("broadcast_to", [row, like.shapes], shape=(count, r)), t.dtype)


def _shapes_of(cx, s: RunSequence) -> RunSequence:
    """The sequence of the shapes of ``s``'s elements (Shape applied to each)."""
    data = reshape(cx, s.shapes, (s.count * s.rank,))
    row = reshape(cx, _dim(cx, s.rank), (1, 1))
    return RunSequence(data, cx.op("broadcast_to", [row, s.shapes], shape=(s.count, 1)), "int64")


def _aligned(cx, ref: RunSequence, v, what: str):
    """Operand ``v`` of an elementwise body node whose first sequence operand is ``ref``, as a
    tensor of ``ref.data``'s shape (or a scalar): another sequence's data after a check that
    its elements have ``ref``'s shapes; a tensor repeated once per element after a check that
    every element has its shape."""
    if v is None or (isinstance(v, Value) and v.type.rank == 0):
        return v
    if isinstance(v, RunSequence):
        if v.shapes is ref.shapes and tuple(v.data.shape) == tuple(ref.data.shape):
            return v.data
        other, length = v, v.data.shape[0]
    else:
        other, length = _repeat(cx, v, ref), product(v.shape) * ref.count
    shapes, other_shapes = ref.shapes, other.shapes
    if isinstance(ref.rank, int) and isinstance(other.rank, int):
        if ref.rank != other.rank:
            raise cx.unsupported(f"operands of ranks {other.rank} and {ref.rank} per element in an elementwise "
                                 f"body node over a sequence whose length the run decides")
    elif isinstance(other.rank, int):
        shapes = _with_rank(cx, ref, other.rank, what)
    elif isinstance(ref.rank, int):
        other_shapes = _with_rank(cx, other, ref.rank, what)
    elif ref.rank != other.rank:
        raise cx.unsupported("two sequences whose elements' ranks are both undeclared in an elementwise body node")
    ok = _require_zero(cx, cx.op("add", [_differ(cx, _dim(cx, length), _dim(cx, ref.data.shape[0])),
                                         _differ(cx, shapes, other_shapes)]), what)
    return _retype(cx, other.data, ok, tuple(ref.data.shape))


def _translate_one(cx, node, k: int, vals: list) -> list:
    """Body node ``node`` (the ``k``-th) translated on the values ``vals``."""
    tr = cx._tr
    prefix = f"{cx.name}/body/{k}"
    n = type(node)()
    n.CopyFrom(node)
    del n.input[:], n.output[:]
    for j, v in enumerate(vals):
        if v is None:
            n.input.append("")
        else:
            tr.env[f"{prefix}/in{j}"] = v
            n.input.append(f"{prefix}/in{j}")
    n.output.extend(f"{prefix}/out{j}" if o else "" for j, o in enumerate(node.output))
    n.name = f"{cx.name}/body/{node.name or node.op_type + '_' + str(k)}"
    opsets = {**tr.opsets, "": cx.opset}
    if not tr.supported(n, opsets):
        raise UnsupportedOpError({node.op_type: [n.name]})
    tr.used.update(x for x in n.input if x)
    tr.used.update(x for x in n.output if x)
    tr.translate_node(n, n.name, opsets)
    return [tr.lookup(o, cx) if o else None for o in n.output]


def _run_body(cx, nodes, state: dict, value) -> None:
    """The nodes of a SequenceMap body (or of a loop in its form) on RunSequences: each node's
    results into ``state``; ``value(name)`` gives an operand."""
    for k, node in enumerate(nodes):
        vals = [value(x) for x in node.input]
        seqs = [v for v in vals if isinstance(v, RunSequence)]
        if any(a.type in (A.GRAPH, A.GRAPHS) for a in node.attribute):
            outs = None
        elif node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
            outs = vals[:1]
        elif not seqs:
            outs = _translate_one(cx, node, k, vals)
        elif node.op_type == "Shape" and node.domain in ("", "ai.onnx") and not node.attribute:
            outs = [_shapes_of(cx, vals[0])]
        elif node.op_type in ELEMENTWISE and node.domain in ("", "ai.onnx"):
            first = seqs[0]
            what = f"elements_unlike_{node.output[0]}"
            flat = _translate_one(cx, node, k, [_aligned(cx, first, v, what) for v in vals])
            for f in flat:
                if f is not None and tuple(f.shape) != tuple(first.data.shape):
                    raise cx.fail(f"body node '{node.name or node.op_type}' gives {f.type} from elements of "
                                  f"{first.data.type}")
            outs = [None if f is None else RunSequence(f, first.shapes, f.dtype) for f in flat]
        else:
            outs = None
        if outs is None:
            raise cx.unsupported(f"body node '{node.name or node.op_type}' ({node.op_type}) over a sequence whose "
                                 f"length the run decides: only elementwise ops, Shape and Identity apply to its "
                                 f"elements' data")
        for o, v in zip(node.output, outs):
            if o:
                state[o] = v


def _length_checked(cx, ref: RunSequence, v: RunSequence) -> RunSequence:
    """``v`` checked at run time to have as many elements as ``ref`` (typed so)."""
    if v.count == ref.count:
        return v
    ok = _require_zero(cx, _differ(cx, _dim(cx, v.count), _dim(cx, ref.count)), "length_mismatch")
    return RunSequence(v.data, _retype(cx, v.shapes, ok, (ref.count, v.rank)), v.dtype)


def _map_flat(cx, ins: list):
    """SequenceMap over RunSequences: each body node applied to the elements' data one after
    the other, which is the body applied to each element where every node is elementwise (its
    sequence operands checked at run time to have elements of the same shapes, a tensor operand
    to be a scalar or to have every element's shape), Shape of an element (the sequence's
    shapes) or Identity; nodes that read no element run once.  Other bodies are refused."""
    ref = ins[0]
    if any(isinstance(v, SequenceValue) for v in ins):
        raise cx.unsupported("sequences of compile-time and run-time lengths together")
    args = [_length_checked(cx, ref, v) if isinstance(v, RunSequence) else v for v in ins]
    body = cx.graph_attr("body")
    if len(body.input) != len(args):
        raise cx.fail(f"the body takes {len(body.input)} inputs, but the node gives {len(args)}")
    state = {vi.name: v for vi, v in zip(body.input, args)}
    for t in body.initializer:
        state[t.name] = cx.const(cx._tr.tensor_array(t, "initializer"))

    def value(name):
        if not name:
            return None
        return state[name] if name in state else cx._tr.lookup(name, cx)

    _run_body(cx, body.node, state, value)
    results = []
    for o in body.output:
        v = value(o.name)
        results.append(v if isinstance(v, RunSequence) else _repeat(cx, v, ref))
    return results


def map_loop(cx):
    """A Loop that maps sequences whose length the run decides element by element, the form of
    SequenceMap's ONNX function body: its trip count their length (checked at run time), no
    condition (or a constant true one the body passes on), carried values that start as empty
    sequences and that the body extends by one element at the back, and elements read as
    SequenceAt(x, iteration number).  Translated as that SequenceMap (``_run_body``); None
    where the body reads no such sequence, a refusal naming the node where it does in another
    form."""
    tr = cx._tr
    body = cx.graph_attr("body")
    local = ({vi.name for vi in body.input} | {o for n in body.node for o in n.output}
             | {t.name for t in body.initializer})

    def outer(name):
        return tr.env.get(name) if name and name not in local else None

    reads = [n for n in body.node if n.op_type == "SequenceAt" and isinstance(outer(n.input[0]), RunSequence)]
    if not reads:
        return None

    def refuse(why: str):
        return cx.unsupported(f"a loop over a sequence whose length the run decides, with {why}: only a loop "
                              f"that maps its elements one by one (the form of SequenceMap) is taken")

    formals = [vi.name for vi in body.input]
    if len(formals) < 2 or any(len(n.input) < 2 or n.input[1] != formals[0] for n in reads):
        raise refuse("an element read at another position than the iteration number")
    ref = outer(reads[0].input[0])
    cond = cx.input(1, required=False)
    if cond is not None and not (cond.is_const and not cx.is_symbolic(cond) and bool(np.asarray(cond.const).all())):
        raise refuse("a condition other than a constant true one")
    carried = [cx.input(k) for k in range(2, len(cx.node.input))]
    if any(not isinstance(c, SequenceValue) or c.items for c in carried):
        raise refuse("carried values other than empty sequences")
    if len(body.output) != 1 + len(carried):
        raise refuse("scan outputs")
    producers = {o: n for n in body.node for o in n.output}
    cond_node = producers.get(body.output[0].name)
    if body.output[0].name != formals[1] and not (cond_node is not None and cond_node.op_type == "Identity"
                                                  and cond_node.input[0] == formals[1]):
        raise refuse("a condition the body computes")
    inserts = []
    for k in range(len(carried)):
        n = producers.get(body.output[1 + k].name)
        if n is None or n.op_type != "SequenceInsert" or n.input[0] != formals[2 + k] or \
                (len(n.input) > 2 and n.input[2]):
            raise refuse(f"a carried value {k} that the body does not extend by one element at the back")
        inserts.append(n)
    m = cx.input(0, required=False)
    if m is None:
        raise refuse("no trip count")
    state = {n.output[0]: _length_checked(cx, ref, outer(n.input[0])) for n in reads}
    skip = {id(n) for n in reads + inserts} | ({id(cond_node)} if cond_node is not None else set())

    def value(name):
        if not name:
            return None
        if name in formals:
            raise refuse("the iteration number, condition or carried values read otherwise")
        if name in state:
            return state[name]
        return tr.lookup(name, cx)

    _run_body(cx, [n for n in body.node if id(n) not in skip], state, value)
    ok = _require_zero(cx, _differ(cx, reshape(cx, cx.op("cast", [m], to="int64"), ()), _dim(cx, ref.count)),
                       "trip_count_mismatch")
    results = []
    for c, n in zip(carried, inserts):
        v = value(n.input[1])
        v = v if isinstance(v, RunSequence) else _repeat(cx, v, ref)
        if v.dtype != c.dtype:
            raise cx.fail(f"a sequence of {c.dtype} cannot hold {v.dtype}")
        results.append(RunSequence(v.data, _retype(cx, v.shapes, ok, tuple(v.shapes.shape)), v.dtype))
    return results

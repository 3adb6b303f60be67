"""ONNX sequences and optionals, resolved while translating: a sequence is a list of tensor
values of known length (:class:`~ember.frontend.onnx.SequenceValue`), an optional holds a value
or nothing (:class:`~ember.frontend.onnx.OptionalValue`).  Positions, lengths and presence must
be known at compile time; the ops only rearrange the lists, so no core op is emitted except by
SplitToSequence and ConcatFromSequence (slices and concatenations) and SequenceMap (its body).
The one exception: an optional tensor graph input whose presence a flag input gives at run
time, which OptionalHasElement reads and OptionalGetElement checks (``check_present``)."""

from __future__ import annotations

import numpy as np

from ...graph.ir import Value
from ...symbolic import Sym
from ..onnx import OptionalValue, SequenceValue, onnx_dtype
from . import translates
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
    return "a sequence" if isinstance(v, SequenceValue) else "an optional" if isinstance(v, OptionalValue) \
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
    return cx.const(np.array(len(_seq(cx, 0).items), dtype=np.int64))


@translates("SequenceAt")
def sequence_at(cx):
    seq = _seq(cx, 0)
    if cx.ints_input(1, "position", required=True) is None:
        raise cx.fail("position is required")
    return seq.items[_position(cx, 1, len(seq.items), 0)]


@translates("SequenceInsert")
def sequence_insert(cx):
    seq, v = _seq(cx, 0), _tensor(cx, 1)
    _check_dtype(cx, seq, v)
    n = len(seq.items)
    at = _position(cx, 2, n, n, inclusive_end=True)
    return SequenceValue(seq.items[:at] + [v] + seq.items[at:], seq.dtype)


@translates("SequenceErase")
def sequence_erase(cx):
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
    if isinstance(d, Sym):
        raise cx.fail(f"axis {ax} of {x.type} has the symbolic length {d}, and it decides the number of "
                      f"pieces (the sequence's length) at compile time; fix it with shapes=")
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
            items = v.value.items if isinstance(v.value, SequenceValue) else [v.value]
            what = f"the optional '{items[0].name}'" if len(items) == 1 and v.value is items[0] else \
                f"the optional that {cx.op_type} node '{cx.name}' reads"
            ok = cx.op("check_present", [v.present], what=what)
            after = [cx.op("broadcast_to", [x, ok], shape=tuple(x.shape)) for x in items]
            return SequenceValue(after, v.value.dtype) if isinstance(v.value, SequenceValue) else after[0]
        return v.value
    return v

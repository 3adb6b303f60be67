"""ONNX control flow with a trip count known at compile time: Loop and Scan, unrolled.

Every iteration inlines a copy of the body, bound to the values of that iteration, so the core
graph stays a plain dataflow graph.  A Loop's condition must be known at compile time (constants,
or values that fold); a condition computed from graph inputs raises
:class:`~ember.frontend.onnx.OperandNotConstantError` like any other compile-time operand.  A
Loop's trip count computed from symbolic sizes, and a Scan's symbolic sequence length, are
unrolled to their upper bound (a Scan's inputs padded with zeros), the carried values and states
kept past the actual count and the outputs cut back to it.
(``If`` with a constant condition lives in ``tensor.py``.)
"""

from __future__ import annotations

import numpy as np

from ... import limits
from ...graph.types import np_dtype
from ...symbolic import Sym
from ..onnx import onnx_dtype
from . import translates
from .tensor import _dim_tensor, norm_axis, reshape

def stack(cx, values, axis: int, elem_type=None):
    """``values`` (all of one shape) stacked along a new axis ``axis``.  With no values the
    element shape comes from ``elem_type`` (the body's declared output type)."""
    if not values:
        shape, dtype = _declared(cx, elem_type)
        out = list(shape)
        out.insert(axis, 0)
        return cx.const(np.zeros(out, dtype=np_dtype(dtype)), dtype)
    dims = tuple(values[0].shape)
    for v in values[1:]:
        if tuple(v.shape) != tuple(dims) or v.dtype != values[0].dtype:
            raise cx.fail(f"scan output changes type between iterations: {values[0].type} then {v.type}")
    new = list(dims)
    new.insert(axis, 1)
    parts = [reshape(cx, v, new) for v in values]
    return parts[0] if len(parts) == 1 else cx.op("concat", parts, axis=axis)


def _declared(cx, vi):
    tt = vi.type.tensor_type if vi is not None else None
    if tt is None or not tt.HasField("shape") or any(not d.HasField("dim_value") for d in tt.shape.dim):
        raise cx.unsupported("zero iterations with a scan output whose shape the body does not declare")
    return tuple(int(d.dim_value) for d in tt.shape.dim), onnx_dtype(tt.elem_type, "scan output", cx.name,
                                                                       cx.op_type)


def _scalar(cx, v, what):
    arr = cx.const_of(v, what)
    if arr.size != 1:
        raise cx.fail(f"{what} must hold one value, got shape {list(arr.shape)}")
    return arr.reshape(()).item()


@translates("Loop")
def loop(cx):
    body = cx.graph_attr("body")
    m = cx.input(0, required=False)
    cond = cx.input(1, required=False)
    carried = [cx.input(i) for i in range(2, len(cx.node.input))]
    n_carried = len(carried)
    n_scan = len(body.output) - 1 - n_carried
    if n_scan < 0 or len(body.input) != 2 + n_carried:
        raise cx.fail(f"the body has {len(body.input)} inputs and {len(body.output)} outputs for "
                      f"{n_carried} loop-carried values")
    if m is not None and cx.is_symbolic(m):
        # a trip count computed from symbolic sizes: unrolled to its bound, the carried values
        # kept past it and the scan outputs cut back to it
        dims = cx.dims_input(0, "trip count M")
        if len(dims) != 1:
            raise cx.fail(f"trip count M must hold one value, got {len(dims)}")
        trip = dims[0]
        steps = cx.unrolled_length(trip, "the trip count M")
        size = _dim_tensor(cx, trip)
    else:
        trip = None if m is None else int(_scalar(cx, m, "trip count M"))
        steps = trip
    keep_going = True if cond is None else bool(_scalar(cx, cond, "condition"))
    if trip is None and cond is None:
        raise cx.unsupported("no trip count and no condition (an infinite loop)")
    scans: list[list] = [[] for _ in range(n_scan)]
    k = 0
    while keep_going and (steps is None or k < steps):
        limits.check_count("loop_iterations", k + 1, "the number of iterations unrolled",
                           node=cx.name, op=cx.op_type)
        it = cx.scalar(k, "int64")
        if isinstance(trip, Sym):
            # an iteration past the count runs the last one again (discarded), so that what the
            # body indexes by the iteration number stays in range
            it = cx.op("maximum", [cx.op("minimum", [it, _dim_tensor(cx, trip - 1)]), cx.scalar(0, "int64")])
        c = cx.const(np.array(True))
        outs = cx.inline_graph("body", [it, c] + carried, tag=f"{k}")
        keep_going = bool(_scalar(cx, outs[0], "the condition the body computes"))
        new = list(outs[1:1 + n_carried])
        if isinstance(trip, Sym):
            live = cx.op("less", [cx.scalar(k, "int64"), size])
            for old, v in zip(carried, new):
                if tuple(old.shape) != tuple(v.shape):
                    raise cx.unsupported(f"a loop-carried value that changes shape ({old.type} -> {v.type}) "
                                         f"over a symbolic trip count")
            new = [cx.op("where", [live, v, old]) for v, old in zip(new, carried)]
        carried = new
        for j in range(n_scan):
            scans[j].append(outs[1 + n_carried + j])
        k += 1
    if isinstance(trip, Sym) and k < steps:
        raise cx.unsupported(f"a condition that ends the loop after {k} iterations with the symbolic trip count "
                             f"{trip} (the count is min({trip}, {k}))")
    finals = [stack(cx, s, 0, body.output[1 + n_carried + j]) for j, s in enumerate(scans)]
    if isinstance(trip, Sym):
        finals = [cx.op("slice", [f], starts=(0,) * f.type.rank, ends=(trip,) + tuple(f.shape[1:]),
                        steps=(1,) * f.type.rank) for f in finals]
    return carried + finals


@translates("Scan")
def scan(cx):
    body = cx.graph_attr("body")
    n_in = cx.attr("num_scan_inputs")
    if cx.opset < 9:
        return _scan8(cx, body, n_in)
    inputs = [cx.input(i) for i in range(len(cx.node.input))]
    n_state = len(inputs) - n_in
    states, xs = inputs[:n_state], inputs[n_state:]
    n_out = len(body.output) - n_state
    outs = _scan(cx, body, states, xs, n_out, tag="")
    return outs


def _scan(cx, body, states, xs, n_out, tag):
    n_in = len(xs)
    in_axes = cx.attr("scan_input_axes", [0] * n_in)
    in_dirs = cx.attr("scan_input_directions", [0] * n_in)
    out_axes = cx.attr("scan_output_axes", [0] * n_out)
    out_dirs = cx.attr("scan_output_directions", [0] * n_out)
    if not (len(in_axes) == len(in_dirs) == n_in and len(out_axes) == len(out_dirs) == n_out):
        raise cx.fail("scan axes and directions must have one entry per scan input and output")
    in_axes = [norm_axis(cx, a, x.type.rank) for a, x in zip(in_axes, xs)]
    lengths = {x.shape[a] for a, x in zip(in_axes, xs)}
    if len(lengths) != 1:
        raise cx.fail(f"scan inputs have different sequence lengths {sorted(map(str, lengths))}")
    (length,) = lengths
    n = cx.unrolled_length(length, "the scan")
    limits.check_count("loop_iterations", n, "the number of iterations unrolled", node=cx.name, op=cx.op_type)
    if isinstance(length, Sym):
        xs = [pad_to(cx, x, a, n) for x, a in zip(xs, in_axes)]
        size = _dim_tensor(cx, length)
    per_step: list[list] = [[] for _ in range(n_out)]
    n_state = len(states)
    for t in range(n):
        slices = [cx.op("gather", [x, _step_index(cx, length, t, d)], axis=a) for x, a, d in zip(xs, in_axes, in_dirs)]
        outs = cx.inline_graph("body", list(states) + slices, tag=f"{tag}{t}")
        new = list(outs[:n_state])
        if isinstance(length, Sym):
            # past the actual length the states stay
            live = cx.op("less", [cx.scalar(t, "int64"), size])
            new = [cx.op("where", [live, v, old]) for v, old in zip(new, states)]
        states = new
        for j in range(n_out):
            per_step[j].append(outs[n_state + j])
    finals = []
    for j in range(n_out):
        vi = body.output[n_state + j]
        rank = (per_step[j][0].type.rank if per_step[j] else len(_declared(cx, vi)[0])) + 1
        ax = norm_axis(cx, out_axes[j], rank)
        if isinstance(length, Sym):
            # the steps past the length cut off, in order or reversed within the length
            full = stack(cx, per_step[j], ax, vi)
            if out_dirs[j]:
                back = cx.op("sub", [cx.op("sub", [size, cx.scalar(1, "int64")]),
                                     cx.op("arange", [], length=length, start=0, delta=1, dtype="int64")])
                finals.append(cx.op("gather", [full, back], axis=ax))
            else:
                ends = list(full.shape)
                ends[ax] = length
                finals.append(cx.op("slice", [full], starts=(0,) * rank, ends=tuple(ends), steps=(1,) * rank))
            continue
        vals = per_step[j][::-1] if out_dirs[j] else per_step[j]
        finals.append(stack(cx, vals, ax, vi))
    return states + finals


def pad_to(cx, x, axis: int, n: int):
    """``x`` extended with zeros along ``axis`` to the length ``n``."""
    fill = list(x.shape)
    fill[axis] = n - x.shape[axis]
    return cx.op("concat", [x, cx.op("broadcast_to", [cx.scalar(0, x.dtype)], shape=tuple(fill))], axis=axis)


def _step_index(cx, length, t: int, reverse: bool):
    """The position step ``t`` reads: ``t``, or ``length - 1 - t`` (0 past a symbolic length)."""
    if not reverse:
        return cx.scalar(t, "int64")
    if not isinstance(length, Sym):
        return cx.scalar(length - 1 - t, "int64")
    return cx.op("maximum", [_dim_tensor(cx, length - 1 - t), cx.scalar(0, "int64")])


def _scan8(cx, body, n_in):
    """Scan before opset 9: a leading batch axis on states and scan inputs (scanned along axis
    1), and optional sequence lengths, which must all be the full length."""
    lens = cx.input(0, required=False)
    inputs = [cx.input(i) for i in range(1, len(cx.node.input))]
    n_state = len(inputs) - n_in
    states, xs = inputs[:n_state], inputs[n_state:]
    if cx.has_attr("directions"):
        dirs = cx.attr("directions")
    else:
        dirs = [0] * n_in
    first = (states + xs)[0]
    batch = first.shape[0]
    n = xs[0].shape[1] if xs else 0
    for d, what in ((batch, f"the batch of '{first.name}'"), (n, "the scan length")):
        if isinstance(d, Sym):
            raise cx.fail(f"{what} is the symbolic {d}: a Scan before opset 9 is unrolled over its batch and its "
                          f"length at compile time; fix them with shapes=")
    if lens is not None:
        lv = np.asarray(cx.const_of(lens, "sequence_lens")).reshape(-1)
        if np.any(lv != n):
            raise cx.unsupported("sequence_lens shorter than the scan inputs")
    n_out = len(body.output) - n_state
    results: list[list] = [[] for _ in range(n_state + n_out)]
    for b in range(batch):
        st = [cx.op("gather", [s, cx.scalar(b, "int64")], axis=0) for s in states]
        seq = [cx.op("gather", [x, cx.scalar(b, "int64")], axis=0) for x in xs]
        per_step: list[list] = [[] for _ in range(n_out)]
        for t in range(n):
            slices = [cx.op("gather", [x, cx.scalar(n - 1 - t if d else t, "int64")], axis=0)
                      for x, d in zip(seq, dirs)]
            outs = cx.inline_graph("body", st + slices, tag=f"{b}_{t}")
            st = list(outs[:n_state])
            for j in range(n_out):
                per_step[j].append(outs[n_state + j])
        for j in range(n_state):
            results[j].append(st[j])
        for j in range(n_out):
            results[n_state + j].append(stack(cx, per_step[j], 0, body.output[n_state + j]))
    return [stack(cx, r, 0) for r in results]

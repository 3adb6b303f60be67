"""ONNX control flow with a trip count known at compile time: Loop and Scan, unrolled.

Every iteration inlines a copy of the body, bound to the values of that iteration, so the core
graph stays a plain dataflow graph.  A Loop's trip count and condition, and a Scan's sequence
length, must be known at compile time (constants, or values that fold); a condition computed
from graph inputs raises :class:`~ember.frontend.onnx.OperandNotConstantError` like any other
compile-time operand.  (``If`` with a constant condition lives in ``tensor.py``.)
"""

from __future__ import annotations

import numpy as np

from ... import limits
from ...graph.types import np_dtype
from ..onnx import onnx_dtype
from . import translates
from .tensor import norm_axis, reshape, static_shape

def stack(cx, values, axis: int, elem_type=None):
    """``values`` (all of one shape) stacked along a new axis ``axis``.  With no values the
    element shape comes from ``elem_type`` (the body's declared output type)."""
    if not values:
        shape, dtype = _declared(cx, elem_type)
        out = list(shape)
        out.insert(axis, 0)
        return cx.const(np.zeros(out, dtype=np_dtype(dtype)), dtype)
    dims = static_shape(cx, values[0], "scan output")
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
    trip = None if m is None else int(_scalar(cx, m, "trip count M"))
    keep_going = True if cond is None else bool(_scalar(cx, cond, "condition"))
    if trip is None and cond is None:
        raise cx.unsupported("no trip count and no condition (an infinite loop)")
    scans: list[list] = [[] for _ in range(n_scan)]
    k = 0
    while keep_going and (trip is None or k < trip):
        limits.check_count("loop_iterations", k + 1, "the number of iterations unrolled",
                           node=cx.name, op=cx.op_type)
        it = cx.scalar(k, "int64")
        c = cx.const(np.array(True))
        outs = cx.inline_graph("body", [it, c] + carried, tag=f"{k}")
        keep_going = bool(_scalar(cx, outs[0], "the condition the body computes"))
        carried = list(outs[1:1 + n_carried])
        for j in range(n_scan):
            scans[j].append(outs[1 + n_carried + j])
        k += 1
    finals = [stack(cx, s, 0, body.output[1 + n_carried + j]) for j, s in enumerate(scans)]
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
    lengths = {static_shape(cx, x, "scan input")[a] for a, x in zip(in_axes, xs)}
    if len(lengths) != 1:
        raise cx.fail(f"scan inputs have different sequence lengths {sorted(lengths)}")
    (n,) = lengths
    limits.check_count("loop_iterations", n, "the number of iterations unrolled", node=cx.name, op=cx.op_type)
    per_step: list[list] = [[] for _ in range(n_out)]
    n_state = len(states)
    for t in range(n):
        slices = [cx.op("gather", [x, cx.scalar(n - 1 - t if d else t, "int64")], axis=a)
                  for x, a, d in zip(xs, in_axes, in_dirs)]
        outs = cx.inline_graph("body", list(states) + slices, tag=f"{tag}{t}")
        states = list(outs[:n_state])
        for j in range(n_out):
            per_step[j].append(outs[n_state + j])
    finals = []
    for j in range(n_out):
        vals = per_step[j][::-1] if out_dirs[j] else per_step[j]
        vi = body.output[n_state + j]
        rank = (vals[0].type.rank if vals else len(_declared(cx, vi)[0])) + 1
        finals.append(stack(cx, vals, norm_axis(cx, out_axes[j], rank), vi))
    return states + finals


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
    batch = static_shape(cx, (states + xs)[0])[0]
    n = static_shape(cx, xs[0], "scan input")[1] if xs else 0
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

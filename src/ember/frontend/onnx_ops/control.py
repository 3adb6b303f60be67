"""ONNX control flow: If, Loop and Scan.

* ``If`` with a condition known at compile time inlines the taken branch.  With a condition
  computed at run time it becomes the core ``if`` region op (``ember.ops.control``): both
  branches are translated into graphs of their own, the outer values they read becoming
  operands; their outputs must have the same types (a branch whose output shape differs from the
  other's is refused by name); sequences and optionals among them are laid out as tensors.
* ``Loop`` and ``Scan`` with a trip count known at compile time (a constant or a symbolic size
  with a bound, and a condition that folds) of at most ``MAX_UNROLL`` iterations are unrolled:
  every iteration inlines a copy of the body, bound to the values of that iteration.  A Loop
  whose trip count or condition only the run decides, or whose count is larger, becomes the core
  ``loop`` region op, run by the artifact.  Its carried values must keep their types.  Scan
  outputs need a length known before the loop runs: the run-time loop takes them when nothing
  in the body can stop it (the body passes the condition on, or gives a constant true one); the
  length is then the trip count where that is a dimension (a constant or a symbolic size) and
  the condition absent or constant true, else the count the run decides (max(M, 0), or 0 when
  the condition is false on entry) bound as a data symbol.  Where the body may stop the loop,
  that count is the rows the loop may write, and the iterations it ran (a ``counted`` loop's
  last output) are bound after it and cut the rows.  Without a trip count they are refused.
  A Loop whose count is a symbolic size is unrolled to its bound only where the run-time form
  does not take it.  A Scan longer than ``MAX_UNROLL`` or over a symbolic length without a bound
  runs as a ``loop`` too, its body wrapped in one that slices the scan inputs.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ... import limits
from ...errors import InvalidModelError, LimitError, UnsupportedOpError
from ...graph.ir import Value, constant
from ...graph.types import TensorType, np_dtype
from ...symbolic import Sym, dim_range
from ..onnx import OperandNotConstantError, OptionalValue, SequenceValue, onnx_dtype
from . import translates
from .data_dims import bind, iota, scalar_of
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


#: Loops of at most this many iterations (known at compile time) are unrolled; longer ones run
#: as a loop of the artifact.
MAX_UNROLL = 16


def body_output(cx, tr, v, k: int):
    """Output ``k`` of a body being translated as a graph of its own: a tensor of that graph (a
    shape value computed there is materialized; sequences and optionals are refused)."""
    if isinstance(v, (SequenceValue, OptionalValue)) or v is None:
        raise cx.unsupported(f"a body output {k} that is a sequence or an optional, with control flow decided "
                             f"at run time")
    if v.uid in tr.symvals:
        v = tr.materialize(v, cx)
    return v


def _const_or_none(cx, v, what):
    """The value of ``v`` when it is known at compile time, else None."""
    if v is None or cx.is_symbolic(v):
        return None
    try:
        return _scalar(cx, v, what)
    except OperandNotConstantError:
        return None


def _run_time(cx, v):
    """``v`` as a tensor of the graph (a symbolic shape value materialized)."""
    return cx._tr.materialize(v, cx) if cx.is_symbolic(v) else v


def _with_inputs(g, own, every):
    """Branch graph ``g`` (inputs: one per value of ``own``) taking one input per value of
    ``every`` instead, in that order (those it does not read unused)."""
    names = {v.name for v in g.values()}
    inputs = []
    for v in every:
        if v in own:
            inputs.append(g.inputs[own.index(v)])
            continue
        name, k = v.name, 0
        while name in names:
            k += 1
            name = f"{v.name}_{k}"
        names.add(name)
        inputs.append(Value(name, v.type))
    g.inputs = inputs
    return g


@translates("If")
def if_(cx):
    cond_v = cx.input(0)
    cond = _const_or_none(cx, cond_v, "cond")
    for attr in ("then_branch", "else_branch"):
        n = len(cx.graph_attr(attr).output)
        if n != cx.num_outputs:
            raise cx.fail(f"{attr} has {n} outputs, the node {cx.num_outputs}")
    if cond is not None:
        taken = "then_branch" if bool(cond) else "else_branch"
        other = "else_branch" if taken == "then_branch" else "then_branch"
        # the branch not taken is not translated, but it must be a branch of this node all the same
        cx._tr.check_support(list(cx.graph_attr(other).node))
        return cx.inline_graph(taken)
    if cond_v.dtype != "bool" or not cond_v.type.is_static or cond_v.type.size != 1:
        raise cx.fail(f"cond must be one bool value, got {cond_v.type}")
    try:
        return _run_time_if(cx, cond_v)
    except (UnsupportedOpError, InvalidModelError):
        same = _size_equality(cx, cond_v)
        if same is None:
            raise
    # branches that a run-time if cannot hold (outputs of other ranks: x.squeeze(-1) if
    # x.shape[-1] == 1 else x), on a condition that the sizes decide: the branch of the sizes
    # being equal, which the run checks
    (a, b), holds = same
    cx.require(a - b, "==", f"{a} == {b}, for the branch its condition then takes (the other branch gives "
                            f"outputs of other shapes, which a condition known at run time cannot choose)")
    return cx.inline_graph("then_branch" if holds else "else_branch")


def _size_equality(cx, v):
    """((a, b), cond) when ``v`` is ``a == b`` (cond True) or its negation (False) for two
    dimensions computed from the input sizes (a comparison of shape values), else None."""
    tr = cx._tr
    dims_of = {out.uid: tr.symvals[uid] for uid, out in tr.materialized.items()}
    node, holds = v.producer, True
    while node is not None and node.op in ("logical_not", "reshape", "cast") and node.inputs[0].dtype == "bool":
        holds ^= node.op == "logical_not"
        node = node.inputs[0].producer
    if node is None or node.op != "equal":
        return None
    sides = []
    for u in node.inputs:
        arr = dims_of.get(u.uid, u.const if u.is_const else None)
        if arr is None or np.size(arr) != 1:
            return None
        d = np.asarray(arr).reshape(-1)[0]
        sides.append(d if isinstance(d, Sym) else int(d))
    return (sides[0], sides[1]), holds


def _run_time_if(cx, cond_v):
    """The If as the core ``if`` region op, both branches compiled.  Branch outputs that are
    sequences or optionals are laid out as tensors (``_flat``): a sequence as its items (the
    branches must give the same number), an optional as its presence flag and its value (zeros
    in a branch that leaves it empty), so the node's optional outputs are decided at run time."""
    then_kinds: list = []
    other_kinds: list = []
    with _or_constant(cx, [cond_v], "cond"):
        then, then_caps = cx.region_graph("then_branch", branch=True, outputs=_flat(cx, then_kinds))
        other, other_caps = cx.region_graph("else_branch", branch=True, outputs=_flat(cx, other_kinds))
        kinds = []
        t_outs, o_outs = iter(then.outputs), iter(other.outputs)
        then_flat, other_flat = [], []
        for k, (a, b) in enumerate(zip(then_kinds, other_kinds)):
            kind, ta, tb = _merge(cx, k, a, b, t_outs, o_outs)
            kinds.append(kind)
            then_flat += ta
            other_flat += tb
        then.outputs, other.outputs = then_flat, other_flat
        for k, (a, b) in enumerate(zip(then.outputs, other.outputs)):
            if a.dtype != b.dtype:
                raise cx.fail(f"output {k} is {a.type} in then_branch and {b.type} in else_branch")
            if a.type != b.type:
                raise cx.unsupported(f"branches whose output {k} has different shapes ({a.type} and {b.type}) "
                                     f"with a condition known only at run time")
    caps = list(dict.fromkeys(then_caps + other_caps))
    then = _with_inputs(then, then_caps, caps)
    other = _with_inputs(other, other_caps, caps)
    if not then.outputs:
        return [_unflat(kind, iter(())) for kind in kinds]     # (sequences of no tensors)
    outs = iter(cx.b.op_multi("if", [_run_time(cx, cond_v)] + caps, name=cx.name, then_branch=then,
                              else_branch=other))
    return [_unflat(kind, outs) for kind in kinds]


def _flat(cx, kinds: list):
    """``outputs`` for ``region_graph``: a branch output as tensors; its structure appended to
    ``kinds``: ("tensor",), ("sequence", dtype, length) or ("optional", inner structure or None)."""
    tr = cx._tr

    def lay_out(k, v):
        kind, tensors = _flat_one(cx, tr, k, v)
        kinds.append(kind)
        return tensors

    return lay_out


def _flat_one(cx, tr, k, v):
    if isinstance(v, SequenceValue):
        return ("sequence", v.dtype, len(v.items)), [body_output(cx, tr, x, k) for x in v.items]
    if isinstance(v, OptionalValue):
        flag = v.present if v.present is not None else constant(np.array(v.value is not None))
        if v.value is None:
            return ("optional", None), [flag]
        inner, tensors = _flat_one(cx, tr, k, v.value)
        return ("optional", inner), [flag] + tensors
    return ("tensor",), [body_output(cx, tr, v, k)]


def _count(kind) -> int:
    """How many tensors a structure of ``_flat`` lays out."""
    if kind[0] == "sequence":
        return kind[2]
    if kind[0] == "optional":
        return 1 + (0 if kind[1] is None else _count(kind[1]))
    return 1


def _merge(cx, k, a, b, t_outs, o_outs):
    """The structure both branches give output ``k`` (``a`` in then_branch, ``b`` in else_branch)
    and their tensors for it (taken from ``t_outs``, ``o_outs``): an optional that one branch
    leaves empty gets zeros of the other's value types there."""
    if a[0] != b[0] or (a[0] == "sequence" and a[1:] != b[1:]):
        raise cx.unsupported(f"branches whose output {k} differs in structure ({_kind_str(a)} and {_kind_str(b)}) "
                             f"with a condition known only at run time")
    if a[0] != "optional":
        n = _count(a)
        return a, [next(t_outs) for _ in range(n)], [next(o_outs) for _ in range(n)]
    ta, tb = [next(t_outs)], [next(o_outs)]
    if a[1] is None and b[1] is None:
        return a, ta, tb
    if a[1] is not None and b[1] is not None:
        inner, ia, ib = _merge(cx, k, a[1], b[1], t_outs, o_outs)
        return ("optional", inner), ta + ia, tb + ib
    inner = a[1] if a[1] is not None else b[1]
    given = [next(t_outs if a[1] is not None else o_outs) for _ in range(_count(inner))]
    if any(not v.type.is_static for v in given):
        raise cx.unsupported(f"an optional output {k} that one branch leaves empty, of a value whose shape is "
                             f"symbolic")
    zeros = [constant(np.zeros(tuple(v.shape), np_dtype(v.dtype)), dtype=v.dtype) for v in given]
    return ("optional", inner), ta + (given if a[1] is not None else zeros), tb + (zeros if a[1] is not None
                                                                                 else given)


def _kind_str(kind) -> str:
    if kind[0] == "sequence":
        return f"a sequence of {kind[2]} {kind[1]} tensor(s)"
    if kind[0] == "optional":
        return "an optional" + ("" if kind[1] is None else f" of {_kind_str(kind[1])}")
    return "a tensor"


def _unflat(kind, outs):
    """The value of structure ``kind`` from the node's outputs ``outs`` (an iterator)."""
    if kind[0] == "sequence":
        return SequenceValue([next(outs) for _ in range(kind[2])], kind[1])
    if kind[0] == "optional":
        flag = next(outs)
        return OptionalValue(None if kind[1] is None else _unflat(kind[1], outs), present=flag)
    return next(outs)


@translates("Loop")
def loop(cx):
    m = cx.input(0, required=False)
    cond = cx.input(1, required=False)
    go = True if cond is None else _const_or_none(cx, cond, "condition")
    trip = steps = None
    if m is not None and cx.is_symbolic(m):
        dims = cx.dims_input(0, "trip count M")
        if len(dims) != 1:
            raise cx.fail(f"trip count M must hold one value, got {len(dims)}")
        trip = dims[0]
        # the bound looked at without making it a limit (a run-time loop does not need one)
        steps = dim_range(trip, dict(cx.bounds.items()))[1] if isinstance(trip, Sym) else int(trip)
    elif m is not None:
        trip = _const_or_none(cx, m, "trip count M")
        steps = None if trip is None else int(trip)
        if steps is not None and go is not None:
            # a count fixed in the model is its work: within the resource policy, run-time loop
            # or not (a count the run decides is not capped)
            limits.check_count("loop_iterations", steps, "the constant trip count", node=cx.name, op=cx.op_type)
    known = go is not None and (m is None or trip is not None)   # the unrolled form may apply
    if known and (m is None or (steps is not None and steps <= MAX_UNROLL)):
        tr = cx._tr
        n0, materialized = len(cx.b.nodes), dict(tr.materialized)
        try:
            return _unrolled_loop(cx)
        except (OperandNotConstantError, LimitError) as e:
            # the body's condition is only known at run time, or there are too many iterations
            del cx.b.nodes[n0:]
            tr.materialized = materialized
            try:
                return run_time_loop(cx)
            except UnsupportedOpError as refused:
                if isinstance(e, LimitError):
                    raise e from None       # what stops it is the limit on unrolling
                raise refused from e
    try:
        return run_time_loop(cx)
    except UnsupportedOpError:
        if not known or steps is None:
            raise
    return _unrolled_loop(cx)      # what the run-time loop does not take yet, as before


@contextlib.contextmanager
def _or_constant(cx, decisive, what: str):
    """Runs the translation of a region; where it refuses (a sequence in a body, an operand a
    body needs at compile time, ...), the error says that ``what`` (the values ``decisive``:
    the condition, the trip count) must be known at compile time, where the unrolled or inlined
    form would take it, naming the graph inputs they come from (the ONNX backend specializes
    those)."""
    try:
        yield
    except (UnsupportedOpError, OperandNotConstantError) as e:
        if isinstance(e, OperandNotConstantError) and e.inputs:
            raise       # a body needs other graph inputs at compile time: those are what to fix
        feeding = list(dict.fromkeys(x for v in decisive if v is not None and not cx.is_symbolic(v)
                                     for x in cx._tr.inputs_feeding(v)))
        if not feeding:
            raise
        reason = str(e).split("] ", 1)[-1]
        raise OperandNotConstantError(
            f"{what} must be a constant here (computed from graph input(s) {', '.join(map(repr, feeding))}): "
            f"the run-time form does not take this {cx.op_type}: {reason}", feeding, node=cx.name,
            op=cx.op_type) from e


def run_time_loop(cx):
    """The Loop as the core ``loop`` op, run by the artifact."""
    m = cx.input(0, required=False)
    cond = cx.input(1, required=False)
    with _or_constant(cx, [m, cond], "the trip count M and the condition"):
        return _run_time_loop(cx, m, cond)


def _run_time_loop(cx, m, cond):
    body = cx.graph_attr("body")
    for i in range(2, len(cx.node.input)):
        if not isinstance(cx.input(i), Value):
            raise cx.unsupported("a loop-carried sequence or optional with a trip count or condition known only "
                                 "at run time")
    carried = [_run_time(cx, cx.input(i)) for i in range(2, len(cx.node.input))]
    n = len(carried)
    if len(body.input) != 2 + n or len(body.output) < 1 + n:
        raise cx.fail(f"the body has {len(body.input)} inputs and {len(body.output)} outputs for "
                      f"{n} loop-carried values")
    if m is None and cond is None:
        raise cx.unsupported("no trip count and no condition (an infinite loop)")
    for v, what, dtype in ((m, "trip count M", "int64"), (cond, "condition", "bool")):
        if v is not None and (v.dtype != dtype or not v.type.is_static or v.type.size != 1):
            raise cx.fail(f"{what} must be one {dtype} value, got {v.type}")
    m_v = cx.scalar(np.iinfo(np.int64).max, "int64") if m is None else _run_time(cx, m)
    cond_v = cx.const(np.array(True)) if cond is None else _run_time(cx, cond)
    formals = [(body.input[0].name or "iteration", TensorType((), "int64")),
               (body.input[1].name or "cond", TensorType((), "bool"))]
    formals += [(vi.name or f"carried{k}", v.type) for k, (vi, v) in enumerate(zip(body.input[2:], carried))]
    g, caps = cx.region_graph("body", formals)
    outs = g.outputs
    c_out = outs[0]
    if c_out.dtype != "bool" or not c_out.type.is_static or c_out.type.size != 1:
        raise cx.fail(f"the condition the body gives must be one bool value, got {c_out.type}")
    for k, (v, o) in enumerate(zip(carried, outs[1:1 + n])):
        if v.dtype != o.dtype:
            raise cx.fail(f"loop-carried value {k} is {v.type}, the body gives {o.type}")
        if v.type != o.type:
            raise cx.unsupported(f"a loop-carried value whose shape changes ({v.type} -> {o.type}) with a trip "
                                 f"count or condition known only at run time")
    length, counted = None, False
    if len(outs) > 1 + n:
        trip = None if m is None else (cx.dims_input(0, "trip count M") if cx.is_symbolic(m)
                                       else [_const_or_none(cx, m, "trip count M")])
        # the body never stops the loop: it passes the condition on, or gives a constant true
        passes_on = c_out is g.inputs[1] or (c_out.is_const and bool(c_out.const.reshape(())))
        always = (cond is None or _const_or_none(cx, cond, "condition") is True) and passes_on
        if trip is not None and trip[0] is not None and len(trip) == 1 and always:
            length = trip[0] if isinstance(trip[0], Sym) else max(int(trip[0]), 0)
        elif m is not None:
            # the loop runs max(M, 0) times where the condition holds on entry, else never (at
            # most, where the body may stop it): that count, computed in the graph, is bound as
            # a data symbol (the scan outputs' rows) and is the trip count the loop reads, so the
            # binding runs first
            count = cx.op("maximum", [scalar_of(cx, m_v), cx.scalar(0, "int64")])
            if cond is not None:
                count = cx.op("where", [scalar_of(cx, cond_v), count, cx.scalar(0, "int64")])
            m_v, (length,) = bind(cx, count, "iterations")
            counted = not passes_on
        else:
            raise cx.unsupported("scan outputs of a loop without a trip count whose body may stop it (their "
                                 "length has no bound before the loop runs)")
    if not counted:
        return cx.b.op_multi("loop", [m_v, cond_v] + carried + caps, name=cx.name, body=g, num_carried=n,
                             length=length)
    # stopped by its body: the iterations run, bound after the loop, are the scan outputs' rows
    outs = cx.b.op_multi("loop", [m_v, cond_v] + carried + caps, name=cx.name, body=g, num_carried=n,
                         length=length, counted=True)
    ran, (rows,) = bind(cx, outs[-1], "iterations_run", limits=[length] if isinstance(length, int) else None)
    at = iota(cx, ran, rows)
    return list(outs[:n]) + [cx.op("gather", [y, at], axis=0) for y in outs[n:-1]]


def _unrolled_loop(cx):
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
    steps = dim_range(length, dict(cx.bounds.items()))[1] if isinstance(length, Sym) else length
    if steps is None or steps > MAX_UNROLL:
        # long, or over a symbolic length without a bound: a loop of the artifact
        try:
            return _run_time_scan(cx, body, states, xs, n_out, in_axes, in_dirs, out_axes, out_dirs, length)
        except UnsupportedOpError:
            if steps is None:
                raise
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


def _run_time_scan(cx, body, states, xs, n_out, in_axes, in_dirs, out_axes, out_dirs, length):
    """The Scan as the core ``loop`` op over ``length`` iterations: the body (a graph of its
    own) wrapped in one that takes the iteration's slice of every scan input."""
    from ...graph.builder import GraphBuilder

    n_state = len(states)
    slice_types = [TensorType(tuple(x.shape[:a]) + tuple(x.shape[a + 1:]), x.dtype) for x, a in zip(xs, in_axes)]
    formals = [(vi.name or f"in{k}", t) for k, (vi, t) in enumerate(zip(body.input, [v.type for v in states]
                                                                        + slice_types))]
    if len(formals) != len(body.input):
        raise cx.fail(f"the body takes {len(body.input)} inputs for {n_state} states and {len(xs)} scan inputs")
    g, caps = cx.region_graph("body", formals)
    if len(g.outputs) != n_state + n_out:
        raise cx.fail(f"the body gives {len(g.outputs)} outputs for {n_state} states and {n_out} scan outputs")
    for k, (v, o) in enumerate(zip(states, g.outputs)):
        if v.type != o.type:
            raise cx.unsupported(f"a state that changes type ({v.type} -> {o.type}) in a scan run as a loop")
    size = _dim_tensor(cx, length)
    b = GraphBuilder(f"{cx.name}/scan")
    it = b.input("iteration", TensorType((), "int64"))
    go = b.input("cond", TensorType((), "bool"))
    st = [b.input(f"state{k}", v.type) for k, v in enumerate(states)]
    cap_in = [b.input(v.name, v.type) for v in caps]
    x_in = [b.input(f"scan_input{j}", x.type) for j, x in enumerate(xs)]
    n_in = b.input("length", size.type)
    one = b.const(np.array(1, np.int64), "one")
    back = b.op("sub", [b.op("sub", [n_in, one], name="last"), it], name="back") if any(in_dirs) else None
    slices = [b.op("gather", [x, back if d else it], name=f"slice{j}", axis=a)
              for j, (x, a, d) in enumerate(zip(x_in, in_axes, in_dirs))]
    inner = g.copy()
    vmap = dict(zip(inner.inputs, st + slices + cap_in))
    for v in inner.values():
        if v not in vmap:
            v.name = b.fresh(v.name)
    for node in inner.nodes:
        node.inputs = [vmap.get(v, v) for v in node.inputs]
        node.name = b.fresh(node.name, b._node_names)
        b.add_node(node)
    outs = [vmap.get(v, v) for v in inner.outputs]
    wrapper = b.finish([go] + outs)
    res = cx.b.op_multi("loop", [size, cx.const(np.array(True))] + list(states) + caps + list(xs) + [size],
                        name=cx.name, body=wrapper, num_carried=n_state, length=length)
    finals = list(res[:n_state])
    for j, (y, vi) in enumerate(zip(res[n_state:], body.output[n_state:])):
        rank = y.type.rank
        if out_dirs[j]:
            rows = cx.op("sub", [cx.op("sub", [size, cx.scalar(1, "int64")]),
                                 cx.op("arange", [], length=length, start=0, delta=1, dtype="int64")])
            y = cx.op("gather", [y, rows], axis=0)
        ax = norm_axis(cx, out_axes[j], rank)
        if ax:
            perm = list(range(1, rank))
            perm.insert(ax, 0)
            y = cx.op("transpose", [y], perm=tuple(perm))
        finals.append(y)
    return finals


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

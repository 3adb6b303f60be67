"""From a fused group of graph nodes to one optimized loop-IR kernel.

Each node's op supplies its tensor compute; the schedule comes from :mod:`ember.schedules` by
the target's kind and the anchor op (convolution, matmul, ...), or is the kind's default.  A
fallback to the default (the op's schedule does not fit this instance, or the kind has none for
a convolution or matmul) is recorded in the kernel's ``attrs["schedule_fallback"]`` (printed
in the dump) and said through the pipeline context's ``progress``.  The lowered kernel goes
through the loop-IR passes of the pipeline (:mod:`ember.driver.pipeline`).

A kernel given recorded schedule steps (tuning records, :mod:`ember.driver.records`) is
scheduled by replaying them on its tensor expression (:func:`ember.te.replay.replay`) instead of
running its op's schedule; steps that do not apply fall back to the op's schedule (with the
kernel's knobs), said through ``progress`` and in ``attrs["schedule_replay"]``.  Every kernel
keeps the steps its schedule applied in ``attrs["schedule_steps"]``.

Symbolic dimensions become size variables: the kernel takes each symbol it uses as an int64
argument after its buffers (``PrimFunc.attrs["size_vars"]``), and its index analysis knows the
symbols' upper bounds (``bounds``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from ..errors import CodegenError, EmberError, ShapeError
from ..graph.ir import Value
from ..graph.stats import node_flops
from ..graph.types import np_dtype
from ..ops import Pattern, get_op
from ..schedules import default as default_for, lookup
from ..passes.fusion import Group
from ..te import placeholder, walk
from ..te.lower import lower
from ..timings import timed
from ..te.replay import replay
from ..te.schedule import create_schedule
from ..symbolic import SymbolicError
from ..tir.analysis import size_bounds, size_vars_of
from ..tir.expr import IndexCheck
from ..tir.stmt import PrimFunc
from .pipeline import Context, run_loop


def describe_nodes(group: Group) -> str:
    names = ", ".join(f"{n.op} '{n.name}'" for n in group.nodes)
    return f"{group.name}: fuses {names}"


def _name_checks(outs, known: set, node) -> None:
    """Name ``node`` in the run-time checks of the tensors its compute made (those that are
    not ``known``, the group's inputs and earlier nodes' results), so a failure names it."""
    todo = [t for t in outs if t.uid not in known]
    seen = set(known)
    while todo:
        t = todo.pop()
        if t.uid in seen or t.body is None:
            continue
        seen.add(t.uid)
        for e in walk(t.body):
            if isinstance(e, IndexCheck) and not e.node:
                e.node, e.op = node.name, node.op
        todo += [x for x in t.inputs() if x.uid not in seen]


def group_kernel(group: Group, target, param_names: dict[Value, str] | None = None,
                 bounds: dict[str, int] | None = None, hints: dict[str, int] | None = None,
                 ctx: Context | None = None, steps: list | None = None) -> PrimFunc:
    """Lower ``group`` to a kernel whose parameters are the group's inputs, then its output,
    then the size variables of the symbols it uses (their upper limits in ``bounds``; the sizes
    its schedule plans for in ``hints``).  ``ctx``: the pipeline's context (by default, the
    target's at opt level 3).  ``steps``: recorded schedule steps to replay instead of the op's
    schedule (see the module's docstring)."""
    with size_bounds(bounds or {}, hints):
        return _group_kernel(group, target, param_names, ctx or Context(target), steps)


def _group_kernel(group: Group, target, param_names: dict[Value, str] | None, ctx: Context,
                  steps: list | None = None) -> PrimFunc:
    params = {}
    for k, v in enumerate(group.inputs):
        params[v] = placeholder(v.shape, v.dtype, (param_names or {}).get(v, f"in{k}"))
    env = dict(params)
    # the node whose op schedules the kernel: the anchor, or the only node of a lone op (pools)
    lead = group.anchor or (group.nodes[0] if len(group.nodes) == 1 else None)
    anchor_tensor = None
    for node in group.nodes:
        op = get_op(node.op)
        try:
            out = op.compute(node.attrs, *[env[v] for v in node.inputs])
        except NotImplementedError as e:
            raise CodegenError(str(e), node=node.name, op=node.op) from None
        except SymbolicError as e:
            raise CodegenError(f"cannot compute this op with symbolic shapes "
                               f"({', '.join(str(v.type) for v in node.inputs)}): {e}",
                               node=node.name, op=node.op) from None
        outs = out if isinstance(out, (list, tuple)) else [out]
        _name_checks(outs, set(t.uid for t in env.values()), node)
        for v, t in zip(node.outputs, outs):
            env[v] = t
        if node is lead:
            anchor_tensor = outs[0]
    out_t = env[group.output]
    if out_t.is_placeholder:
        raise CodegenError(f"kernel {group.name} computes nothing")
    s = create_schedule(out_t)
    own = lookup(target, lead.op) if lead is not None and anchor_tensor is not None else None
    inputs = [params[v] for v in group.inputs]
    fallback = replay_note = ""
    f = None
    if steps is not None:
        try:
            f = lower(replay(s, steps), group.name, inputs + [s.output])
        except CodegenError as e:
            replay_note = f"the recorded schedule steps do not replay ({str(e).split('] ', 1)[-1]}): its knobs instead"
            s = create_schedule(out_t)
    try:
        if f is None and own is not None:
            try:
                own(lead.attrs, s, anchor_tensor, target)
                f = lower(s, group.name, inputs + [s.output])
            except CodegenError as e:
                # the op's tuned schedule does not fit this instance: the default always does
                fallback = f"the {target.kind} schedule of {lead.op} does not fit: {str(e).split('] ', 1)[-1]}"
                s = create_schedule(out_t)
                default_for(target)(s, target)
                f = lower(s, group.name, inputs + [s.output])
        elif f is None:
            if lead is not None and get_op(lead.op).pattern == Pattern.OUT_ELEMWISE_FUSABLE:
                fallback = f"no {target.kind} schedule for {lead.op}"
            default_for(target)(s, target)
            f = lower(s, group.name, inputs + [s.output])
    except EmberError:
        raise
    except Exception as e:  # a bug in a schedule: name the kernel so it can be found
        raise CodegenError(f"lowering kernel {group.name} failed: {type(e).__name__}: {e}") from e
    f.comment = describe_nodes(group)
    f.attrs["schedule"] = s.describe()
    f.attrs["schedule_steps"] = [list(step) for step in s.steps]
    if steps is not None:
        f.attrs["schedule_replay"] = replay_note or "replayed from the recorded steps"
        if replay_note:
            ctx.say(f"kernel {f.name}: {replay_note}")
    if fallback:
        f.attrs["schedule_fallback"] = fallback
        ctx.fallbacks.append((f.name, fallback))
        ctx.say(f"kernel {f.name}: the default schedule ({fallback})")
    if target.family == "gpu":
        from ..tir.gpu import optimize as optimize_gpu

        f = optimize_gpu(f)
    else:
        f = run_loop(f, ctx)
    f.attrs["size_vars"] = sorted(size_vars_of(f), key=lambda v: v.name)
    return f


def group_signature(group: Group):
    """What the kernel of ``group`` depends on, as a hashable value (for one target and one
    model's symbols): every node's op and attributes, how the nodes are wired to each other and
    to the group's inputs, the types of every value, and which node leads; None when an
    attribute is of a kind this does not know (then the group is lowered on its own).  Two
    groups with the same signature lower to the same kernel but for names."""
    index = {v: ("in", k) for k, v in enumerate(group.inputs)}
    nodes = []
    try:
        for j, n in enumerate(group.nodes):
            ins = tuple(index.get(v) or ("?", v.name) for v in n.inputs)
            if any(i[0] == "?" for i in ins):
                return None
            for k, v in enumerate(n.outputs):
                index.setdefault(v, ("node", j, k))
            nodes.append((n.op, _freeze(n.attrs), ins, tuple(_type_key(v) for v in n.outputs)))
    except _Unhashable:
        return None
    lead = group.nodes.index(group.anchor) if group.anchor in group.nodes else -1
    return (tuple(nodes), tuple(_type_key(v) for v in group.inputs), index.get(group.output), lead)


@dataclass
class Workload:
    """What the tuner knows of one distinct kernel of a model: ``key`` (:func:`workload_key`),
    the name and description of its first group, every group that runs it, the lead op, its
    output's elements (0 when symbolic) and the schedule knobs its lowering asked, with the
    values they had (the defaults, or what was set)."""

    key: str
    name: str
    comment: str
    op: str
    elements: int
    groups: list = field(default_factory=list)
    knobs: dict = field(default_factory=dict)
    #: the schedule steps its kernel was lowered with (``Schedule.steps``, as lists)
    steps: list = field(default_factory=list)
    #: per call, what any schedule of it must do (0 when a size is symbolic): its operations
    #: (``graph.stats.node_flops`` of its nodes) and the bytes it reads and writes at least, each
    #: input (weights too) and output once (:func:`kernel_cost`)
    flops: int = 0
    bytes: int = 0


def tuning_key(target) -> str:
    """What a tuning record's target is: :meth:`Target.key` without the knobs that hold for one
    kernel (a record sets those itself), with the model-wide ones kept."""
    from ..schedules.knobs import MODEL_KNOBS

    return replace(target, knobs=tuple(kv for kv in target.knobs if kv[0] in MODEL_KNOBS)).key()


def workload_key(group: Group, target_key: str, hints: dict | None) -> str | None:
    """The key of the kernel of ``group`` for tuning, whatever its knobs: a hash of its canonical
    content (:func:`group_signature`: ops, attributes, wiring, types), the target
    (:func:`tuning_key`) and the sizes the schedules plan for; None when the group has no
    signature."""
    sig = group_signature(group)
    if sig is None:
        return None
    text = repr((sig, target_key, sorted((hints or {}).items())))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def kernel_cost(group: Group) -> tuple[int, int]:
    """(operations, bytes) of one call of ``group``'s kernel whatever its schedule: the
    operations of its nodes (``graph.stats.node_flops``) and the bytes of the values it reads
    from outside (weights included) and writes, each once (the data of a gather or slice: at
    most what it picks); (0, 0) when a size is symbolic."""
    try:
        flops = sum(node_flops(n) for n in group.nodes)
    except ShapeError:
        return 0, 0

    def size(v) -> int | None:
        n = v.type.num_elements
        return n * np_dtype(v.dtype).itemsize if isinstance(n, int) else None

    nbytes = 0
    for v in [*group.inputs, *group.outputs]:
        b = size(v)
        if b is None:
            return 0, 0
        # the data a gather or slice picks from is read only where picked: count what they pick
        users = [n for n in group.nodes if any(i is v for i in n.inputs)]
        if users and all(n.op in PARTIAL_READS and n.inputs[0] is v for n in users):
            b = min(b, sum(size(n.outputs[0]) or 0 for n in users))
        nbytes += b
    return flops, nbytes


#: ops that read only part of their first input
PARTIAL_READS = frozenset({"gather", "slice"})


def new_workload(key: str, group: Group, f: PrimFunc) -> Workload:
    lead = group.anchor or group.nodes[0]
    n = group.output.type.num_elements
    flops, nbytes = kernel_cost(group)
    return Workload(key, f.name, describe_nodes(group), lead.op, n if isinstance(n, int) else 0,
                    steps=list(f.attrs.get("schedule_steps", ())), flops=flops, bytes=nbytes)


class _Unhashable(Exception):
    pass


def _type_key(v: Value):
    return (v.dtype, tuple(d if isinstance(d, int) else ("sym", str(d)) for d in v.shape))


def _freeze(x):
    import numpy as np

    from ..symbolic import Sym

    if x is None or isinstance(x, (bool, int, str, bytes)):
        return (type(x).__name__, x)
    if isinstance(x, float):
        return ("float", x.hex())
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(_freeze(y) for y in x))
    if isinstance(x, dict):
        return ("dict", tuple(sorted((str(k), _freeze(v)) for k, v in x.items())))
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, np.generic):
        return ("scalar", x.dtype.str, x.tobytes())
    if isinstance(x, Sym):
        return ("sym", str(x))
    raise _Unhashable(type(x).__name__)


def kernel_call(group: Group, target, where, gen, limits: dict, bounds: dict, sym_index: dict,
                hints: dict | None = None, ctx: Context | None = None,
                memo: dict | None = None, steps: list | None = None) -> tuple[PrimFunc, str, str]:
    """Lower ``group`` (``group_kernel``) and write it in C with ``gen``: returns the kernel, its C
    and the entry's line calling it, its buffers placed by ``where(value)`` (a C pointer) and
    its symbols read from ``syms`` (``sym_index``); the schedules plan for ``hints`` (the
    planning sizes, ``bounds`` when not given).  With ``memo`` (one per model and generator), a
    group with the signature of one lowered before (:func:`group_signature`: the layers of a
    transformer, the blocks of a ResNet) takes that group's kernel under its own names instead
    of being lowered again (its C is then "": the file of the kernel it shares holds it).
    ``steps``: recorded schedule steps to replay (:func:`group_kernel`)."""
    from ..codegen.c import CHECK_ARG, c_ident, checked_call, has_checks

    names = {v: c_ident(v.name) for v in group.inputs}
    sig = group_signature(group) if memo is not None else None
    hit = memo.get(sig) if sig is not None else None
    if hit is not None:
        f0, kc0 = hit
        kc = gen.alias(kc0, group.name, describe_nodes(group), [names[v] for v in group.inputs])
        f = PrimFunc(kc.name, f0.params, f0.body, kc.comment, dict(f0.attrs))
        args = [where(v) for v in group.inputs] + [where(group.output)]
        args += [f"syms[{sym_index[v.name]}]" for v in f.attrs.get("size_vars", ())]
        return f, "", f"{f.name}({', '.join(args)});"
    timings = ctx.timings if ctx is not None else None
    with timed(timings, "kernel lowering"):
        f = group_kernel(group, target, names, limits, bounds if hints is None else hints, ctx, steps)
    with size_bounds(limits, bounds), timed(timings, "C generation"):   # what it proves about indices uses the limits
        src = gen.kernel(f)
    if sig is not None and not gen.kernels[-1].sites:
        memo[sig] = (f, gen.kernels[-1])
    args = [where(v) for v in group.inputs] + [where(group.output)]
    args += [f"syms[{sym_index[v.name]}]" for v in f.attrs.get("size_vars", ())]
    if has_checks(f.body):
        return f, src, checked_call(f"{f.name}({', '.join(args + ['&' + CHECK_ARG])});", gen.kernels[-1].site_base)
    return f, src, f"{f.name}({', '.join(args)});"

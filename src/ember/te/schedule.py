"""Schedules: how the loops of a tensor-expression program run.

A schedule is data.  Each compute tensor has a :class:`Stage` holding its loop variables, the
relations that made them (split, fuse), their order and their kinds (serial, parallel,
vectorized, unrolled), and where the stage is computed:

* **inline**: substituted into its consumers (the default for non-reductions);
* **attached** (``compute_at``): computed into a small local buffer inside a loop of the root
  stage, just before the root's inner loops read it (the default for reductions).  This is how a
  convolution's accumulators stay in registers while its epilogue (bias, activation, residual
  add) runs in the same kernel.

Every primitive applied is also recorded in ``Schedule.steps`` as ``(stage, primitive,
*arguments)``, the stage by its label (:attr:`Stage.label`: the tensor's name, unique within the
schedule) and loops by name, so a schedule can be printed, stored by a tuner and replayed on the
same tensor expression (:mod:`ember.te.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CodegenError
from ..tir.expr import INDEX, binop
from ..tir.analysis import simplify_index
from .tensor import ArgReduce, IterVar, Reduce, Tensor, TensorLoad, compute


@dataclass(eq=False)
class Split:
    parent: IterVar
    outer: IterVar
    inner: IterVar
    factor: int


@dataclass(eq=False)
class Fuse:
    outer: IterVar
    inner: IterVar
    fused: IterVar


def ceil_div(extent, factor: int):
    """ceil(extent / factor) of a non-negative extent (an int or an int64 expression)."""
    if isinstance(extent, int):
        return -(-extent // factor)
    return simplify_index(binop("div", binop("add", extent, factor - 1), factor))


class Stage:
    """The loop structure of one compute tensor."""

    def __init__(self, schedule: "Schedule", tensor: Tensor):
        self.schedule = schedule
        self.tensor = tensor
        body = tensor.body
        if isinstance(body, Reduce):
            self.reduce_axes = list(body.axes)
        elif isinstance(body, ArgReduce):
            self.reduce_axes = [body.axis]
        else:
            self.reduce_axes = []
        self.axes = list(tensor.axes)
        self.leaves: list[IterVar] = self.axes + self.reduce_axes
        self.relations: list = []
        self.kinds: dict[IterVar, str] = {}
        self.inlined = False
        self.attach_at: IterVar | None = None   # a leaf of the root stage, or None (top level)
        self.attached = False
        self.default_attach = False
        #: the stage's name in ``Schedule.steps`` (set by the schedule: unique within it)
        self.label = tensor.name

    @property
    def is_reduction(self) -> bool:
        return bool(self.reduce_axes)

    def _log(self, step: str, *args) -> None:
        self.schedule.steps.append((self.label, step) + tuple(args))

    def _check_leaf(self, v: IterVar) -> int:
        for k, leaf in enumerate(self.leaves):
            if leaf is v:
                return k
        raise CodegenError(f"{v.name} is not a loop of stage {self.tensor.name}")

    def split(self, v: IterVar, factor: int) -> tuple[IterVar, IterVar]:
        k = self._check_leaf(v)
        factor = max(1, int(factor))
        if isinstance(v.extent, int):
            outer = IterVar(f"{v.name}o", INDEX, extent=-(-v.extent // factor), kind=v.kind)
            inner = IterVar(f"{v.name}i", INDEX, extent=min(factor, v.extent) if v.extent else factor, kind=v.kind)
        else:   # a symbolic extent: whole tiles and a tail (see te.lower.loop_nest)
            outer = IterVar(f"{v.name}o", INDEX, extent=ceil_div(v.extent, factor), kind=v.kind)
            inner = IterVar(f"{v.name}i", INDEX, extent=factor, kind=v.kind)
        self.relations.append(Split(v, outer, inner, factor))
        self.leaves[k:k + 1] = [outer, inner]
        self._log("split", v.name, factor)
        return outer, inner

    def fuse(self, a: IterVar, b: IterVar) -> IterVar:
        ka, kb = self._check_leaf(a), self._check_leaf(b)
        if kb != ka + 1:
            raise CodegenError(f"can only fuse adjacent loops, got {a.name} and {b.name}")
        if a.kind != b.kind:
            raise CodegenError(f"cannot fuse the {a.kind} loop {a.name} with the {b.kind} loop {b.name}")
        fused = IterVar(f"{a.name}_{b.name}", INDEX, extent=a.extent * b.extent, kind=a.kind)
        self.relations.append(Fuse(a, b, fused))
        self.leaves[ka:kb + 1] = [fused]
        self._log("fuse", a.name, b.name)
        return fused

    def reorder(self, *vs: IterVar) -> None:
        pos = sorted(self._check_leaf(v) for v in vs)
        for p, v in zip(pos, vs):
            self.leaves[p] = v
        self._log("reorder", *[v.name for v in vs])

    def _annotate(self, v: IterVar, kind: str) -> None:
        self._check_leaf(v)
        self.kinds[v] = kind
        self._log(kind, v.name)

    def parallel(self, v: IterVar) -> None:
        self._annotate(v, "parallel")

    def vectorize(self, v: IterVar) -> None:
        self._annotate(v, "vectorized")

    def unroll(self, v: IterVar) -> None:
        self._annotate(v, "unrolled")

    def bind(self, v: IterVar, axis: str) -> None:
        """Run loop ``v`` as the blocks or threads of a GPU launch along ``axis``
        (``"blockIdx.x"``, ``"threadIdx.y"``, ...; see :mod:`ember.tir.gpu`)."""
        from ..tir.stmt import THREAD_KINDS

        if axis not in THREAD_KINDS:
            raise CodegenError(f"cannot bind {v.name} to {axis!r}; the GPU axes are {', '.join(THREAD_KINDS)}")
        self._annotate(v, axis)

    def compute_inline(self) -> None:
        if self.is_reduction:
            raise CodegenError(f"reduction {self.tensor.name} cannot be inlined")
        self.inlined, self.attached = True, False
        self._log("compute_inline")

    def compute_at(self, root: "Stage", v: IterVar | None) -> None:
        if root is not self.schedule.root:
            raise CodegenError("stages can only be attached to the root stage")
        if v is not None:
            root._check_leaf(v)
        self.attach_at, self.attached, self.inlined = v, True, False
        self.default_attach = False
        self._log("compute_at", v.name if v is not None else "<top>")


class Schedule:
    """The stages of every compute tensor that ``output`` depends on, and the steps applied."""

    def __init__(self, output: Tensor):
        self.steps: list[tuple] = []
        #: uneven splits get a bounds check instead of a tail copy of the loop (GPU schedules:
        #: a bound loop cannot be copied)
        self.guard_uneven = False
        if isinstance(output.body, (Reduce, ArgReduce)):
            # a reduction is never the root: an identity stage writes its result, so the
            # reduction itself is an attached stage like any other
            red = output
            output = compute(red.shape, lambda *i: red[i], name=red.name)
        self.output = output
        self.tensors = _topo(output)
        self.stages = {t.uid: Stage(self, t) for t in self.tensors if not t.is_placeholder}
        self.root = self.stages[output.uid]
        # labels: the tensor names, the root's first; a name taken already gets "#2", "#3", ...
        # (a reduction's root is an identity stage of the same name, labelled before it)
        taken: dict[str, int] = {}
        for st in [self.root] + [st for st in self.stages.values() if st is not self.root]:
            n = taken[st.tensor.name] = taken.get(st.tensor.name, 0) + 1
            if n > 1:
                st.label = f"{st.tensor.name}#{n}"
        for t in self.tensors:
            st = self.stages.get(t.uid)
            if st is None or st is self.root:
                continue
            if st.is_reduction:
                st.attached = True          # attach position chosen at lowering unless set
                st.attach_at = None
                st.default_attach = True
            else:
                st.inlined = True
        self.steps.clear()

    def __getitem__(self, t: Tensor) -> Stage:
        if isinstance(t, Stage):
            return t
        try:
            return self.stages[t.uid]
        except KeyError:
            raise CodegenError(f"{t.name} is not a compute stage of this schedule") from None

    def stage(self, label: str) -> Stage:
        """The stage labelled ``label`` (:attr:`Stage.label`)."""
        for st in self.stages.values():
            if st.label == label:
                return st
        raise CodegenError(f"the schedule has no stage {label!r}; its stages: "
                           f"{', '.join(st.label for st in self.stages.values())}")

    def placeholders(self) -> list[Tensor]:
        return [t for t in self.tensors if t.is_placeholder]

    def describe(self) -> str:
        return "\n".join(f"{name}.{step}({', '.join(map(str, args))})" for name, step, *args in self.steps)


def create_schedule(output: Tensor) -> Schedule:
    return Schedule(output)


def _topo(output: Tensor) -> list[Tensor]:
    order: list[Tensor] = []
    seen: set[int] = set()
    stack = [(output, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if t.uid in seen:
            continue
        seen.add(t.uid)
        stack.append((t, True))
        for inp in reversed(t.inputs()):
            if inp.uid not in seen:
                stack.append((inp, False))
    return order


def loads_of(t: Tensor) -> list[TensorLoad]:
    from .tensor import walk

    return [e for e in walk(t.body) if isinstance(e, TensorLoad)] if t.body is not None else []

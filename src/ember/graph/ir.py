"""The graph IR: an SSA dataflow graph of core ops over typed tensors.

* A :class:`Value` is produced exactly once: by a :class:`Node`, as a graph input, or as a
  constant (a numpy array held in ``Value.const``).
* A :class:`Node` applies one core op (``ember.ops``) with attributes to input values.
* A :class:`Graph` lists its inputs, its nodes in topological order and its outputs, and the
  upper bounds of the symbols its shapes use (``bounds``; see ``ember.symbolic``).

Passes build new graphs rather than patching nodes in place where they can; the helpers here
(``users``, ``replace_all_uses``, ``topo_sort``) cover the cases where in-place is clearer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .types import TensorType, np_dtype

_ids = itertools.count()


@dataclass(eq=False)
class Value:
    """An SSA value: a tensor of a known type."""

    name: str
    type: TensorType
    producer: "Node | None" = None
    const: np.ndarray | None = None
    uid: int = field(default_factory=lambda: next(_ids))

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"

    __hash__ = object.__hash__


@dataclass(eq=False)
class Node:
    """One application of a core op."""

    op: str
    inputs: list[Value]
    outputs: list[Value]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def output(self) -> Value:
        """The single output of a one-output node."""
        assert len(self.outputs) == 1, f"{self.op} node {self.name!r} has {len(self.outputs)} outputs"
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"Node({self.op}, {self.name!r})"

    __hash__ = object.__hash__


def constant(array: Any, name: str | None = None, dtype: str | None = None, owned: bool = False) -> Value:
    """A new constant value holding a copy of ``array``, or ``array`` itself when nothing can
    change it (a read-only view of a ``bytes`` object: a model's raw tensor data) or when the
    caller hands it over (``owned``: a numpy array just made, which nothing else references
    or writes; it becomes read-only: packed weights are not copied once more)."""
    if dtype is None and (_immutable(array) or owned and isinstance(array, np.ndarray) and array.dtype.kind not in "OU"):
        arr = array
    else:
        arr = np.array(array, dtype=np_dtype(dtype)) if dtype is not None else np.array(array)
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    if arr.dtype == np.dtype("O") and not all(isinstance(x, str) for x in arr.reshape(-1)):
        raise TypeError("object arrays are graph constants only when they hold str (dtype string)")
    arr.setflags(write=False)
    uid = next(_ids)
    return Value(name or f"c{uid}", TensorType.of(arr), None, arr, uid)


def _immutable(array: Any) -> bool:
    """Whether ``array`` is a read-only numpy array whose memory belongs to a ``bytes`` object
    (numpy refuses to make such an array writable)."""
    if not isinstance(array, np.ndarray) or array.flags.writeable or not array.flags.aligned \
            or array.dtype.kind in "OU":
        return False
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, bytes)


@dataclass(eq=False)
class Graph:
    """A dataflow graph: inputs, nodes in topological order, outputs."""

    inputs: list[Value]
    nodes: list[Node]
    outputs: list[Value]
    name: str = "graph"
    #: upper limits of the symbols of symbolic shapes (name -> largest value): the model, or the
    #: user, needs them (the artifact refuses larger inputs)
    bounds: dict = field(default_factory=dict)
    #: sizes to plan memory and schedules for (name -> value) of symbols without a limit: larger
    #: inputs still run
    hints: dict = field(default_factory=dict)
    #: what the symbols' values must satisfy for the graph to be defined, checked when they are
    #: bound at run time: ``(dim, op, what)`` with ``op`` "==" (``dim`` is 0) or ">=" (``dim``
    #: is at least 0), ``what`` naming the node and its need (``symbolic.failed_check``)
    checks: list = field(default_factory=list)
    #: default values of inputs (input name -> array) that a caller may leave out: ONNX
    #: initializers that are also graph inputs.  Never folded: the input is read at run time
    defaults: dict = field(default_factory=dict)
    #: outputs whose rank the run decides (output index -> its axes, each dropped when its size
    #: is 1 at run time): ONNX's Squeeze with no axes of a symbolic size, which removes it only
    #: when it is 1 (plcmos's score is () at batch 1 and (2,) at batch 2).  The graph computes
    #: the output with those axes; the interpreter and the runtime drop them from the result
    squeezes: dict = field(default_factory=dict)

    def symbols(self) -> list[str]:
        """The symbols of the graph's input shapes, in order of first appearance."""
        out: dict[str, None] = {}
        for v in self.inputs:
            for d in v.shape:
                if not isinstance(d, int):
                    for s in sorted(d.symbols()):
                        out.setdefault(s, None)
        return list(out)

    # ---- traversal -----------------------------------------------------------------------

    def constants(self) -> list[Value]:
        """Constant values used by nodes or outputs, in first-use order."""
        seen: dict[int, Value] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v.is_const and v.uid not in seen:
                    seen[v.uid] = v
        for v in self.outputs:
            if v.is_const and v.uid not in seen:
                seen[v.uid] = v
        return list(seen.values())

    def values(self) -> Iterator[Value]:
        """Every value of the graph once: inputs, constants, node outputs."""
        seen: set[int] = set()
        for v in itertools.chain(self.inputs, self.constants(), (o for n in self.nodes for o in n.outputs)):
            if v.uid not in seen:
                seen.add(v.uid)
                yield v

    def users(self) -> dict[Value, list[Node]]:
        """Map from each value to the nodes that read it (in node order)."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                lst = out.setdefault(v, [])
                if not lst or lst[-1] is not n:
                    lst.append(n)
        return out

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for n in self.nodes:
            hist[n.op] = hist.get(n.op, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for n in self.nodes:
            n.inputs = [new if v is old else v for v in n.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def topo_sort(self) -> None:
        """Reorder ``nodes`` topologically (stable with respect to the current order)."""
        produced_by = {o: n for n in self.nodes for o in n.outputs}
        order: list[Node] = []
        state: dict[int, int] = {}
        for root in self.nodes:
            if id(root) in state:
                continue
            stack: list[tuple[Node, Iterator[Value]]] = [(root, iter(root.inputs))]
            state[id(root)] = 1
            while stack:
                node, it = stack[-1]
                for v in it:
                    p = produced_by.get(v)
                    if p is not None and id(p) not in state:
                        state[id(p)] = 1
                        stack.append((p, iter(p.inputs)))
                        break
                else:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
        self.nodes = order

    def copy(self) -> "Graph":
        """A structural copy: new Value and Node objects, constants shared (they are read-only)."""
        vmap: dict[Value, Value] = {}

        def cv(v: Value) -> Value:
            if v not in vmap:
                vmap[v] = Value(v.name, v.type, None, v.const)
            return vmap[v]

        inputs = [cv(v) for v in self.inputs]
        nodes = []
        for n in self.nodes:
            nn = Node(n.op, [cv(v) for v in n.inputs], [], dict(n.attrs), n.name)
            nn.outputs = [cv(o) for o in n.outputs]
            for o in nn.outputs:
                o.producer = nn
            nodes.append(nn)
        return Graph(inputs, nodes, [cv(v) for v in self.outputs], self.name, dict(self.bounds), dict(self.hints),
                     list(self.checks), dict(self.defaults), dict(self.squeezes))

    def __str__(self) -> str:
        from .text import print_graph

        return print_graph(self)


def map_dims(x: Any, fn) -> Any:
    """``x`` (an attribute value: a dimension, a tuple of them, anything else) with ``fn``
    applied to every symbolic dimension in it."""
    from ..symbolic import Sym

    if isinstance(x, Sym):
        return fn(x)
    if isinstance(x, tuple):
        return tuple(map_dims(y, fn) for y in x)
    return x


def unique_names(names: Iterable[str]) -> Iterator[str]:
    """Yield the names made unique by suffixes, in order."""
    used: set[str] = set()
    for n in names:
        base, k, cand = n, 0, n
        while cand in used:
            k += 1
            cand = f"{base}_{k}"
        used.add(cand)
        yield cand

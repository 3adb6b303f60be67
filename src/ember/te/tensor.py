"""Tensor expressions: *what* a kernel computes, as in Halide's Funcs and TVM's te.compute.

``compute(shape, f)`` calls ``f`` with one iteration variable per output axis and records the
expression it returns; ``tensor[i, j]`` inside ``f`` reads another tensor.  A body may be a
reduction (``sum``/``reduce``/``arg_reduce``) over reduce axes made with ``reduce_axis``.
How the loops run is decided separately, by a :class:`~ember.te.schedule.Schedule`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..symbolic import Sym
from ..tir import intrinsics
from ..tir.expr import (BinOp, Call, Cast, Const, Expr, INDEX, IndexCheck, Not, Select, Var, as_expr, binop,
                        is_float_dtype, is_standard_dtype, sym_expr)

_uid = itertools.count()


@dataclass(eq=False, repr=False)
class IterVar(Var):
    """A loop variable with a range [0, extent): a spatial axis of a compute or a reduce axis.
    ``extent`` is an int, or an int64 expression of size variables for a symbolic dimension."""

    extent: Any = 0
    kind: str = "spatial"   # "spatial" | "reduce"


def extent_of(d) -> "int | Expr":
    """A dimension (int, :class:`~ember.symbolic.Sym` or expression) as a loop extent."""
    if isinstance(d, Sym):
        return sym_expr(d)
    if isinstance(d, Expr):
        return d
    return int(d)


@dataclass(eq=False, repr=False)
class TensorLoad(Expr):
    """Read of ``tensor[indices]`` inside a tensor expression."""

    tensor: "Tensor"
    indices: tuple
    dtype: str = ""

    def __post_init__(self):
        self.dtype = self.tensor.dtype

    def __repr__(self):
        return f"{self.tensor.name}[{', '.join(map(repr, self.indices))}]"

    def _rebuild(self, f):
        idx = tuple(f(i) for i in self.indices)
        return self if all(a is b for a, b in zip(idx, self.indices)) else TensorLoad(self.tensor, idx)


@dataclass(eq=False, repr=False)
class Reduce(Expr):
    """combiner over ``axes`` of ``body``: "sum", "prod", "max" or "min"."""

    combiner: str
    body: Expr
    axes: tuple
    dtype: str = ""

    def __post_init__(self):
        self.dtype = self.body.dtype


@dataclass(eq=False, repr=False)
class ArgReduce(Expr):
    """Index along ``axis`` of the first element for which ``better(value, best)`` holds."""

    better: str          # comparison op name: "gt", "ge", "lt", "le"
    body: Expr
    axis: IterVar
    dtype: str = INDEX


class Tensor:
    """A tensor of a te program: a placeholder (kernel input) or the result of a compute.
    Its shape holds ints and, for symbolic dimensions, :class:`~ember.symbolic.Sym`."""

    def __init__(self, shape: Sequence[int], dtype: str, name: str, body: Expr | None = None,
                 axes: Sequence[IterVar] = ()):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name
        self.body = body
        self.axes = tuple(axes)
        self.uid = next(_uid)

    @property
    def is_placeholder(self) -> bool:
        return self.body is None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, idx) -> TensorLoad:
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) != len(self.shape):
            raise IndexError(f"tensor {self.name} has rank {len(self.shape)}, indexed with {len(idx)} indices")
        return TensorLoad(self, tuple(as_expr(i) for i in idx))

    def inputs(self) -> list["Tensor"]:
        """Tensors read by this compute, in first-read order."""
        out: dict[int, Tensor] = {}
        if self.body is not None:
            for e in walk(self.body):
                if isinstance(e, TensorLoad) and e.tensor.uid not in out:
                    out[e.tensor.uid] = e.tensor
        return list(out.values())

    def __repr__(self):
        return f"Tensor({self.name}, {self.shape}, {self.dtype})"


def walk(e: Expr):
    """Pre-order traversal of an expression, each node once (expressions are DAGs: fused
    requantizations and unrolled transforms share subexpressions; a tree walk is exponential)."""
    stack = [e]
    seen: set[int] = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        if isinstance(x, BinOp):
            stack += [x.b, x.a]
        elif isinstance(x, (Not,)):
            stack.append(x.a)
        elif isinstance(x, Cast):
            stack.append(x.a)
        elif isinstance(x, Call):
            stack += list(reversed(x.args))
        elif isinstance(x, Select):
            stack += [x.f, x.t, x.cond]
        elif isinstance(x, IndexCheck):
            stack += [x.extent, x.index]
        elif isinstance(x, TensorLoad):
            stack += list(reversed(x.indices))
        elif isinstance(x, (Reduce, ArgReduce)):
            stack.append(x.body)


def placeholder(shape: Sequence[int], dtype: str, name: str) -> Tensor:
    return Tensor(shape, dtype, name)


def compute(shape: Sequence[int], fcompute: Callable[..., Expr], name: str = "compute") -> Tensor:
    axes = [IterVar(f"i{k}", INDEX, extent=extent_of(d), kind="spatial") for k, d in enumerate(shape)]
    body = as_expr(fcompute(*axes))
    return Tensor(shape, body.dtype, name, body, axes)


def reduce_axis(extent, name: str = "r") -> IterVar:
    return IterVar(name, INDEX, extent=extent_of(extent), kind="reduce")


def reduce(combiner: str, body: Expr, axes: Sequence[IterVar]) -> Expr:
    """``combiner`` of ``body`` over ``axes``; over no axes at all that is ``body`` itself."""
    if combiner not in ("sum", "prod", "max", "min"):
        raise ValueError(f"unknown combiner {combiner!r}")
    if not axes:
        return as_expr(body)
    return Reduce(combiner, as_expr(body), tuple(axes))


def sum(body: Expr, axes: Sequence[IterVar]) -> Reduce:  # noqa: A001 - te vocabulary
    return reduce("sum", body, axes)


def arg_reduce(better: Callable, body: Expr, axis: IterVar) -> ArgReduce:
    name = {eq_: n for n, eq_ in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le))}[better]
    return ArgReduce(name, as_expr(body), axis)


def const(value: Any, dtype: str = INDEX) -> Expr:
    """A constant; a symbolic dimension becomes the expression of its size variables."""
    if isinstance(value, Sym):
        e = sym_expr(value)
        return e if dtype == INDEX else Cast(dtype, e)
    return Const(value, dtype)


def call(fn: str, *args: Any) -> Call:
    """The intrinsic ``fn`` (``ember.tir.intrinsics``) of ``args``: its arity and argument dtypes
    are checked against its entry (a :class:`TypeError` naming it), its dtype is its rule's.
    A Python number takes the dtype of the other arguments."""
    like = next((a.dtype for a in args if isinstance(a, Expr)), None)
    xs = tuple(as_expr(a, like) for a in args)
    return Call(fn, xs, intrinsics.result_dtype(fn, tuple(x.dtype for x in xs)))


def checked_index(index: Any, extent: Any, what: str) -> Expr:
    """``index`` (negative: counted from the end) checked at run time to lie in [-extent,
    extent); see :class:`~ember.tir.expr.IndexCheck`.  ``extent`` may be symbolic."""
    return IndexCheck(as_expr(index), extent if isinstance(extent, Expr) else const(extent), what)


def cast(dtype: str, x: Any, saturate: bool = False, round_mode: str = "up") -> Expr:
    """``x`` converted to ``dtype`` (see the ``cast`` op for the rules and the options)."""
    x = as_expr(x)
    if x.dtype == dtype:
        return x
    if isinstance(x, Const) and is_standard_dtype(x.dtype) and is_standard_dtype(dtype):
        return Const(x.value, dtype)
    return Cast(dtype, x, saturate, round_mode)


def select(cond: Expr, t: Any, f: Any) -> Expr:
    t = as_expr(t) if isinstance(t, Expr) else as_expr(t, f.dtype if isinstance(f, Expr) else None)
    f = as_expr(f, t.dtype)
    if isinstance(cond, Const):
        return t if cond.value else f
    return Select(cond, t, f)


def maximum(a, b): return binop("max", a, b)
def minimum(a, b): return binop("min", a, b)
def eq(a, b): return binop("eq", a, b)
def ne(a, b): return binop("ne", a, b)
def lt(a, b): return binop("lt", a, b)
def le(a, b): return binop("le", a, b)
def gt(a, b): return binop("gt", a, b)
def ge(a, b): return binop("ge", a, b)
def logical_and(a, b): return binop("and", a, b)
def logical_or(a, b): return binop("or", a, b)


def logical_not(a):
    a = as_expr(a)
    if isinstance(a, Const):
        return Const(not a.value, "bool")
    return Not(a)


def min_value(dtype: str) -> Const:
    import numpy as np

    if is_float_dtype(dtype):
        return Const(float("-inf"), dtype)
    if dtype == "bool":
        return Const(False, dtype)
    return Const(int(np.iinfo(dtype).min), dtype)


def max_value(dtype: str) -> Const:
    import numpy as np

    if is_float_dtype(dtype):
        return Const(float("inf"), dtype)
    if dtype == "bool":
        return Const(True, dtype)
    return Const(int(np.iinfo(dtype).max), dtype)

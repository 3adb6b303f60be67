"""Checks that a loop-IR kernel is well formed, run after every loop-IR pass (the driver's
pipeline), so a pass that breaks a kernel is named where it did so, not found by the C compiler
or a wrong result.

A kernel is well formed when every variable it reads is bound (a loop variable of an enclosing
loop, or a size variable, which the kernel takes as an argument), no loop binds a variable an
enclosing loop binds, every buffer it reads or writes is a parameter or a local allocation that
encloses the access, loop kinds are known and extents non-negative, a store writes as many
lanes as its index addresses, and every call names an intrinsic (``tir.intrinsics``) and keeps
its type rule.
"""

from __future__ import annotations

from ..errors import CodegenError
from . import intrinsics
from .expr import BinOp, Broadcast, Call, Cast, Expr, IndexCheck, Load, Not, Ramp, Select, Shuffle, SizeVar, Var
from .stmt import LOOP_KINDS, Allocate, For, IfThenElse, PrimFunc, Seq, Stmt, Store


#: loop kinds: a schedule's, and "simd" (a vectorized loop that ``vectorize`` left scalar, for the
#: C compiler to vectorize)
KINDS = LOOP_KINDS + ("simd",)


def verify_func(f: PrimFunc) -> None:
    """Raise a :class:`CodegenError` naming the kernel and the first defect found."""
    params = set(f.params)
    if len(params) != len(f.params):
        _fail(f, "a buffer is a parameter twice")
    _Checker(f).stmt(f.body, frozenset(), frozenset(params))


def _fail(f: PrimFunc, what: str) -> None:
    raise CodegenError(f"kernel {f.name} is malformed: {what}")


class _Checker:
    def __init__(self, f: PrimFunc):
        self.f = f
        # per expression (by id; the function keeps them alive): the loop variables and buffers
        # it reads, and its lanes -- unrolled code shares subexpressions between statements
        self.info: dict[int, tuple[frozenset, frozenset]] = {}
        self.lanes: dict[int, int] = {}

    def stmt(self, s: Stmt, bound: frozenset, buffers: frozenset) -> None:
        if isinstance(s, Seq):
            for x in s.stmts:
                self.stmt(x, bound, buffers)
        elif isinstance(s, For):
            if s.kind not in KINDS:
                _fail(self.f, f"loop {s.var!r} has the unknown kind {s.kind!r}")
            if s.var in bound:
                _fail(self.f, f"loop {s.var!r} binds a variable an enclosing loop binds")
            if isinstance(s.extent, int):
                if s.extent < 0:
                    _fail(self.f, f"loop {s.var!r} has the negative extent {s.extent}")
            else:
                self.expr(s.extent, bound, buffers)
            self.stmt(s.body, bound | {s.var}, buffers)
        elif isinstance(s, Store):
            self.buffer(s.buffer, buffers)
            self.expr(s.index, bound, buffers)
            self.expr(s.value, bound, buffers)
            n, v = _lanes(s.index, self.lanes), _lanes(s.value, self.lanes)
            if n != v:
                _fail(self.f, f"a store to {s.buffer.name} writes {v} lane(s) at an index of {n}")
        elif isinstance(s, Allocate):
            if s.buffer in buffers:
                _fail(self.f, f"buffer {s.buffer.name} is allocated where it already exists")
            self.stmt(s.body, bound, buffers | {s.buffer})
        elif isinstance(s, IfThenElse):
            self.expr(s.cond, bound, buffers)
            self.stmt(s.then, bound, buffers)
            if s.other is not None:
                self.stmt(s.other, bound, buffers)
        else:
            _fail(self.f, f"unknown statement {type(s).__name__}")

    def buffer(self, b, buffers: frozenset) -> None:
        if b not in buffers:
            _fail(self.f, f"buffer {b.name} is used outside its allocation (not a parameter either)")

    def expr(self, e: Expr, bound: frozenset, buffers: frozenset) -> None:
        free, used = self.reads(e)
        if not free <= bound:
            x = min(free - bound, key=lambda v: v.uid)
            _fail(self.f, f"variable {x!r} is read outside the loop that binds it")
        for b in used:
            self.buffer(b, buffers)

    def reads(self, e: Expr) -> tuple[frozenset, frozenset]:
        """The loop variables and the buffers ``e`` reads; the checks that need no context (the
        lanes of loads and vectors) made on the way, once per shared subexpression."""
        got = self.info.get(id(e))
        if got is not None:
            return got
        if isinstance(e, SizeVar):
            out = (_EMPTY, _EMPTY)
        elif isinstance(e, Var):
            out = (frozenset((e,)), _EMPTY)
        else:
            if isinstance(e, Load):
                n = _lanes(e.index, self.lanes)
                if n != e.lanes:
                    _fail(self.f, f"a load of {e.lanes} lane(s) from {e.buffer.name} at an index of {n}")
            if isinstance(e, (Ramp, Broadcast)) and e.lanes < 1:
                _fail(self.f, f"a vector of {e.lanes} lanes")
            if isinstance(e, Shuffle):
                n = _lanes(e.a, self.lanes)
                if n < 2 or _lanes(e.b, self.lanes) != n or e.a.dtype != e.b.dtype or \
                        any(not 0 <= i < 2 * n for i in e.indices):
                    _fail(self.f, f"a shuffle of {e.a.dtype} x {n} and {e.b.dtype} x {_lanes(e.b, self.lanes)} "
                                  f"picking lanes {list(e.indices)}")
            if isinstance(e, Call):
                try:
                    dtype = intrinsics.result_dtype(e.fn, tuple(a.dtype for a in e.args))
                except TypeError as err:
                    _fail(self.f, str(err))
                if dtype != e.dtype:
                    _fail(self.f, f"a call of {e.fn} is {e.dtype}, its type rule gives {dtype}")
            parts = [self.reads(c) for c in _children(e)]
            free = frozenset().union(*(p[0] for p in parts)) if parts else _EMPTY
            used = frozenset().union(*(p[1] for p in parts)) if parts else _EMPTY
            if isinstance(e, Load):
                used = used | {e.buffer}
            out = (free, used)
        self.info[id(e)] = out
        return out


_EMPTY: frozenset = frozenset()


def _lanes(e: Expr, memo: dict) -> int:
    """Lanes of ``e`` (``tir.transform.lanes_of``, once per shared subexpression)."""
    k = id(e)
    if k not in memo:
        if isinstance(e, (Ramp, Broadcast, Load, Shuffle)):
            memo[k] = e.lanes
        elif isinstance(e, (BinOp, Not, Cast, Call, Select)):
            memo[k] = max((_lanes(c, memo) for c in _children(e)), default=1)
        else:
            memo[k] = 1
    return memo[k]


_FIELDS: dict[type, tuple[str, ...]] = {}


def _children(e: Expr) -> list:
    if isinstance(e, IndexCheck):
        return [e.index, e.extent]
    names = _FIELDS.get(type(e))
    if names is None:
        names = _FIELDS[type(e)] = tuple(n for n in ("a", "b", "cond", "t", "f", "index", "base", "value", "args")
                                         if n in getattr(type(e), "__dataclass_fields__", {}) or hasattr(e, n))
    out = []
    for name in names:
        c = getattr(e, name, None)
        if isinstance(c, Expr):
            out.append(c)
        elif name == "args":
            out.extend(x for x in c if isinstance(x, Expr))
    return out

"""Checks that a loop-IR kernel is well formed, run after every loop-IR pass (the driver's
pipeline), so a pass that breaks a kernel is named where it did so, not found by the C compiler
or a wrong result.

A kernel is well formed when every variable it reads is bound (a loop variable of an enclosing
loop, or a size variable, which the kernel takes as an argument), no loop binds a variable an
enclosing loop binds, every buffer it reads or writes is a parameter or a local allocation that
encloses the access, loop kinds are known and extents non-negative, and a store writes as many
lanes as its index addresses.
"""

from __future__ import annotations

from ..errors import CodegenError
from .expr import BinOp, Broadcast, Call, Cast, Expr, IndexCheck, Load, Not, Ramp, Select, SizeVar, Var
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
            n, v = _lanes(s.index, {}), _lanes(s.value, {})
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
        todo = [e]
        seen: set[int] = set()
        while todo:
            x = todo.pop()
            if id(x) in seen:
                continue
            seen.add(id(x))
            if isinstance(x, SizeVar):
                continue
            if isinstance(x, Var):
                if x not in bound:
                    _fail(self.f, f"variable {x!r} is read outside the loop that binds it")
                continue
            if isinstance(x, Load):
                self.buffer(x.buffer, buffers)
                n = _lanes(x.index, {})
                if n != x.lanes:
                    _fail(self.f, f"a load of {x.lanes} lane(s) from {x.buffer.name} at an index of {n}")
            if isinstance(x, (Ramp, Broadcast)) and x.lanes < 1:
                _fail(self.f, f"a vector of {x.lanes} lanes")
            todo.extend(_children(x))


def _lanes(e: Expr, memo: dict) -> int:
    """Lanes of ``e`` (``tir.transform.lanes_of``, once per shared subexpression)."""
    k = id(e)
    if k not in memo:
        if isinstance(e, (Ramp, Broadcast, Load)):
            memo[k] = e.lanes
        elif isinstance(e, (BinOp, Not, Cast, Call, Select)):
            memo[k] = max((_lanes(c, memo) for c in _children(e)), default=1)
        else:
            memo[k] = 1
    return memo[k]


def _children(e: Expr) -> list:
    if isinstance(e, IndexCheck):
        return [e.index, e.extent]
    out = []
    for name in ("a", "b", "cond", "t", "f", "index", "base", "value"):
        c = getattr(e, name, None)
        if isinstance(c, Expr):
            out.append(c)
    out.extend(x for x in getattr(e, "args", ()) if isinstance(x, Expr))
    return out

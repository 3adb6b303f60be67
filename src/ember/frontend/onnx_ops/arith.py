"""Python operators over graph values, so that long decompositions read like the formulas they
implement: ``T(cx, v)`` wraps a Value; ``+ - * / %``, comparisons and the methods below emit
core ops through ``cx.op`` (constants still fold).  Python numbers become scalars of the other
operand's dtype."""

from __future__ import annotations

from typing import Any

from ...graph.ir import Value
from ...symbolic import Sym


class T:
    __slots__ = ("cx", "v")

    def __init__(self, cx, v: "Value | T"):
        self.cx = cx
        self.v = v.v if isinstance(v, T) else v

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def dtype(self) -> str:
        return self.v.dtype

    @property
    def shape(self) -> tuple:
        return tuple(self.v.shape)

    def _val(self, o: Any) -> Value:
        if isinstance(o, T):
            return o.v
        if isinstance(o, Value):
            return o
        return self.cx.scalar(o, self.dtype)

    def _op(self, core: str, *others: Any, **attrs: Any) -> "T":
        return T(self.cx, self.cx.op(core, [self.v] + [self._val(o) for o in others], **attrs))

    def _rop(self, core: str, other: Any) -> "T":
        return T(self.cx, self.cx.op(core, [self._val(other), self.v]))

    # -- arithmetic ----------------------------------------------------------------------------

    def __add__(self, o): return self._op("add", o)
    def __radd__(self, o): return self._rop("add", o)
    def __sub__(self, o): return self._op("sub", o)
    def __rsub__(self, o): return self._rop("sub", o)
    def __mul__(self, o): return self._op("mul", o)
    def __rmul__(self, o): return self._rop("mul", o)
    def __truediv__(self, o): return self._op("div", o)
    def __rtruediv__(self, o): return self._rop("div", o)
    def __mod__(self, o): return self._op("fmod", o)
    def __neg__(self): return self * -1

    def __lt__(self, o): return self._op("less", o)
    def __le__(self, o): return self._op("less_equal", o)
    def __gt__(self, o): return self._op("greater", o)
    def __ge__(self, o): return self._op("greater_equal", o)
    def eq(self, o): return self._op("equal", o)
    def ne(self, o): return self._op("not_equal", o)
    def __and__(self, o): return self._op("logical_and", o)
    def __or__(self, o): return self._op("logical_or", o)
    def __invert__(self): return self._op("logical_not")

    __hash__ = object.__hash__

    def max(self, o): return self._op("maximum", o)
    def min(self, o): return self._op("minimum", o)
    def clip(self, lo, hi): return self.max(lo).min(hi)

    def unary(self, core: str) -> "T":
        return self._op(core)

    def floor(self): return self._op("floor")
    def abs(self): return self._op("abs")

    def cast(self, dtype: str) -> "T":
        return self if self.dtype == dtype else self._op("cast", to=dtype)

    def where(self, then: Any, other: Any) -> "T":
        """``then`` where this (bool) value is true, else ``other``."""
        a = then if isinstance(then, (T, Value)) else None
        b = other if isinstance(other, (T, Value)) else None
        ref = T(self.cx, a if a is not None else b) if (a is not None or b is not None) else None
        if ref is None:
            raise TypeError("where() needs at least one tensor branch")
        return T(self.cx, self.cx.op("where", [self.v, ref._val(then), ref._val(other)]))

    def reshape(self, shape) -> "T":
        return self._op("reshape", shape=tuple(d if isinstance(d, Sym) else int(d) for d in shape))

    def transpose(self, perm) -> "T":
        return self._op("transpose", perm=tuple(perm))

    def sum(self, axes, keepdims: bool = False) -> "T":
        return self._op("reduce_sum", axes=tuple(axes), keepdims=keepdims)

    def gather(self, idx: Any, axis: int) -> "T":
        return T(self.cx, self.cx.op("gather", [self.v, idx.v if isinstance(idx, T) else idx], axis=axis))

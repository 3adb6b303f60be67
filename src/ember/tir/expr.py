"""Scalar and vector expressions of the loop IR (also the leaves of tensor expressions).

Expressions are immutable trees.  Python operators build them, folding constants as they go,
so index arithmetic written in op computes stays small.  Integer division and remainder follow
C (truncation toward zero); index expressions are non-negative where it matters.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ..symbolic import Sym

INDEX = "int64"

_counter = itertools.count()

COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")
LOGICAL = ("and", "or")


#: the narrow types of the graph IR (``ember.graph.types``): one byte an element, no arithmetic
NARROW_FLOAT_DTYPES = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
                       "float4_e2m1fn")
NARROW_INT_DTYPES = ("int4", "uint4", "int2", "uint2")


def is_float_dtype(dtype: str) -> bool:
    return dtype in ("float16", "bfloat16", "float32", "float64")


def is_standard_dtype(dtype: str) -> bool:
    """Whether C holds ``dtype`` as itself (not bfloat16 or a narrow type, which generated code
    converts with routines), so that a cast of a constant can fold in Python."""
    return dtype != "bfloat16" and dtype not in NARROW_FLOAT_DTYPES and dtype not in NARROW_INT_DTYPES


class Expr:
    dtype: str

    # arithmetic builds BinOp nodes; python numbers take the other operand's dtype
    def __add__(self, o): return binop("add", self, o)
    def __radd__(self, o): return binop("add", o, self)
    def __sub__(self, o): return binop("sub", self, o)
    def __rsub__(self, o): return binop("sub", o, self)
    def __mul__(self, o): return binop("mul", self, o)
    def __rmul__(self, o): return binop("mul", o, self)
    def __truediv__(self, o): return binop("div", self, o)
    def __rtruediv__(self, o): return binop("div", o, self)
    def __floordiv__(self, o): return binop("div", self, o)
    def __rfloordiv__(self, o): return binop("div", o, self)
    def __mod__(self, o): return binop("mod", self, o)
    def __rmod__(self, o): return binop("mod", o, self)
    def __neg__(self):
        # x * -1 keeps the sign of zero (-(0.0) is -0.0; 0 - 0.0 would be +0.0)
        if is_float_dtype(self.dtype):
            return binop("mul", self, Const(-1.0, self.dtype))
        return binop("sub", Const(0, self.dtype), self)

    # identity semantics: expressions are used as dict keys by identity
    __hash__ = object.__hash__

    def __eq__(self, other):  # pragma: no cover - guard against accidental use
        return self is other

    def __bool__(self):
        raise TypeError("an expression has no truth value; use te.eq/te.lt/... to compare")


@dataclass(eq=False, repr=False)
class Var(Expr):
    name: str
    dtype: str = INDEX
    uid: int = field(default_factory=lambda: next(_counter))

    def __repr__(self):
        return self.name


@dataclass(eq=False, repr=False)
class Const(Expr):
    value: Any
    dtype: str = INDEX

    def __post_init__(self):
        if self.dtype == "bool":
            self.value = bool(self.value)
        elif is_float_dtype(self.dtype) or self.dtype in NARROW_FLOAT_DTYPES:
            self.value = float(self.value)
        else:
            v = self.value
            if isinstance(v, float) and not math.isfinite(v):
                v = _to_int_like_numpy(v, self.dtype)
            v = int(v)
            lo, hi = _INT_RANGE.get(self.dtype, (v, v))
            if not lo <= v <= hi:
                v = (v - lo) % (hi - lo + 1) + lo      # two's complement wrap, as numpy's astype
            self.value = v

    def __repr__(self):
        return repr(self.value)


@dataclass(eq=False, repr=False)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: str = INDEX

    def __repr__(self):
        return f"({self.a!r} {self.op} {self.b!r})"


@dataclass(eq=False, repr=False)
class Not(Expr):
    a: Expr
    dtype: str = "bool"


@dataclass(eq=False, repr=False)
class Call(Expr):
    """A call of the intrinsic ``fn`` (one of ``ember.tir.intrinsics``); ``dtype`` is what its
    type rule gives for the arguments' dtypes (``te.call`` builds calls so, ``tir.verify``
    checks it)."""

    fn: str
    args: tuple
    dtype: str

    def __repr__(self):
        return f"{self.fn}({', '.join(map(repr, self.args))})"


@dataclass(eq=False, repr=False)
class IndexCheck(Expr):
    """A run-time checked index: ``index`` counted from the end when negative (once, as ONNX
    does), so its value lies in [0, extent).  An ``index`` outside [-extent, extent) is an error
    of the run: the kernel records it (the first one of a run wins; the entry stops after the
    kernel and reports it) and carries on with the value 0, so no access leaves its buffer when
    ``extent > 0``; an op whose ``extent`` may be 0 must not load with the result then.
    ``what`` says which operand and axis the index is for (``"axis 0 of the data [30522, 768]"``);
    ``node`` and ``op`` name the graph node (filled in by the kernel builder)."""

    index: Expr
    extent: Expr
    what: str
    node: str = ""
    op: str = ""
    dtype: str = INDEX

    def __repr__(self):
        return f"checked({self.index!r}, {self.extent!r})"


@dataclass(eq=False, repr=False)
class Select(Expr):
    cond: Expr
    t: Expr
    f: Expr
    dtype: str = ""

    def __post_init__(self):
        self.dtype = self.t.dtype

    def __repr__(self):
        return f"select({self.cond!r}, {self.t!r}, {self.f!r})"


@dataclass(eq=False, repr=False)
class Cast(Expr):
    """Conversion to ``dtype`` by the rules of the ``cast`` op (``ember.ops.cast``): ``saturate``
    and ``round_mode`` matter only for the float8 targets."""

    dtype: str
    a: Expr
    saturate: bool = False
    round_mode: str = "up"

    def __repr__(self):
        return f"{self.dtype}{'!sat' if self.saturate else ''}({self.a!r})"


@dataclass(eq=False, repr=False)
class Load(Expr):
    """Load of ``buffer[index]`` (a flat element index; a Ramp for a vector load)."""

    buffer: Any
    index: Expr
    dtype: str = ""
    lanes: int = 1

    def __post_init__(self):
        self.dtype = self.buffer.dtype

    def __repr__(self):
        return f"{self.buffer.name}[{self.index!r}]"


@dataclass(eq=False, repr=False)
class Ramp(Expr):
    """The vector base, base+stride, ..., base+(lanes-1)*stride."""

    base: Expr
    stride: int
    lanes: int
    dtype: str = INDEX

    def __repr__(self):
        return f"ramp({self.base!r}, {self.stride}, {self.lanes})"


@dataclass(eq=False, repr=False)
class Broadcast(Expr):
    value: Expr
    lanes: int
    dtype: str = ""

    def __post_init__(self):
        self.dtype = self.value.dtype

    def __repr__(self):
        return f"bcast({self.value!r}, {self.lanes})"


@dataclass(eq=False, repr=False)
class Shuffle(Expr):
    """Lanes picked from two vectors of one type and width: lane ``k`` of the result is lane
    ``indices[k]`` of ``a`` followed by ``b`` (0 to 2n - 1).  Made by the loop IR's
    transposition of blocks (``tir.transform.transpose_blocks``), for CPU code."""

    a: Expr
    b: Expr
    indices: tuple
    dtype: str = ""

    def __post_init__(self):
        self.dtype = self.a.dtype

    @property
    def lanes(self) -> int:
        return len(self.indices)

    def _rebuild(self, f):
        a, b = f(self.a), f(self.b)
        return self if (a is self.a and b is self.b) else Shuffle(a, b, self.indices)

    def __repr__(self):
        return f"shuffle({self.a!r}, {self.b!r}, [{', '.join(map(str, self.indices))}])"


_INT_RANGE = {f"{p}int{b}": ((0, (1 << b) - 1) if p else (-(1 << (b - 1)), (1 << (b - 1)) - 1))
              for p in ("", "u") for b in (2, 4, 8, 16, 32, 64)}


def _to_int_like_numpy(v: float, dtype: str) -> int:
    """NaN and infinities converted to an integer dtype the way numpy does on this machine."""
    import numpy as np

    with np.errstate(all="ignore"):
        return int(np.asarray(v, dtype=np.float64).astype(dtype))


@dataclass(eq=False, repr=False)
class SizeVar(Var):
    """A symbolic dimension inside a kernel (``ember.symbolic``): an int64 kernel argument that
    the artifact computes once per run from the input shapes.  One object per name, so that
    equal dimensions cancel in index arithmetic (see :func:`size_var`)."""


_SIZE_VARS: dict[str, SizeVar] = {}


def size_var(name: str) -> SizeVar:
    """The kernel variable of symbol ``name`` (the same object for the same name)."""
    v = _SIZE_VARS.get(name)
    if v is None:
        v = _SIZE_VARS[name] = SizeVar(name, INDEX)
    return v


def sym_expr(d: Any) -> Expr:
    """A dimension (an int or a :class:`~ember.symbolic.Sym`) as an int64 loop-IR expression."""
    if not isinstance(d, Sym):
        return Const(int(d), INDEX)
    out: Expr | None = None
    for mono, coef in d.terms:
        term: Expr | None = None
        for atom in mono:
            if isinstance(atom, str):
                x: Expr = size_var(atom)
            else:
                x = binop("div" if atom[0] == "//" else "mod", sym_expr(atom[1]), Const(atom[2]))
            term = x if term is None else binop("mul", term, x)
        term = binop("mul", term, Const(coef)) if coef != 1 else term
        out = term if out is None else binop("add", out, term)
    return binop("add", out, Const(d.const)) if d.const else out


def as_expr(x: Any, dtype: str | None = None) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, Sym):
        return sym_expr(x)
    if isinstance(x, bool):
        return Const(x, "bool")
    if isinstance(x, int):
        return Const(x, dtype if dtype is not None else INDEX)
    if isinstance(x, float):
        return Const(x, dtype if dtype is not None and is_float_dtype(dtype) else "float32")
    raise TypeError(f"cannot make an expression of {x!r}")


_FOLD = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "max": max,
    "min": min,
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "and": lambda a, b: a and b, "or": lambda a, b: a or b,
}


def _c_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def binop(op: str, a: Any, b: Any) -> Expr:
    """Build ``a op b`` with light constant folding and identity removal."""
    if not isinstance(a, Expr) and not isinstance(b, Expr):
        a = as_expr(a)
    if not isinstance(a, Expr):
        a = as_expr(a, b.dtype)
    if not isinstance(b, Expr):
        b = as_expr(b, a.dtype)
    dtype = "bool" if op in COMPARISONS or op in LOGICAL else a.dtype
    if isinstance(a, Const) and isinstance(b, Const) and not is_float_dtype(a.dtype):
        if op in _FOLD:
            return Const(_FOLD[op](a.value, b.value), dtype)
        if op == "div" and b.value != 0:
            return Const(_c_div(a.value, b.value), dtype)
        if op == "mod" and b.value != 0:
            return Const(a.value - _c_div(a.value, b.value) * b.value, dtype)
    if not is_float_dtype(a.dtype) and a.dtype != "bool":
        # integer identities (not valid for floats because of -0.0 and NaN)
        if op == "add":
            if isinstance(b, Const) and b.value == 0:
                return a
            if isinstance(a, Const) and a.value == 0:
                return b
        if op == "sub" and isinstance(b, Const) and b.value == 0:
            return a
        if op == "mul":
            for x, y in ((a, b), (b, a)):
                if isinstance(x, Const) and x.value == 1:
                    return y
                if isinstance(x, Const) and x.value == 0:
                    return Const(0, dtype)
        if op == "div" and isinstance(b, Const) and b.value == 1:
            return a
        if op == "mod" and isinstance(b, Const) and b.value == 1:
            return Const(0, dtype)
    if op == "and":
        for x, y in ((a, b), (b, a)):
            if isinstance(x, Const):
                return y if x.value else Const(False, "bool")
    if op == "or":
        for x, y in ((a, b), (b, a)):
            if isinstance(x, Const):
                return Const(True, "bool") if x.value else y
    return BinOp(op, a, b, dtype)


def const(value: Any, dtype: str = INDEX) -> Const:
    if is_float_dtype(dtype) and isinstance(value, float) and math.isnan(value):
        return Const(value, dtype)
    return Const(value, dtype)

"""Shape arithmetic over symbolic dimensions, evaluated while a model is translated.

Exported models compute shapes with tensors: ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``.  When a dimension is symbolic those tensors hold expressions of the symbols
(``ember.symbolic``), not numbers.  A frontend keeps such a value as a numpy *object* array of
ints and :class:`~ember.symbolic.Sym` and evaluates the core ops that read it here, with the
exact algebra of the symbols, so the shapes end up in the graph as symbolic dimensions (a
reshape to ``[batch, seq, 12, 64]``) instead of being computed at run time.

:func:`fold` evaluates one core op on such arrays, or raises
:class:`~ember.symbolic.SymbolicError` when the result depends on values only known at run time
(the frontend then computes the op on tensors instead).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ...symbolic import Sym, SymbolicError, compare, dim_max, dim_min, exact_div

#: core ops that can be evaluated on arrays of symbolic dimensions
FOLDABLE = frozenset({
    "reshape", "concat", "gather", "slice", "cast", "broadcast_to", "transpose",
    "add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "where", "reduce_prod",
    "ceil", "floor",
})

_INT_TARGETS = ("int64", "int32", "uint64", "uint32")
_FLOAT_TARGETS = ("float32", "float64")


class Ratio:
    """A symbolic dimension over a positive constant: float shape arithmetic in flight
    (``ceil(w / 2.0) * 2``), which only ``ceil``, ``floor`` or a multiple that makes it whole
    turn back into a dimension; anything else is refused (``SymbolicError``)."""

    __slots__ = ("num", "den")

    def __init__(self, num: Sym, den: int):
        self.num, self.den = num, den

    @staticmethod
    def of(num, den: int):
        q = exact_div(num, den)
        return q if q is not None else Ratio(num, den)

    def __mul__(self, k):
        if not _is_int(k) or int(k) <= 0:
            raise SymbolicError(f"({self}) * {k} in float shape arithmetic")
        return Ratio.of(self.num * int(k), self.den)

    __rmul__ = __mul__

    def _refuse(self, *args):
        raise SymbolicError(f"({self}) is not a whole dimension")

    __add__ = __radd__ = __sub__ = __rsub__ = __truediv__ = __floordiv__ = __int__ = __index__ = _refuse

    def __str__(self):
        return f"({self.num})/{self.den}"


def _whole(x):
    """A float element of a shape value as an int where it is one (else the float)."""
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def _obj(a: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    out.reshape(-1)[:] = [x if isinstance(x, (Sym, Ratio)) else _whole(x.item() if hasattr(x, "item") else x)
                          for x in a.reshape(-1)]
    return out


def _elementwise(fn, *arrays):
    arrays = [a if a.dtype == object else _obj(a) for a in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    bs = [np.broadcast_to(a, shape).reshape(-1) for a in arrays]
    out = np.empty(shape, dtype=object)
    out.reshape(-1)[:] = [fn(*xs) for xs in zip(*bs)] if out.size else []
    return out


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _div(a, b):
    """ONNX integer division (truncation) of dimensions: exact for non-negative ones."""
    if _is_int(a) and _is_int(b):
        if b == 0:
            raise SymbolicError("division by zero in shape arithmetic")
        q = abs(int(a)) // abs(int(b))
        return q if (a >= 0) == (b > 0) else -q
    if _is_int(b) and int(b) > 0 and compare(a, ">=", 0) is True:
        return a // int(b)
    q = exact_div(a, b)
    if q is None:
        raise SymbolicError(f"({a}) / ({b}) is not exact")
    return q


def _cmp(op):
    def f(a, b):
        if _is_int(a) and _is_int(b):
            return {"equal": a == b, "not_equal": a != b, "less": a < b, "less_equal": a <= b,
                    "greater": a > b, "greater_equal": a >= b}[op]
        r = compare(a, {"equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=",
                        "greater": ">", "greater_equal": ">="}[op], b)
        if r is None:
            raise SymbolicError(f"whether {a} {op} {b} is only known at run time")
        return r
    return f


def floor_mod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX integer Mod (the remainder takes the divisor's sign, as Python's %) of dimensions,
    by positive constants where ``a`` is symbolic (a remainder atom of ``ember.symbolic``)."""
    def f(x, y):
        if _is_int(x) and _is_int(y):
            if y == 0:
                raise SymbolicError("a remainder by zero in shape arithmetic")
            return int(x) % int(y)
        if not _is_int(y) or int(y) <= 0:
            raise SymbolicError(f"({x}) % ({y}) is not a remainder by a positive constant")
        return x % int(y)
    return _elementwise(f, a, b)


def fold(core: str, attrs: dict, arrays: list[np.ndarray], bounds: Mapping[str, int] | None = None,
         dtype: str = "int64") -> np.ndarray:
    """``core`` applied to ``arrays`` (numbers or object arrays of dimensions) giving ``dtype``;
    returns an object array (or a bool array for comparisons).  Float shape values hold whole
    dimensions, plain numbers, and ``Ratio``s in flight between a division and a rounding."""
    arrays = [np.asarray(a) if not isinstance(a, np.ndarray) else a for a in arrays]
    try:
        out = _fold(core, attrs, arrays, bounds, dtype)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        if isinstance(e, SymbolicError):
            raise
        raise SymbolicError(f"{core} of symbolic shape values: {e}") from None
    if not isinstance(out, np.ndarray):
        box = np.empty((), dtype=object)
        box[()] = out
        return box
    return out


def _float_div(x, y):
    """True division of a float shape value's elements: a Ratio where it is not whole."""
    if isinstance(x, Ratio) or isinstance(y, (Sym, Ratio)):
        raise SymbolicError(f"({x}) / ({y}) in float shape arithmetic")
    if not isinstance(x, Sym):
        return _whole(x / y)
    if not _is_int(y) or int(y) <= 0:
        raise SymbolicError(f"({x}) / {y}: float shape arithmetic divides by positive whole numbers only")
    return Ratio.of(x, int(y))


def _round(core):
    def f(x):
        if isinstance(x, Ratio):
            return x.num // x.den if core == "floor" else (x.num + x.den - 1) // x.den
        if isinstance(x, Sym) or _is_int(x):
            return x
        return int(np.floor(x) if core == "floor" else np.ceil(x))
    return f


def _fold(core, attrs, arrays, bounds, dtype="int64"):
    if core not in FOLDABLE:
        raise SymbolicError(f"{core} is not evaluated on symbolic shape values")
    a = attrs
    if dtype in _FLOAT_TARGETS and core == "div":
        return _elementwise(_float_div, *arrays)
    if core in ("ceil", "floor"):
        return _elementwise(_round(core), arrays[0])
    if core == "reshape":
        return arrays[0].reshape(tuple(int(d) for d in a["shape"]))
    if core == "concat":
        return np.concatenate([x if x.dtype == object else _obj(x) for x in arrays], axis=a["axis"])
    if core == "gather":
        x, idx = arrays
        ax = a["axis"] % x.ndim
        if idx.dtype == object:
            raise SymbolicError("gather at symbolic indices")
        n = x.shape[ax]
        return np.take(x, np.where(idx < 0, idx + n, idx), axis=ax)
    if core == "slice":
        sl = tuple(slice(s, e if e >= 0 else None, p) for s, e, p in zip(a["starts"], a["ends"], a["steps"]))
        return arrays[0][sl]
    if core == "transpose":
        return np.ascontiguousarray(np.transpose(arrays[0], a["perm"]))
    if core == "broadcast_to":
        return np.broadcast_to(arrays[0], tuple(int(d) for d in a["shape"])).copy()
    if core == "cast":
        if a["to"] in _FLOAT_TARGETS:       # whole dimensions, exact in float up to 2**24
            return _obj(arrays[0]) if arrays[0].dtype != object else arrays[0]
        if a["to"] not in _INT_TARGETS:
            raise SymbolicError(f"a symbolic dimension cast to {a['to']}")

        def whole(x):
            if isinstance(x, Ratio):
                raise SymbolicError(f"({x}) cast to {a['to']} in shape arithmetic")
            return int(x) if isinstance(x, float) else x        # (truncation, as a cast does)
        return _elementwise(whole, arrays[0])
    if core == "reduce_prod":
        x = arrays[0]
        if tuple(a["axes"]) not in ((), tuple(range(x.ndim))) or a["keepdims"] and x.ndim:
            raise SymbolicError("a partial product of symbolic dimensions")
        out = 1
        for d in x.reshape(-1):
            out = out * d
        return np.array(out, dtype=object)
    if core == "where":
        c, x, y = arrays
        if c.dtype == object:
            raise SymbolicError("where with a symbolic condition")
        return _elementwise(lambda cc, xx, yy: xx if cc else yy, c.astype(bool), x, y)
    binary = {
        "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": _div,
        "maximum": lambda x, y: dim_max(x, y, bounds), "minimum": lambda x, y: dim_min(x, y, bounds),
    }
    if core in binary:
        return _elementwise(binary[core], *arrays)
    if core in ("neg", "abs"):
        if core == "abs":
            def absolute(x):
                r = compare(x, ">=", 0)
                if r is None:
                    raise SymbolicError(f"the sign of {x} is only known at run time")
                return x if r else -x
            return _elementwise(absolute, arrays[0])
        return _elementwise(lambda x: -x, arrays[0])
    out = _elementwise(_cmp(core), *arrays)
    return out.astype(bool)

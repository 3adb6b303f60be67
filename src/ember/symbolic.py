"""Symbolic dimensions: exact integer expressions over named, non-negative sizes.

A dimension known only at run time is a :class:`Sym`: a polynomial with integer coefficients
whose atoms are *symbols* (``batch``, ``seq``) and floor divisions or remainders of such
polynomials by positive constants (``(seq + 7)//8``, ``seq%8``).  Every symbol stands for an
integer >= 0.  The algebra is exact and canonical: equal expressions have equal forms, so
``batch*seq*768 == 768*seq*batch`` and ``(seq*768)//12 == 64*seq``; an expression without
symbols is a plain ``int`` (the operations return ``int | Sym``).

What cannot be known at compile time is never guessed: the truth value of a comparison that
depends on the symbols, ``int(sym)`` or a division that is not exact raise
:class:`SymbolicError` (a ``TypeError``, so a type rule that meets it reports a type error
naming its node).  :func:`compare` decides comparisons, optionally with upper bounds of the
symbols.

The text form (``str(sym)``) is what graphs, dumps and artifact metadata show, and
:func:`parse` reads it back: ``768*batch*seq``, ``seq - 1``, ``(seq + 7)//8``.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Union

__all__ = ["Sym", "SymbolicError", "Dim", "symbol", "parse", "as_dim", "is_symbolic", "evaluate",
           "compare", "dim_range", "dim_max", "dim_min", "product", "symbols_of", "exact_div",
           "is_identifier"]


class SymbolicError(TypeError):
    """An operation needs a value that symbolic dimensions only have at run time."""


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_identifier(name: str) -> bool:
    """Whether ``name`` can be a symbol (letters, digits and underscores, not starting with a digit)."""
    return bool(_IDENT.fullmatch(name))


# A monomial is a sorted tuple of atoms (a power repeats its atom); an atom is a symbol name
# (str) or ("//" | "%", numerator Sym, divisor int).

def _atom_key(a):
    return (0, a) if isinstance(a, str) else (1, a[0], a[1]._key, a[2])


def _mono_key(m):
    return (-len(m), tuple(_atom_key(a) for a in m))


class Sym:
    """An integer expression over symbols (never a constant: those are ints)."""

    __slots__ = ("_terms", "_const", "_key", "_hash", "_text")

    def __init__(self, terms: dict, const: int):
        items = sorted(((m, c) for m, c in terms.items() if c), key=lambda mc: _mono_key(mc[0]))
        self._terms = tuple(items)
        self._const = int(const)
        self._key = (tuple((tuple(_atom_key(a) for a in m), c) for m, c in self._terms), self._const)
        self._hash = hash(("Sym", self._key))
        self._text = None

    # -- construction --------------------------------------------------------------------

    @staticmethod
    def _make(terms: dict, const: int) -> "int | Sym":
        terms = {m: c for m, c in terms.items() if c}
        if not terms:
            return int(const)
        return Sym(terms, const)

    @staticmethod
    def _of(x) -> "Sym | int":
        if isinstance(x, Sym):
            return x
        if isinstance(x, bool):
            raise SymbolicError(f"a dimension cannot be a bool ({x!r})")
        if isinstance(x, int):
            return x
        if isinstance(x, str):
            return parse(x)
        try:
            import numpy as np

            if isinstance(x, np.integer):
                return int(x)
        except ImportError:  # pragma: no cover
            pass
        return NotImplemented

    @staticmethod
    def _parts(x) -> tuple[dict, int]:
        if isinstance(x, Sym):
            return dict(x._terms), x._const
        return {}, int(x)

    # -- arithmetic ----------------------------------------------------------------------

    def __add__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        ta, ka = Sym._parts(self)
        tb, kb = Sym._parts(o)
        for m, c in tb.items():
            ta[m] = ta.get(m, 0) + c
        return Sym._make(ta, ka + kb)

    __radd__ = __add__

    def __neg__(self):
        return Sym._make({m: -c for m, c in self._terms}, -self._const)

    def __pos__(self):
        return self

    def __sub__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        return self + (-o)

    def __rsub__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        return (-self) + o

    def __mul__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        ta, ka = Sym._parts(self)
        tb, kb = Sym._parts(o)
        out: dict = {}
        for ma, ca in list(ta.items()) + [((), ka)]:
            for mb, cb in list(tb.items()) + [((), kb)]:
                m = tuple(sorted(ma + mb, key=_atom_key))
                out[m] = out.get(m, 0) + ca * cb
        const = out.pop((), 0)
        return Sym._make(out, const)

    __rmul__ = __mul__

    def __floordiv__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        if isinstance(o, Sym):
            q = exact_div(self, o)
            if q is None:
                raise SymbolicError(f"({self}) // ({o}) is not an exact division of symbolic dimensions")
            return q
        return _floordiv(self, o)

    def __rfloordiv__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        if o == 0:
            return 0
        raise SymbolicError(f"{o} // ({self}) divides by a symbolic dimension")

    __truediv__ = __floordiv__

    def __mod__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        if isinstance(o, Sym):
            if exact_div(self, o) is not None:
                return 0
            raise SymbolicError(f"({self}) % ({o}) takes a remainder by a symbolic dimension")
        return _mod(self, o)

    def __rmod__(self, other):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        if o == 0:
            return 0
        raise SymbolicError(f"{o} % ({self}) takes a remainder by a symbolic dimension")

    # -- comparisons: decided when the algebra alone can tell, an error otherwise ----------

    def __eq__(self, other):
        if isinstance(other, Sym):
            return self._key == other._key
        if isinstance(other, str):
            try:
                o = parse(other)
            except SymbolicError:
                return False
            return isinstance(o, Sym) and self._key == o._key
        return False   # an int: a Sym is never a constant

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return self._hash

    def _cmp(self, other, op):
        o = Sym._of(other)
        if o is NotImplemented:
            return NotImplemented
        r = compare(self, op, o)
        if r is None:
            raise SymbolicError(f"whether {self} {op} {o} is only known at run time")
        return r

    def __lt__(self, other): return self._cmp(other, "<")
    def __le__(self, other): return self._cmp(other, "<=")
    def __gt__(self, other): return self._cmp(other, ">")
    def __ge__(self, other): return self._cmp(other, ">=")

    def __bool__(self):
        raise SymbolicError(f"the truth value of the symbolic dimension {self} is only known at run time")

    def __int__(self):
        raise SymbolicError(f"the symbolic dimension {self} has no value at compile time")

    __index__ = __int__

    # -- inspection ----------------------------------------------------------------------

    @property
    def terms(self):
        """((monomial, coefficient), ...) in canonical order; a monomial is a tuple of atoms."""
        return self._terms

    @property
    def const(self) -> int:
        return self._const

    @property
    def name(self) -> str | None:
        """The symbol's name when the expression is one symbol alone (``seq``), else None."""
        if len(self._terms) == 1 and not self._const:
            (mono, coef), = self._terms
            if coef == 1 and len(mono) == 1 and isinstance(mono[0], str):
                return mono[0]
        return None

    def symbols(self) -> set[str]:
        out: set[str] = set()
        for m, _ in self._terms:
            for a in m:
                if isinstance(a, str):
                    out.add(a)
                else:
                    out |= a[1].symbols()
        return out

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The value with every symbol bound by ``env`` (name -> int)."""
        total = self._const
        for m, c in self._terms:
            v = c
            for a in m:
                v *= _atom_value(a, env)
            total += v
        return total

    def substitute(self, env: Mapping[str, "int | Sym"]) -> "int | Sym":
        """Replace the symbols named in ``env`` by values or expressions."""
        total: int | Sym = self._const
        for m, c in self._terms:
            v: int | Sym = c
            for a in m:
                if isinstance(a, str):
                    v = v * (env[a] if a in env else Sym({(a,): 1}, 0))
                else:
                    inner = a[1].substitute(env)
                    v = v * (inner // a[2] if a[0] == "//" else inner % a[2])
            total = total + v
        return total

    # -- text ------------------------------------------------------------------------------

    def __str__(self) -> str:
        if self._text is None:
            parts: list[tuple[int, str]] = []
            for m, c in self._terms:
                mag = abs(c)
                alone = len(m) == 1 and c == 1
                body = "*".join(_atom_text(a) if alone or isinstance(a, str) else f"({_atom_text(a)})" for a in m)
                parts.append((c, body if mag == 1 else f"{mag}*{body}"))
            if self._const:
                parts.append((self._const, str(abs(self._const))))
            out = ""
            for k, (c, text) in enumerate(parts):
                if k == 0:
                    out = ("-" if c < 0 else "") + text
                else:
                    out += (" - " if c < 0 else " + ") + text
            self._text = out
        return self._text

    def __repr__(self) -> str:
        return f"Sym({str(self)!r})"

    def __reduce__(self):
        return (parse, (str(self),))


Dim = Union[int, Sym]


def _atom_text(a) -> str:
    if isinstance(a, str):
        return a
    inner = a[1]
    s = str(inner)
    simple = isinstance(inner, Sym) and len(inner.terms) == 1 and not inner.const and inner.terms[0][1] == 1 \
        and len(inner.terms[0][0]) == 1
    return f"{s if simple else '(' + s + ')'}{a[0]}{a[2]}"


def _atom_value(a, env) -> int:
    if isinstance(a, str):
        try:
            return int(env[a])
        except KeyError:
            raise SymbolicError(f"no value for the symbol '{a}'") from None
    n = a[1].evaluate(env)
    return n // a[2] if a[0] == "//" else n % a[2]


def _floordiv(a: Sym, c: int) -> "int | Sym":
    if c <= 0:
        raise SymbolicError(f"({a}) // {c}: symbolic dimensions are divided by positive constants only")
    if c == 1:
        return a
    q_terms, r_terms = {}, {}
    for m, coef in a.terms:
        q_terms[m], r_terms[m] = divmod(coef, c)
    q = Sym._make(q_terms, a.const // c)
    r = Sym._make(r_terms, a.const % c)
    if isinstance(r, int):
        return q                                   # r in [0, c): floor(r / c) == 0
    lo, hi = dim_range(r)
    if hi is not None and hi < c:
        return q
    if not r.const and len(r.terms) == 1 and r.terms[0][1] == 1 and len(r.terms[0][0]) == 1 \
            and r.terms[0][0][0][0] == "//":
        _, inner, k = r.terms[0][0][0]          # (x // k) // c == x // (k*c): one canonical form
        return q + _floordiv(Sym._of(inner), k * c)
    return q + Sym({(("//", r, c),): 1}, 0)


def _mod(a: Sym, c: int) -> "int | Sym":
    if c <= 0:
        raise SymbolicError(f"({a}) % {c}: symbolic dimensions take remainders by positive constants only")
    if c == 1:
        return 0
    r = Sym._make({m: coef % c for m, coef in a.terms}, a.const % c)
    if isinstance(r, int):
        return r
    # the remainder of a negated remainder (padding to whole windows: (c - x % c) % c) is
    # c*ceil(x / c) - x, so that x plus it is a whole multiple of c
    s = Sym._make({m: (-coef) % c for m, coef in a.terms}, (-a.const) % c)
    if isinstance(s, Sym) and not s.const and len(s.terms) == 1 and s.terms[0][1] == 1 \
            and len(s.terms[0][0]) == 1 and s.terms[0][0][0][0] == "%" and s.terms[0][0][0][2] == c:
        return _ceil_gap(Sym._of(s.terms[0][0][0][1]), c)          # s is y % c: y will do
    lo, hi = dim_range(r)
    if hi is not None and hi < c:
        return r
    return Sym({(("%", r, c),): 1}, 0)


def _ceil_gap(s: Sym, c: int) -> "int | Sym":
    """(-s) mod c for s >= 0, as c*ceil(s / c) - s."""
    return c * _floordiv(s + (c - 1), c) - s


def exact_div(a: "int | Sym", b: "int | Sym") -> "int | Sym | None":
    """``a / b`` when it is exact for every value of the symbols (b a nonzero monomial, such
    as ``64*seq``, or a sum such as ``16*past + 16*seq`` that divides ``a`` by a monomial
    quotient), else None."""
    if isinstance(b, int):
        if b == 0:
            return None
        if isinstance(a, int):
            return a // b if a % b == 0 else None
        if a.const % b or any(c % b for _, c in a.terms):
            return None
        return Sym._make({m: c // b for m, c in a.terms}, a.const // b)
    if len(b.terms) != 1 or b.const:
        return _monomial_quotient(a, b)
    (bm, bc), = b.terms
    if isinstance(a, int):
        return 0 if a == 0 else None
    if a.const:
        return None
    out = {}
    for m, c in a.terms:
        rest = list(m)
        for atom in bm:
            for k, x in enumerate(rest):
                if _atom_key(x) == _atom_key(atom):
                    del rest[k]
                    break
            else:
                return None
        if c % bc:
            return None
        out[tuple(rest)] = out.get(tuple(rest), 0) + c // bc
    const = out.pop((), 0)
    return Sym._make(out, const)


def _monomial_quotient(a: "int | Sym", b: Sym) -> "int | Sym | None":
    """The monomial ``q`` with ``q * b == a`` for a divisor ``b`` of several terms, else None:
    ``q`` is one of ``a``'s terms divided by one of ``b``'s, checked by multiplying back."""
    if isinstance(a, int):
        return 0 if a == 0 else None
    first = Sym._make(dict([a.terms[0]]), 0)
    for m, c in list(b.terms) + ([((), b.const)] if b.const else []):
        q = exact_div(first, Sym._make({m: c}, 0) if m else c)
        if q is not None and not (isinstance(q, int) and q == 0) and q * b == a:
            return q
    return None


# ---- constructors and helpers ---------------------------------------------------------------

def symbol(name: str) -> Sym:
    """The symbol called ``name`` (an identifier)."""
    if not isinstance(name, str) or not is_identifier(name):
        raise SymbolicError(f"{name!r} is not a symbol name (letters, digits and underscores)")
    return Sym({(name,): 1}, 0)


def as_dim(x) -> "int | Sym":
    """A dimension from an int, a Sym or the text of one (``"batch"``, ``"seq*64"``)."""
    o = Sym._of(x)
    if o is NotImplemented:
        raise SymbolicError(f"{x!r} is not a dimension (an int, a symbol or an expression of symbols)")
    return o


def is_symbolic(x) -> bool:
    return isinstance(x, Sym)


def symbols_of(dims: Iterable) -> set[str]:
    out: set[str] = set()
    for d in dims:
        if isinstance(d, Sym):
            out |= d.symbols()
    return out


def evaluate(x: "int | Sym", env: Mapping[str, int]) -> int:
    return x.evaluate(env) if isinstance(x, Sym) else int(x)


def product(dims: Iterable) -> "int | Sym":
    out: int | Sym = 1
    for d in dims:
        out = out * d
    return out


def dim_range(x: "int | Sym", bounds: Mapping[str, int] | None = None) -> tuple[int, int | None]:
    """Inclusive (lowest, highest) value of ``x`` with every symbol in [0, bounds[name]]
    (unbounded above when not given: highest is then None unless the form bounds it).  The
    range is safe, not always tight: the true values lie within it."""
    if isinstance(x, int):
        return x, x
    lo: int | None = x.const
    hi: int | None = x.const
    for m, c in x.terms:
        mlo, mhi = 1, 1
        for a in m:
            alo, ahi = _atom_range(a, bounds)
            mlo *= alo
            mhi = None if (mhi is None or ahi is None) else mhi * ahi
        if c > 0:
            lo = None if lo is None else lo + c * mlo
            hi = None if (hi is None or mhi is None) else hi + c * mhi
        else:
            hi = None if hi is None else hi + c * mlo
            lo = None if (lo is None or mhi is None) else lo + c * mhi
    return (lo if lo is not None else -(1 << 62)), hi


def _atom_range(a, bounds):
    if isinstance(a, str):
        b = (bounds or {}).get(a)
        return 0, (int(b) if b is not None else None)
    lo, hi = dim_range(a[1], bounds)
    lo = max(lo, 0)
    if a[0] == "//":
        return lo // a[2], (None if hi is None else hi // a[2])
    if hi is not None and hi < a[2]:
        return lo, hi
    return 0, a[2] - 1


_OPS = {"<": lambda lo, hi: True if hi is not None and hi < 0 else False if lo >= 0 else None,
        "<=": lambda lo, hi: True if hi is not None and hi <= 0 else False if lo > 0 else None,
        ">": lambda lo, hi: True if lo > 0 else False if hi is not None and hi <= 0 else None,
        ">=": lambda lo, hi: True if lo >= 0 else False if hi is not None and hi < 0 else None,
        "==": lambda lo, hi: True if lo == hi == 0 else False if lo > 0 or (hi is not None and hi < 0) else None,
        "!=": lambda lo, hi: False if lo == hi == 0 else True if lo > 0 or (hi is not None and hi < 0) else None}


def compare(a: "int | Sym", op: str, b: "int | Sym", bounds: Mapping[str, int] | None = None) -> bool | None:
    """Whether ``a op b`` holds for every value of the symbols (each in [0, bounds[name]] when
    bounded): True, False, or None when it depends on their values."""
    d = as_dim(a) - as_dim(b)
    if isinstance(d, int):
        return _OPS[op](d, d)
    if op == "==" or op == "!=":
        # equal forms are equal values; different forms may still coincide for some values
        lo, hi = dim_range(d, bounds)
        return _OPS[op](lo, hi)
    lo, hi = dim_range(d, bounds)
    got = _OPS[op](lo, hi)
    if got is None and op in ("<", "<=", ">", ">="):
        # what must be >= 0 for the comparison to hold (integers: x > 0 is x - 1 >= 0)
        e = {">=": d, ">": d - 1, "<=": -d, "<": -d - 1}[op]
        if _nonnegative(e, bounds, 4):
            return True
    return got


def _nonnegative(d: "int | Sym", bounds, depth: int) -> bool:
    """Whether ``d`` >= 0 for every value of the symbols, with its floor divisions ``e // k``
    bounded by ``e / k`` (``(e - k + 1) / k`` from below): k * d is at least ``d`` with the
    atom replaced so, times k (``S - S//3 >= 0`` as ``3*S - S >= 0``).  Safe, not complete."""
    if isinstance(d, int):
        return d >= 0
    if dim_range(d, bounds)[0] >= 0:
        return True
    if depth == 0:
        return False
    for m, c in d.terms:
        if len(m) == 1 and not isinstance(m[0], str) and m[0][0] == "//":
            _, e, k = m[0]
            rest = d - c * Sym({m: 1}, 0)
            return _nonnegative(k * rest + c * (e if c < 0 else e - k + 1), bounds, depth - 1)
    return False


def dim_max(a, b, bounds: Mapping[str, int] | None = None) -> "int | Sym":
    """The larger of two dimensions when the bounds decide it (SymbolicError otherwise)."""
    r = compare(a, ">=", b, bounds)
    if r is None:
        raise SymbolicError(f"max({a}, {b}) depends on the values of the symbols")
    return as_dim(a) if r else as_dim(b)


def dim_min(a, b, bounds: Mapping[str, int] | None = None) -> "int | Sym":
    """The smaller of two dimensions when the bounds decide it (SymbolicError otherwise)."""
    r = compare(a, "<=", b, bounds)
    if r is None:
        raise SymbolicError(f"min({a}, {b}) depends on the values of the symbols")
    return as_dim(a) if r else as_dim(b)


def failed_check(checks, env: Mapping[str, int]) -> str | None:
    """The first of ``checks`` (``Graph.checks``: (dim, op, what), ``op`` "==" for dim == 0 or
    ">=" for dim >= 0) that the symbols' values ``env`` fail, described; None when all hold."""
    for dim, op, what in checks:
        v = evaluate(dim, env)
        if not (v == 0 if op == "==" else v >= 0):
            return f"{what} ({dim} {op} 0 fails: it is {v})"
    return None


# ---- parsing --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*/%()]))")


def parse(text: str) -> "int | Sym":
    """Read the text form of a dimension: integers, symbols, + - * // % and parentheses."""
    if not isinstance(text, str):
        raise SymbolicError(f"expected the text of a dimension, got {text!r}")
    tokens = []
    pos = 0
    text_s = text.rstrip()
    while pos < len(text_s):
        m = _TOKEN.match(text_s, pos)
        if m is None or m.end() == pos:
            raise SymbolicError(f"cannot read {text!r} as a dimension (at {text_s[pos:]!r})")
        num, name, op = m.groups()
        tokens.append(("n", int(num)) if num else ("s", name) if name else ("o", op))
        pos = m.end()
    if not tokens:
        raise SymbolicError("an empty dimension")
    k = 0

    def peek():
        return tokens[k] if k < len(tokens) else ("end", None)

    def take():
        nonlocal k
        t = peek()
        k += 1
        return t

    def expr():
        v = term()
        while peek() in (("o", "+"), ("o", "-")):
            op = take()[1]
            w = term()
            v = v + w if op == "+" else v - w
        return v

    def term():
        v = unary()
        while peek()[0] == "o" and peek()[1] in ("*", "//", "/", "%"):
            op = take()[1]
            w = unary()
            if op == "*":
                v = v * w
            elif isinstance(v, int) and isinstance(w, int):
                if w == 0:
                    raise SymbolicError(f"cannot read {text!r} as a dimension: division by zero")
                v = v % w if op == "%" else v // w
            elif isinstance(v, int):           # a number divided by a symbolic dimension
                v = Sym.__rmod__(w, v) if op == "%" else Sym.__rfloordiv__(w, v)
            else:
                v = v % w if op == "%" else v // w
        return v

    def unary():
        if peek() == ("o", "-"):
            take()
            return -unary()
        if peek() == ("o", "+"):
            take()
            return unary()
        kind, val = take()
        if kind == "n":
            return val
        if kind == "s":
            return Sym({(val,): 1}, 0)
        if (kind, val) == ("o", "("):
            v = expr()
            if take() != ("o", ")"):
                raise SymbolicError(f"cannot read {text!r} as a dimension: unbalanced parentheses")
            return v
        raise SymbolicError(f"cannot read {text!r} as a dimension (unexpected {val!r})")

    v = expr()
    if k != len(tokens):
        raise SymbolicError(f"cannot read {text!r} as a dimension (unexpected {tokens[k][1]!r})")
    return v


def bind(dims, shape, env: dict, what: str = "the tensor") -> None:
    """Bind the symbols of declared ``dims`` from a concrete ``shape`` into ``env`` (name ->
    int), checking every dimension against what is already known.  A dimension that is an
    expression is checked once its symbols are bound.  Raises SymbolicError naming the first
    dimension that disagrees."""
    dims, shape = tuple(dims), tuple(int(s) for s in shape)
    if len(dims) != len(shape):
        raise SymbolicError(f"{what} has rank {len(shape)}, expected {len(dims)}")
    pending = []
    for k, (d, n) in enumerate(zip(dims, shape)):
        if isinstance(d, int):
            if d != n:
                raise SymbolicError(f"dimension {k} of {what} is {n}, expected {d}")
        elif d.name is not None:
            name = d.name
            if name in env and env[name] != n:
                raise SymbolicError(f"dimension {k} of {what} is {n}, but '{name}' is {env[name]} "
                                    f"(from an earlier dimension)")
            env[name] = n
        else:
            pending.append((k, d, n))
    for k, d, n in pending:
        if d.symbols() <= set(env) and d.evaluate(env) != n:
            raise SymbolicError(f"dimension {k} of {what} is {n}, but {d} is {d.evaluate(env)}")

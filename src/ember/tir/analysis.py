"""Rewriting and analysing loop-IR expressions: substitution and linear forms."""

from __future__ import annotations

from typing import Any, Callable

from .expr import (INDEX, BinOp, Broadcast, Call, Cast, Const, Expr, IndexCheck, Load, Not, Ramp, Select, Shuffle, SizeVar, Var, binop,
                   is_standard_dtype)


def rebuild(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """Apply ``f`` to the children of ``e`` and rebuild it (folding constants again).

    Expression kinds defined by higher layers (tensor reads in ``ember.te``) take part by
    defining ``_rebuild(f)``."""
    t = type(e)
    if t is BinOp:          # (the most common kinds first, by exact type: this runs per node)
        a, b = f(e.a), f(e.b)
        return e if (a is e.a and b is e.b) else binop(e.op, a, b)
    if t is Const or t is Var or t is SizeVar:
        return e
    hook = getattr(e, "_rebuild", None)
    if hook is not None:
        return hook(f)
    if isinstance(e, BinOp):
        a, b = f(e.a), f(e.b)
        return e if (a is e.a and b is e.b) else binop(e.op, a, b)
    if isinstance(e, Not):
        a = f(e.a)
        if isinstance(a, Const):
            return Const(not a.value, "bool")
        return e if a is e.a else Not(a)
    if isinstance(e, Cast):
        a = f(e.a)
        if isinstance(a, Const) and is_standard_dtype(a.dtype) and is_standard_dtype(e.dtype):
            return Const(a.value, e.dtype)
        return e if a is e.a else Cast(e.dtype, a, e.saturate, e.round_mode)
    if isinstance(e, Call):
        args = tuple(f(x) for x in e.args)
        return e if all(x is y for x, y in zip(args, e.args)) else Call(e.fn, args, e.dtype)
    if isinstance(e, IndexCheck):
        i, n = f(e.index), f(e.extent)
        return e if (i is e.index and n is e.extent) else IndexCheck(i, n, e.what, e.node, e.op)
    if isinstance(e, Select):
        c = f(e.cond)
        if isinstance(c, Const):          # only the branch taken is rewritten
            return f(e.t) if c.value else f(e.f)
        t, fl = f(e.t), f(e.f)
        return e if (c is e.cond and t is e.t and fl is e.f) else Select(c, t, fl)
    if isinstance(e, Load):
        i = f(e.index)
        return e if i is e.index else Load(e.buffer, i, lanes=e.lanes)
    if isinstance(e, Ramp):
        b = f(e.base)
        return e if b is e.base else Ramp(b, e.stride, e.lanes)
    if isinstance(e, Broadcast):
        v = f(e.value)
        return e if v is e.value else Broadcast(v, e.lanes)
    return e


def substitute(e: Expr, mapping: dict) -> Expr:
    """Replace variables (keys, by identity) with expressions.  A subexpression shared by
    several parents (the expressions of unrolled Winograd transforms are DAGs) is rewritten
    once and stays shared."""
    if not mapping:
        return e
    memo: dict[int, Expr] = {}

    def go(x: Expr) -> Expr:
        if isinstance(x, Var):
            return mapping.get(x, x)
        got = memo.get(id(x))
        if got is None:
            got = memo[id(x)] = rebuild(x, go)
        return got

    try:
        return go(e)
    finally:
        del go      # the closure refers to itself: freed now, not by the cycle collector


def uses_var(e: Expr, v: Var) -> bool:
    found = False
    seen: set[int] = set()

    def go(x: Expr) -> Expr:
        nonlocal found
        if x is v:
            found = True
        if not found and id(x) not in seen:     # a shared subexpression is looked at once
            seen.add(id(x))
            rebuild(x, go)
        return x

    try:
        go(e)
    finally:
        del go      # (a cycle through the closure otherwise)
    return found


def key(e: Expr):
    """A structural key: equal keys mean the same computation.  Expressions are immutable, so
    a compound expression keeps its key (a DAG's shared parts are keyed once)."""
    if isinstance(e, (Var, Const)):
        return _key(e)
    return kept(e, "_key", _key)


def kept(e: Expr, attr: str, compute: Callable[[Expr], Any]):
    """``compute(e)``, kept on the node as ``attr`` (expressions are immutable) so that asking
    at every node of a DAG takes linear time."""
    d = getattr(e, "__dict__", None)
    if d is None:
        return compute(e)
    got = d.get(attr)
    if got is None:
        got = d[attr] = compute(e)
    return got


def _key(e: Expr, key=key, buffer=id):
    """The structural key of ``e`` with its children's keys by ``key`` and a buffer as
    ``buffer(b)`` (its identity; :func:`_order_of` writes its name, which does not depend on
    where it lies in memory)."""
    if isinstance(e, Var):
        return ("v", e.uid)
    if isinstance(e, Const):
        return ("c", e.value, e.dtype)
    if isinstance(e, BinOp):
        return (e.op, key(e.a), key(e.b))
    if isinstance(e, Load):
        return ("ld", buffer(e.buffer), key(e.index))
    if isinstance(e, Not):
        return ("not", key(e.a))
    if isinstance(e, Cast):
        return ("cast", e.dtype, key(e.a))
    if isinstance(e, Call):
        return ("call", e.fn) + tuple(key(a) for a in e.args)
    if isinstance(e, Select):
        return ("sel", key(e.cond), key(e.t), key(e.f))
    if isinstance(e, Ramp):
        return ("ramp", key(e.base), e.stride, e.lanes)
    if isinstance(e, Broadcast):
        return ("bc", key(e.value), e.lanes)
    if isinstance(e, Shuffle):
        return ("shuf", key(e.a), key(e.b), e.indices)
    return ("obj", id(e))


#: extents of the loops enclosing the expressions being simplified (var uid -> extent); set by
#: :func:`loop_ranges` while a pass walks a kernel
_RANGES: dict[int, int] = {}

#: upper limits of the size variables (symbol name -> largest value) of the kernels being built;
#: set by :class:`size_bounds`.  The runtime refuses inputs beyond them, so ranges derived from
#: them hold whenever a kernel runs.  A size variable without a limit ranges over [0, UNBOUNDED].
_SIZE_BOUNDS: dict[str, int] = {}

#: the sizes the schedules plan for (symbol name -> value): the limits, else the bounds given as
#: hints; never used to prove anything, only to choose tiles (see :func:`planned_extent`)
_SIZE_HINTS: dict[str, int] = {}

#: the upper end of a size variable's range when nothing limits it: it keeps every variable
#: non-negative, and makes no comparison with a real size come out true
UNBOUNDED = 1 << 62

#: what bound() and linear_form() found, by expression id (the expression kept alive beside its
#: result, so that its id is not reused): valid while _RANGES and _SIZE_BOUNDS stay as they are,
#: emptied by _context_changed() whenever they change
_BOUND_MEMO: dict[int, tuple] = {}
_LF_CACHE: dict[int, tuple] = {}
_SIMPLE_CACHE: dict[int, tuple] = {}
_MEMO_LIMIT = 1 << 18


def _cached(cache: dict, e: Expr, compute):
    """``compute(e)``, once per expression while the context holds (``e`` is kept beside its
    result, so that its id is not reused meanwhile)."""
    hit = cache.get(id(e))
    if hit is None:
        if len(cache) > _MEMO_LIMIT:
            cache.clear()
        hit = cache[id(e)] = (e, compute(e))
    return hit[1]


def _context_changed() -> None:
    _BOUND_MEMO.clear()
    _LF_CACHE.clear()
    _SIMPLE_CACHE.clear()


def _set_context(d: dict, new: dict) -> None:
    """Make ``d`` (``_RANGES`` or ``_SIZE_BOUNDS``) equal ``new``; the memos go if it changes."""
    if d != new:
        d.clear()
        d.update(new)
        _context_changed()


class size_bounds:
    """Context manager: analyse kernels knowing each symbol's upper limit (name -> int), and
    schedule them for the planning sizes ``hints`` (name -> int; default: the limits)."""

    def __init__(self, limits: dict, hints: dict | None = None):
        self.limits = {k: int(v) for k, v in limits.items()}
        self.hints = {**{k: int(v) for k, v in (hints or {}).items()}, **self.limits}

    def __enter__(self):
        self.saved = dict(_SIZE_BOUNDS), dict(_SIZE_HINTS)
        _set_context(_SIZE_BOUNDS, {**_SIZE_BOUNDS, **self.limits})
        _SIZE_HINTS.update(self.hints)

    def __exit__(self, *exc):
        _set_context(_SIZE_BOUNDS, self.saved[0])
        _SIZE_HINTS.clear()
        _SIZE_HINTS.update(self.saved[1])


def planned_extent(e) -> int | None:
    """The value an extent takes at the planning sizes of its size variables (their largest
    values where known), or None when that cannot be told; for choosing tiles only."""
    if isinstance(e, int):
        return e
    saved = dict(_SIZE_BOUNDS)
    _set_context(_SIZE_BOUNDS, {**_SIZE_BOUNDS, **_SIZE_HINTS})
    try:
        b = bound(e)
    finally:
        _set_context(_SIZE_BOUNDS, saved)
    return None if b is None or b[1] >= UNBOUNDED else b[1]


def const_value(e) -> int | None:
    """The value of an int or integer constant expression, else None."""
    if isinstance(e, int):
        return e
    if isinstance(e, Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    return None


def upper_bound(e) -> int | None:
    """The largest value an extent (int or expression) can take, or None when unbounded."""
    if isinstance(e, int):
        return e
    b = bound(e)
    return None if b is None or b[1] >= UNBOUNDED else b[1]


def _extent_range(ext) -> int | None:
    """Number of distinct values of a loop variable of extent ``ext`` at most (None: unknown)."""
    if isinstance(ext, int):
        return ext
    if isinstance(ext, Expr):
        b = bound(ext)
        return None if b is None else min(b[1], UNBOUNDED)     # unlimited: still non-negative
    return None


class loop_ranges:
    """Context manager: simplify with ``{var: extent}`` known for the enclosing loops (an extent
    may be an expression of size variables: its upper bound is used)."""

    def __init__(self, ranges: dict):
        self.ranges = {}
        for v, e in ranges.items():
            n = _extent_range(e)
            if n is not None:
                self.ranges[v.uid] = int(n)

    def __enter__(self):
        self.saved = dict(_RANGES)
        _set_context(_RANGES, {**_RANGES, **self.ranges})

    def __exit__(self, *exc):
        _set_context(_RANGES, self.saved)


def bound(e: Expr, ranges: dict | None = None) -> tuple[int, int] | None:
    """Inclusive integer range of ``e``, when it can be told: variables range over ``ranges``
    (var -> (lo, hi)) when given there, else over [0, extent) of their loop."""
    if ranges is None and isinstance(e, BinOp):
        return _cached(_BOUND_MEMO, e, lambda x: _bound(x, None))
    return _bound(e, ranges)


def _bound(e: Expr, ranges: dict | None) -> tuple[int, int] | None:
    if isinstance(e, Const):
        if isinstance(e.value, bool) or not isinstance(e.value, int):
            return None
        return e.value, e.value
    if isinstance(e, Var):
        if ranges is not None and e in ranges:
            return ranges[e]
        if isinstance(e, SizeVar):
            return 0, _SIZE_BOUNDS.get(e.name, UNBOUNDED)
        ext = _RANGES.get(e.uid) or getattr(e, "extent", None)
        if ext is not None and not isinstance(ext, int):
            ext = _extent_range(ext)
        return (0, ext - 1) if ext else None
    if not isinstance(e, BinOp) or e.dtype in ("float16", "bfloat16", "float32", "float64", "bool"):
        return None
    a, b = bound(e.a, ranges), bound(e.b, ranges)
    if e.op in ("div", "mod"):
        if b is not None and b[0] == 0 and b[1] > 0 and a is not None and a[0] >= 0:
            # a non-negative size that may be 0 (a symbolic tile count): code that divides by
            # it runs only where it is positive (a loop of that many tiles), so [1, hi]
            b = (1, b[1])
        if b is None or b[0] <= 0:
            return None           # a divisor that may be zero or negative: no claim
        if e.op == "mod":
            if a is None:
                return None
            if a[0] >= 0:
                return (a[0], a[1]) if a[1] < b[0] else (0, b[1] - 1)
            # C remainder takes the sign of the dividend
            return (max(a[0], -(b[1] - 1)), min(max(a[1], 0), b[1] - 1))
        if a is None:
            return None
        # C division truncates toward zero: monotone in a for a positive divisor
        qs = [_c_div(x, y) for x in a for y in b]
        return min(qs), max(qs)
    if a is None or b is None:
        return None
    if e.op == "add":
        return a[0] + b[0], a[1] + b[1]
    if e.op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if e.op == "mul":
        c = [x * y for x in a for y in b]
        return min(c), max(c)
    if e.op == "max":
        return max(a[0], b[0]), max(a[1], b[1])
    if e.op == "min":
        return min(a[0], b[0]), min(a[1], b[1])
    return None


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


# A linear form maps term keys to [atom expression, coefficient]; atoms are variables or
# non-affine subexpressions (kept whole so that equal ones cancel).


def linear_form(e: Expr) -> tuple[dict, int] | None:
    """``e`` as (terms, constant) if it is an index expression (int64); None for other dtypes
    (integer data of other widths keeps its own arithmetic: it wraps at its width).

    Index expressions are DAGs (a symbolic size or an offset shared by many terms): each
    subexpression is formed once while the loop ranges and size limits stay the same (a tree
    walk was exponential in the depth of the sharing), and each use gets its own copy of the
    terms, which callers may change."""
    lf = _cached(_LF_CACHE, e, _linear_form)
    return None if lf is None else ({k: [x, c] for k, (x, c) in lf[0].items()}, lf[1])


def _linear_form(e: Expr) -> tuple[dict, int] | None:
    if e.dtype != INDEX or isinstance(e, (Ramp, Broadcast)):
        return None
    if isinstance(e, Const):
        return {}, int(e.value)
    if isinstance(e, BinOp) and e.op in ("add", "sub", "mul"):
        la, lb = linear_form(e.a), linear_form(e.b)
        if la is None or lb is None:
            return None
        (ta, ka), (tb, kb) = la, lb
        if e.op == "mul":
            if not ta:
                return {k: [x, c * ka] for k, (x, c) in tb.items() if c * ka}, ka * kb
            if not tb:
                return {k: [x, c * kb] for k, (x, c) in ta.items() if c * kb}, ka * kb
            if _has_size_var(ta) or _has_size_var(tb):
                return _poly_product(ta, ka, tb, kb)
            atom = binop("mul", from_linear_form(ta, ka), from_linear_form(tb, kb))
            return {key(atom): [atom, 1]}, 0
        sign = 1 if e.op == "add" else -1
        out = {k: [x, c] for k, (x, c) in ta.items()}
        _accumulate(out, tb, sign)
        merged, extra = _merge_divmod(out)
        return merged, ka + sign * kb + extra
    if isinstance(e, BinOp) and e.op in ("div", "mod") and isinstance(e.b, Const) and e.b.value > 0:
        r = _divmod_form(e)
        if r is not None:
            return r
    if isinstance(e, BinOp) and e.op in ("div", "mod") and isinstance(e.b, SizeVar):
        r = _size_divmod_form(e)
        if r is not None:
            return r
    atom = e if isinstance(e, Var) else rebuild(e, simplify_index)
    return {key(atom): [atom, 1]}, 0


def _has_size_var(terms: dict) -> bool:
    return any(_factors(x) and any(isinstance(f, SizeVar) for f in _factors(x)) for x, _ in terms.values())


def _factors(x: Expr) -> list:
    """The factors of a product atom (the atom itself when it is no product)."""
    if isinstance(x, BinOp) and x.op == "mul" and x.dtype not in ("float16", "bfloat16", "float32", "float64", "bool"):
        return _factors(x.a) + _factors(x.b)
    return [x]


def _poly_product(ta: dict, ka: int, tb: dict, kb: int) -> tuple[dict, int]:
    """(sum ta + ka) * (sum tb + kb) multiplied out, each product of atoms with its factors in a
    canonical order: products of symbolic sizes (``batch * seq``) then cancel and combine
    however the index arithmetic wrote them."""
    out: dict = {}
    a_items = [(x, c) for x, c in ta.values()] + ([(None, ka)] if ka else [])
    b_items = [(x, c) for x, c in tb.values()] + ([(None, kb)] if kb else [])
    const = 0
    for xa, ca in a_items:
        for xb, cb in b_items:
            if xa is None and xb is None:
                const += ca * cb
                continue
            fs = (_factors(xa) if xa is not None else []) + (_factors(xb) if xb is not None else [])
            fs.sort(key=lambda f: repr(key(f)))
            atom = fs[0]
            for f in fs[1:]:
                atom = BinOp("mul", atom, f, atom.dtype)
            k = key(atom)
            if k in out:
                out[k][1] += ca * cb
            else:
                out[k] = [atom, ca * cb]
    return {k: v for k, v in out.items() if v[1]}, const


def _accumulate(out: dict, terms: dict, scale: int) -> None:
    for k, (x, c) in terms.items():
        if k in out:
            out[k][1] += scale * c
        else:
            out[k] = [x, scale * c]


def _merge_divmod(terms: dict) -> tuple[dict, int]:
    """Put ``(a div c) * c * m + (a mod c) * m`` back together as ``a * m`` (C's division and
    remainder satisfy ``(a / c) * c + a % c == a`` for every sign), as fusing a loop and taking
    it apart again produces."""
    terms = {k: v for k, v in terms.items() if v[1]}
    extra = 0
    changed = True
    while changed:
        changed = False
        for km, (xm, cm) in list(terms.items()):
            if not (isinstance(xm, BinOp) and xm.op == "mod" and isinstance(xm.b, Const) and xm.b.value > 0):
                continue
            kd = ("div",) + km[1:]
            if kd not in terms or terms[kd][1] != cm * xm.b.value:
                continue
            lf = linear_form(xm.a)
            if lf is None:
                continue
            del terms[km], terms[kd]
            _accumulate(terms, lf[0], cm)
            extra += cm * lf[1]
            terms = {k: v for k, v in terms.items() if v[1]}
            changed = True
            break
    return terms, extra


def _divmod_form(e: BinOp):
    c = e.b.value
    lf = linear_form(e.a)
    if lf is None:
        return None
    terms, k = lf
    whole = bound(from_linear_form(terms, k))
    if whole is None or whole[0] < 0:
        return None
    q_terms = {kk: [x, co // c] for kk, (x, co) in terms.items() if co % c == 0}
    r_terms = {kk: [x, co] for kk, (x, co) in terms.items() if co % c != 0}
    rest = from_linear_form(r_terms, k % c)
    rb = bound(rest)
    if rb is None or rb[0] < 0 or rb[1] >= c:
        return None
    if e.op == "div":
        return q_terms, k // c
    return linear_form(rest) if r_terms else ({}, k % c)


def _size_divmod_form(e: BinOp):
    """``(q * v + r) div v`` and ``mod v`` for a size variable ``v`` when ``r`` is provably in
    [0, v): a loop variable of extent ``v``, or a remainder by ``v`` (what a reshape that
    merges or splits a symbolic dimension leaves)."""
    v = e.b
    lf = linear_form(e.a)
    if lf is None:
        return None
    terms, k = lf
    quotient: dict = {}
    q_const = 0
    rest = []
    for x, c in terms.values():
        fs = _factors(x)
        if any(f is v for f in fs):
            fs = list(fs)
            fs.remove(next(f for f in fs if f is v))
            if not fs:
                q_const += c
                continue
            atom = fs[0]
            for f in fs[1:]:
                atom = BinOp("mul", atom, f, atom.dtype)
            kk = key(atom)
            if kk in quotient:
                quotient[kk][1] += c
            else:
                quotient[kk] = [atom, c]
        else:
            rest.append((x, c))
    if k or len(rest) > 1:
        return None
    if rest:
        x, c = rest[0]
        below_v = (c == 1 and ((isinstance(x, Var) and getattr(x, "extent", None) is v)
                               or (isinstance(x, BinOp) and x.op == "mod" and x.b is v)))
        if not below_v:
            return None
    quotient = {kk: t for kk, t in quotient.items() if t[1]}
    qb = bound(from_linear_form(quotient, q_const))
    if qb is None or qb[0] < 0:
        return None                 # C division truncates: exact only for a non-negative quotient
    if e.op == "div":
        return quotient, q_const
    if not rest:
        return {}, 0
    x, _ = rest[0]
    return {key(x): [x, 1]}, 0


def from_linear_form(terms: dict, const: int) -> Expr:
    out: Expr | None = None
    for _, (x, c) in sorted(terms.items(), key=lambda kv: _order(kv[1][0])):
        term = x if c == 1 else binop("mul", x, Const(c))
        out = term if out is None else binop("add", out, term)
    if out is None:
        return Const(const)
    return binop("add", out, Const(const)) if const else out


def _order(x: Expr):
    """The sort key of a term's atom: variables by creation, small atoms by their structure;
    large ones (TFLite's requantization in int64 arithmetic: the text of a shared DAG's key
    grows exponentially with its depth) after those, in the order met (the sort is stable)."""
    if isinstance(x, Var):
        return (0, x.uid)
    return kept(x, "_order", _order_of)


#: atoms of at most this many nodes (as a tree) sort by their structure
_ORDER_NODES = 256


def _order_of(x: Expr):
    return (1, repr(_named_key(x))) if _tree_size(x) <= _ORDER_NODES else (2, "")


def _named_key(e: Expr):
    """``key(e)`` with buffers by name: the order of terms (and so the C) is the same in every
    process."""
    return _key(e, _named_key, lambda b: b.name)


def _tree_size(e: Expr) -> int:
    """The number of nodes of ``e`` as a tree, counted up to just past ``_ORDER_NODES``."""
    if isinstance(e, (Var, Const)):
        return 1
    return kept(e, "_tree_size", _count_tree)


def _count_tree(e: Expr) -> int:
    n = 1

    def add(c: Expr) -> Expr:
        nonlocal n
        if n <= _ORDER_NODES:
            n += _tree_size(c)
        return c

    rebuild(e, add)
    return min(n, _ORDER_NODES + 1)


def simplify_index(e: Expr) -> Expr:
    """Normalize an integer expression to ``sum(c_i * atom_i) + k``, cancelling equal atoms and
    removing divisions and remainders that the loop ranges make exact.  Shared subexpressions
    are simplified once while the loop ranges and size limits stay the same."""
    return _simplified(e)


def _simplified(x: Expr) -> Expr:
    return _cached(_SIMPLE_CACHE, x, lambda e: _simplify_index(e, _simplified))


def _simplify_index(e: Expr, recurse) -> Expr:
    lf = linear_form(e)
    if lf is not None:
        return from_linear_form(*lf)
    out = rebuild(e, recurse)
    if isinstance(out, BinOp) and out.op in _DECIDE and out.a.dtype not in _NOT_INT:
        # a comparison of integers that the loop ranges decide (e.g. the padding checks of a
        # loop that never reaches the border) becomes a constant
        d = linear_form(binop("sub", out.a, out.b))
        b = bound(from_linear_form(*d)) if d is not None else None
        if b is not None:
            verdict = _DECIDE[out.op](*b)
            if verdict is not None:
                return Const(verdict, "bool")
    return out


_NOT_INT = ("float16", "bfloat16", "float32", "float64", "bool")

#: comparison of a - b with 0, given a - b in [lo, hi]: True, False, or None (undecided)
_DECIDE = {
    "lt": lambda lo, hi: True if hi < 0 else False if lo >= 0 else None,
    "le": lambda lo, hi: True if hi <= 0 else False if lo > 0 else None,
    "gt": lambda lo, hi: True if lo > 0 else False if hi <= 0 else None,
    "ge": lambda lo, hi: True if lo >= 0 else False if hi < 0 else None,
    "eq": lambda lo, hi: True if lo == hi == 0 else False if lo > 0 or hi < 0 else None,
    "ne": lambda lo, hi: False if lo == hi == 0 else True if lo > 0 or hi < 0 else None,
}


def stride_in(e: Expr, v: Var) -> tuple[int, Expr] | None:
    """If ``e`` is affine in ``v``: (coefficient of v, e with v set to 0); else None."""
    if not uses_var(e, v):
        return 0, e
    lf = linear_form(e)
    if lf is None:
        return None
    terms, k = lf
    c = terms.pop(key(v), [v, 0])[1]
    if any(uses_var(x, v) for x, _ in terms.values()):
        return None
    return c, from_linear_form(terms, k)


def size_vars_of(node) -> list:
    """The size variables a statement or expression reads (loop extents, indices, values and
    the sizes of the buffers it touches), in first-seen order."""
    from .stmt import Allocate, Buffer, For, IfThenElse, PrimFunc, Seq, Store

    found: dict[int, SizeVar] = {}
    seen: dict[int, Expr] = {}      # expressions looked at (kept alive: ids are not reused)

    def ex(e) -> None:
        if e is None or isinstance(e, (int, float)):
            return

        def go(x: Expr) -> Expr:
            if id(x) in seen:       # shared subexpressions (DAGs) are looked at once
                return x
            seen[id(x)] = x
            if isinstance(x, SizeVar):
                found.setdefault(x.uid, x)
            elif isinstance(x, Load):
                buf(x.buffer)
            rebuild(x, go)
            return x

        try:
            go(e)
        finally:
            del go  # (a cycle through the closure otherwise)

    def buf(b) -> None:
        if isinstance(b, Buffer) and not isinstance(b.size, int):
            ex(b.size)

    def st(s) -> None:
        if isinstance(s, PrimFunc):
            for b in s.params:
                buf(b)
            st(s.body)
        elif isinstance(s, For):
            if not isinstance(s.extent, int):
                ex(s.extent)
            st(s.body)
        elif isinstance(s, Store):
            buf(s.buffer)
            ex(s.index)
            ex(s.value)
        elif isinstance(s, Allocate):
            buf(s.buffer)
            st(s.body)
        elif isinstance(s, IfThenElse):
            ex(s.cond)
            st(s.then)
            if s.other is not None:
                st(s.other)
        elif isinstance(s, Seq):
            for x in s.stmts:
                st(x)
        elif isinstance(s, Expr):
            ex(s)

    st(node)
    return list(found.values())


def loads_in(e: Expr) -> list:
    """Every load of the expression ``e`` (its index's loads included), in the order met."""
    out = []
    seen: set[int] = set()

    def go(x: Expr) -> Expr:
        if id(x) in seen:
            return x
        seen.add(id(x))
        if isinstance(x, Load):
            out.append(x)
        rebuild(x, go)
        return x

    go(e)
    return out

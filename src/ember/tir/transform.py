"""Passes over the loop IR: unrolling and vectorization.

* ``unroll`` replaces every loop marked "unrolled" by copies of its body with the loop variable
  set to 0, 1, ...; indices become constants, so accumulators can live in registers.
* ``transpose_blocks`` turns a copy that transposes (a vector loop whose elements lie a row apart
  in the source, inside a loop along the source's rows) into blocks of vectors transposed in
  registers (``Shuffle``).
* ``vectorize`` turns a loop marked "vectorized" whose body is straight-line stores into vector
  stores of vector expressions (``Ramp`` indices, ``Broadcast`` scalars).  Vector arithmetic is
  on float32 and int32 lanes; what needs 64-bit intermediates exactly (TFLite's requantization)
  is an int32 intrinsic (``fixed_point_mul``) whose vector C widens inside.  A loop it cannot
  vectorize stays a scalar loop marked "simd" so the C compiler may still try.
"""

from __future__ import annotations

from .analysis import kept, rebuild, simplify_index, stride_in, substitute
from .expr import (INDEX, BinOp, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Select, Shuffle, Var,
                   COMPARISONS, LOGICAL)
from .intrinsics import DOT_CALLS, INTRINSICS
from .stmt import Allocate, Barrier, For, IfThenElse, PrimFunc, Seq, Stmt, Store


def map_stmt(s: Stmt, fs, fe) -> Stmt:
    """Rebuild a statement tree: ``fs`` may replace statements (return None to recurse),
    ``fe`` maps every expression."""
    r = fs(s)
    if r is not None:
        return r
    if isinstance(s, For):
        return For(s.var, s.extent, s.kind, map_stmt(s.body, fs, fe))
    if isinstance(s, Store):
        return Store(s.buffer, fe(s.index), fe(s.value))
    if isinstance(s, Allocate):
        return Allocate(s.buffer, map_stmt(s.body, fs, fe))
    if isinstance(s, IfThenElse):
        return IfThenElse(fe(s.cond), map_stmt(s.then, fs, fe),
                          map_stmt(s.other, fs, fe) if s.other is not None else None)
    if isinstance(s, Seq):
        return Seq.of([map_stmt(x, fs, fe) for x in s.stmts])
    if isinstance(s, Barrier):
        return s
    raise TypeError(f"unknown statement {s!r}")


def subst_stmt(s: Stmt, mapping: dict) -> Stmt:
    return map_stmt(s, lambda x: None, lambda e: simplify_index(substitute(e, mapping)))


def _has_symbolic_loop(s: Stmt) -> bool:
    if isinstance(s, For):
        return not isinstance(s.extent, int) or _has_symbolic_loop(s.body)
    if isinstance(s, Seq):
        return any(_has_symbolic_loop(x) for x in s.stmts)
    if isinstance(s, Allocate):
        return _has_symbolic_loop(s.body)
    if isinstance(s, IfThenElse):
        return _has_symbolic_loop(s.then) or (s.other is not None and _has_symbolic_loop(s.other))
    return False


def unroll(f: PrimFunc, max_unroll: int = 64) -> PrimFunc:
    """Unroll loops marked "unrolled" of at most ``max_unroll`` iterations, except around loops of
    symbolic extent (the tails of symbolic splits): copies of those only make code to compile."""
    def fs(s: Stmt):
        if isinstance(s, For) and s.kind == "unrolled":
            body = map_stmt(s.body, fs, lambda e: e)
            if not isinstance(s.extent, int) or s.extent > max_unroll or _has_symbolic_loop(body):
                return For(s.var, s.extent, "serial", body)
            return Seq.of([subst_stmt(body, {s.var: Const(k)}) for k in range(s.extent)])
        return None

    return PrimFunc(f.name, f.params, map_stmt(f.body, fs, lambda e: e), f.comment, dict(f.attrs))


class _NotVectorizable(Exception):
    pass


def lanes_of(e: Expr) -> int:
    """The lanes of ``e`` (1 for a scalar), kept on a compound node (``analysis.kept``)."""
    if isinstance(e, (Ramp, Broadcast, Load, Shuffle)):
        return e.lanes
    return kept(e, "_lanes", _lanes_of)


def _lanes_of(e: Expr) -> int:
    if isinstance(e, BinOp):
        return max(lanes_of(e.a), lanes_of(e.b))
    if isinstance(e, (Not, Cast)):
        return lanes_of(e.a)
    if isinstance(e, Call):
        return max(lanes_of(a) for a in e.args)
    if isinstance(e, Select):
        return max(lanes_of(e.cond), lanes_of(e.t), lanes_of(e.f))
    return 1


#: element types of vector arithmetic (one lane per float32 lane: 8 on AVX2)
VECTOR_DTYPES = ("float32", "int32")
#: element types vectors are loaded, stored and converted in (narrow integers are widened to
#: int32 before arithmetic, as the tensor expressions of integer kernels write it)
MEMORY_DTYPES = VECTOR_DTYPES + ("int16", "uint16", "int8", "uint8")
#: element types loaded and stored as lane masks (one byte per element in memory, -1 / 0 lanes
#: in registers, as comparisons make them)
MASK_DTYPES = ("bool",)


def _vec_expr(e: Expr, v: Var, n: int, memo: dict | None = None) -> Expr:
    """``e`` with ``v`` running over ``n`` lanes.  ``memo`` (by node identity, for one vector
    loop) keeps subexpressions that several parents share converted once."""
    if memo is None:
        memo = {}
    got = memo.get(id(e))
    if got is None:
        got = memo[id(e)] = _vec_node(e, v, n, memo)
    return got


def _uses(e: Expr, v: Var, memo: dict) -> bool:
    key = ("uses", id(e))
    got = memo.get(key)
    if got is None:
        if e is v:
            got = True
        else:
            got = False

            def child(x: Expr) -> Expr:
                nonlocal got
                if not got and _uses(x, v, memo):
                    got = True
                return x

            rebuild(e, child)
        memo[key] = got
    return got


def _vec_node(e: Expr, v: Var, n: int, memo: dict) -> Expr:
    if not _uses(e, v, memo):
        return e
    if e is v:
        return Ramp(Const(0), 1, n)
    if isinstance(e, Load):
        if e.dtype not in MEMORY_DTYPES + MASK_DTYPES:
            raise _NotVectorizable(f"load of {e.dtype}")
        st = stride_in(e.index, v)
        if st is not None:
            c, base = st
            return Load(e.buffer, Ramp(simplify_index(base), c, n), lanes=n)
        raise _NotVectorizable("non-affine load index")
    if isinstance(e, BinOp) and e.op in COMPARISONS and e.a.dtype == INDEX:
        # an index comparison (padding checks, concat offsets): a lane mask of affine indices
        sides = []
        for x in (e.a, e.b):
            st = stride_in(x, v)
            if st is None:
                raise _NotVectorizable("non-affine index comparison")
            c, base = st
            base = simplify_index(base)
            sides.append(Ramp(base, c, n) if c else Broadcast(base, n))
        return BinOp(e.op, sides[0], sides[1], "bool")
    if isinstance(e, BinOp):
        a, b = _vec_expr(e.a, v, n, memo), _vec_expr(e.b, v, n, memo)
        for x in (a, b):
            if (lanes_of(x) > 1 and x.dtype not in VECTOR_DTYPES + MASK_DTYPES
                    and not isinstance(x, BinOp)):
                raise _NotVectorizable(f"{x.dtype} vector operand")
        if e.op in COMPARISONS and (a.dtype not in VECTOR_DTYPES):
            raise _NotVectorizable("integer comparison")
        if e.a.dtype not in VECTOR_DTYPES and e.op not in LOGICAL:
            raise _NotVectorizable(f"{e.a.dtype} arithmetic")
        if e.a.dtype == "int32" and e.op in ("div", "mod"):
            raise _NotVectorizable("integer division")
        a = a if lanes_of(a) > 1 else Broadcast(a, n)
        b = b if lanes_of(b) > 1 else Broadcast(b, n)
        return BinOp(e.op, a, b, e.dtype)
    if isinstance(e, Cast):
        a = _vec_expr(e.a, v, n, memo)
        if lanes_of(a) == 1:
            return Cast(e.dtype, a)
        if e.dtype not in MEMORY_DTYPES or a.dtype not in MEMORY_DTYPES + ("bool",):
            raise _NotVectorizable(f"cast from {a.dtype} to {e.dtype}")
        return Cast(e.dtype, a)
    if isinstance(e, Call) and e.fn in DOT_CALLS:
        if e.dtype != "int32":
            raise _NotVectorizable(f"call {e.fn}")
        args = tuple(_vec_expr(x, v, n, memo) for x in e.args)
        if any(lanes_of(x) > 1 and x.dtype not in MEMORY_DTYPES for x in args):
            raise _NotVectorizable(f"call {e.fn}")
        return Call(e.fn, args, e.dtype)
    if isinstance(e, Call):
        # float32 intrinsics, and those whose rule takes only int32 (TFLite's fixed-point
        # multiply), which have vector C of int32 lanes
        vec_dtype = "int32" if INTRINSICS[e.fn].args == "int32" else "float32"
        if e.dtype != vec_dtype or any(x.dtype != vec_dtype for x in e.args):
            raise _NotVectorizable(f"call {e.fn}")
        args = tuple(_vec_expr(x, v, n, memo) for x in e.args)
        return Call(e.fn, tuple(x if lanes_of(x) > 1 else Broadcast(x, n) for x in args), e.dtype)
    if isinstance(e, Select):
        c = _vec_expr(e.cond, v, n, memo)
        t, f = _vec_expr(e.t, v, n, memo), _vec_expr(e.f, v, n, memo)
        if e.dtype not in MEMORY_DTYPES:
            raise _NotVectorizable(f"select of {e.dtype}")
        return Select(c if lanes_of(c) > 1 else Broadcast(c, n), t if lanes_of(t) > 1 else Broadcast(t, n),
                      f if lanes_of(f) > 1 else Broadcast(f, n))
    if isinstance(e, Not):
        return Not(_vec_expr(e.a, v, n, memo))
    raise _NotVectorizable(f"{type(e).__name__}")


def _vec_stmt(s: Stmt, v: Var, n: int) -> Stmt:
    if isinstance(s, Seq):
        return Seq([_vec_stmt(x, v, n) for x in s.stmts])
    if isinstance(s, IfThenElse) and not _uses(s.cond, v, {}):
        # a bounds check of an outer axis (a guarded split): the same for every lane
        return IfThenElse(s.cond, _vec_stmt(s.then, v, n), None if s.other is None else _vec_stmt(s.other, v, n))
    if isinstance(s, Store):
        if s.buffer.dtype not in MEMORY_DTYPES + MASK_DTYPES:
            raise _NotVectorizable(f"store of {s.buffer.dtype}")
        st = stride_in(s.index, v)
        if st is None or st[0] == 0:
            raise _NotVectorizable("store index")
        value = _vec_expr(s.value, v, n)
        if lanes_of(value) == 1:
            value = Broadcast(value, n)
        return Store(s.buffer, Ramp(simplify_index(st[1]), st[0], n), value)
    raise _NotVectorizable(type(s).__name__)


def _loop_var(name: str, extent: int) -> Var:
    """A new loop variable that range analysis (``bound``) knows the extent of."""
    v = Var(name)
    v.extent = extent
    return v


def vectorize(f: PrimFunc, lanes: int, then_unroll: bool = True) -> PrimFunc:
    """Vectorize loops marked "vectorized" whose extent is ``lanes`` (or a multiple, by splitting
    into a loop of vectors, marked "unrolled" when short, which ``then_unroll`` unrolls)."""

    def fs(s: Stmt):
        if isinstance(s, For) and s.kind == "vectorized":
            body = map_stmt(s.body, fs, lambda e: e)
            n = s.extent
            if not isinstance(n, int):
                return For(s.var, n, "simd", body)   # a symbolic extent: the C compiler may try
            if n == lanes:
                try:
                    return _vec_stmt(body, s.var, n)
                except _NotVectorizable:
                    pass
            elif n % lanes == 0 and n > lanes:
                outer = _loop_var(f"{s.var.name}_v", n // lanes)
                try:
                    inner_var = _loop_var(f"{s.var.name}_l", lanes)
                    b2 = subst_stmt(body, {s.var: outer * lanes + inner_var})
                    vec = _vec_stmt(b2, inner_var, lanes)
                    return For(outer, n // lanes, "unrolled" if n // lanes <= 4 else "serial", vec)
                except _NotVectorizable:
                    pass
            return For(s.var, n, "simd", body)
        return None

    out = PrimFunc(f.name, f.params, map_stmt(f.body, fs, lambda e: e), f.comment, dict(f.attrs))
    return unroll(out) if then_unroll else out


def transpose_blocks(f: PrimFunc, lanes: int) -> PrimFunc:
    """Copies that transpose, as blocks of vectors transposed in registers.

    The pattern: ``out[... + k] = in[... + j + k*s]`` (s not 1) in a loop ``k`` marked
    "vectorized" of ``lanes`` iterations, contiguous in ``out``, inside a loop ``j`` over whole
    vectors that is contiguous in ``in``, the loops between them (if any) serial: each vector of
    ``out`` would be built from ``lanes`` scalar loads ``s`` elements apart (attention's keys
    transposed, [B, H, D, S] from [B, S, H, D]; the default schedule vectorizes the output's last
    axis).  Instead, ``j`` becomes the innermost loop, over blocks of ``lanes`` x ``lanes``: a
    block is read as ``lanes`` vector loads along ``j``, transposed by log2(lanes) rounds of
    two-vector shuffles (round t swaps bit t of the row and the lane index) and written as
    ``lanes`` vector stores along ``k``.  Measured on a Zen 4 with 16 lanes: T5-small's
    [8, 128, 512] -> [8, 8, 64, 128] keys 1.2 -> 0.06 ms on one core (the gathers' lines, a
    row apart, fall into the same L1 sets).  Loops that are not such a copy are left as they
    are; with fewer than 2 lanes (GPUs) nothing changes."""
    if lanes < 2 or lanes & (lanes - 1):
        return f

    def fs(s: Stmt):
        if isinstance(s, For):
            return _transposed(s, lanes)
        return None

    return PrimFunc(f.name, f.params, map_stmt(f.body, fs, lambda e: e), f.comment, dict(f.attrs))


def _transposed(j: For, n: int) -> Stmt | None:
    """The loop nest from ``j`` as blocks transposed in registers (``transpose_blocks``), or None
    where it is not a transposing copy along ``j``."""
    chain = [j]
    body = j.body
    while isinstance(body, For):
        chain.append(body)
        body = body.body
    vec = chain[-1]
    if len(chain) < 2 or vec.kind != "vectorized" or vec.extent != n:
        return None
    if not isinstance(body, Store) or not isinstance(body.value, Load):
        return None
    st, ld = body, body.value
    if st.buffer is ld.buffer or st.buffer.dtype != ld.dtype or ld.dtype not in VECTOR_DTYPES:
        return None
    if j.kind != "serial" or not isinstance(j.extent, int) or j.extent % n or \
            any(x.kind != "serial" for x in chain[1:-1]):
        return None
    k = vec.var
    strides = [stride_in(st.index, k), stride_in(ld.index, k), stride_in(st.index, j.var), stride_in(ld.index, j.var)]
    if any(x is None for x in strides):
        return None
    out_k, in_k, out_j, in_j = (x[0] for x in strides)
    if out_k != 1 or in_j != 1 or in_k in (0, 1) or abs(out_j) < n:
        return None         # (each j stores a vector of its own: no order between stores to keep)
    jo = _loop_var(f"{j.var.name}_b", j.extent // n)
    rows = [Load(ld.buffer, Ramp(simplify_index(substitute(ld.index, {j.var: jo * n, k: Const(r)})), 1, n), lanes=n)
            for r in range(n)]
    cols = transpose_vectors(rows)
    block = Seq([Store(st.buffer, Ramp(simplify_index(substitute(st.index, {j.var: jo * n + c, k: Const(0)})), 1, n),
                       cols[c]) for c in range(n)])
    out: Stmt = For(jo, j.extent // n, "serial", block)
    for x in reversed(chain[1:-1]):
        out = For(x.var, x.extent, x.kind, out)
    return out


def transpose_vectors(rows: list) -> list:
    """The columns of the square block whose rows are the vectors ``rows`` (n of n lanes, n a
    power of two): n log2(n) two-vector shuffles.  Round t pairs rows r and r + 2^t (bit t of r
    clear) and swaps bit t of the row index with bit t of the lane index: the row without it
    takes the pair's lanes with bit t clear, the other's with it set."""
    n = len(rows)
    cur = list(rows)
    t = 1
    while t < n:
        low = tuple(c if not c & t else n + (c ^ t) for c in range(n))
        high = tuple(c ^ t if not c & t else n + c for c in range(n))
        nxt = list(cur)
        for r in range(n):
            if not r & t:
                nxt[r] = Shuffle(cur[r], cur[r | t], low)
                nxt[r | t] = Shuffle(cur[r], cur[r | t], high)
        cur = nxt
        t <<= 1
    return cur


def remove_unit_loops(f: PrimFunc) -> PrimFunc:
    """Replace loops of extent 1 by their body with the variable set to 0; drop empty loops."""
    def fs(s: Stmt):
        if isinstance(s, For) and isinstance(s.extent, int) and s.extent <= 1:
            body = map_stmt(s.body, fs, lambda e: e)
            return subst_stmt(body, {s.var: Const(0)}) if s.extent == 1 else Seq([])
        return None

    return PrimFunc(f.name, f.params, map_stmt(f.body, fs, lambda e: e), f.comment, dict(f.attrs))


def simplify(f: PrimFunc) -> PrimFunc:
    """Re-simplify every index knowing the extent of each enclosing loop, which removes the
    divisions and remainders that loop ranges make exact."""
    from .analysis import loop_ranges

    def walk(s: Stmt, ranges: dict) -> Stmt:
        if isinstance(s, For):
            inner = dict(ranges)
            inner[s.var] = s.extent
            return For(s.var, s.extent, s.kind, walk(s.body, inner))
        if isinstance(s, Store):
            with loop_ranges(ranges):
                return Store(s.buffer, simplify_index(s.index), simplify_index(s.value))
        if isinstance(s, Allocate):
            return Allocate(s.buffer, walk(s.body, ranges))
        if isinstance(s, IfThenElse):
            with loop_ranges(ranges):
                cond = simplify_index(s.cond)
            return IfThenElse(cond, walk(s.then, ranges), walk(s.other, ranges) if s.other is not None else None)
        if isinstance(s, Seq):
            return Seq.of([walk(x, ranges) for x in s.stmts])
        return s

    return PrimFunc(f.name, f.params, walk(f.body, {}), f.comment, dict(f.attrs))


def optimize(f: PrimFunc, lanes: int) -> PrimFunc:
    """The loop-IR passes every kernel goes through before code generation, in one call (for
    kernels lowered by hand in tests; the compiler runs them as steps of ``driver.pipeline``,
    verified and dumped one by one)."""
    return vectorize(transpose_blocks(unroll(simplify(remove_unit_loops(f))), lanes), lanes)

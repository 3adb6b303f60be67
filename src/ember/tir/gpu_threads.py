"""How the threads of a GPU block share its work: the loop-IR transforms behind the ``gpu``
schedules of reductions (:func:`share_block_work`: a block per row, its reductions combined by a
tree in shared memory) and of matmul and convolution (:func:`stage_tiles`: operands staged
through shared memory).  Both run in :func:`ember.tir.gpu.optimize` and leave a kernel they do
not recognize unchanged."""

from __future__ import annotations

from .analysis import key, loads_in, uses_var
from .expr import INDEX, BinOp, Const, Expr, Load, Select, Var, binop, is_float_dtype
from .gpu import has_barrier, split_launch
from .stmt import THREAD_KINDS, Allocate, Barrier, Buffer, For, IfThenElse, PrimFunc, Seq, Stmt, Store, walk_stmts
from .transform import subst_stmt


#: most threads a block shares its work among (:func:`share_block_work`)
MAX_SHARING_THREADS = 256


def share_block_work(f: PrimFunc, max_threads: int = MAX_SHARING_THREADS) -> PrimFunc:
    """A kernel whose schedule bound only blocks (one block per row: the ``gpu`` schedules of
    reductions, softmax and layer norm) gets T threads per block that share the row's work:

    * a reduction into a local accumulator at an index the same for the whole row (an init store,
      then serial loops updating it) is computed by all T threads, each over every T-th point,
      then combined by a tree in shared memory (log2(T) steps, a barrier after each); every
      thread then reads the result;
    * P partial results of one reduction (``ops.reduce.row_reduce``'s lanes) likewise: thread t
      takes lane t % P, a tree of stride P (:func:`_cooperative_lanes`);
    * a loop that writes the output (the row's elements) gives each thread every T-th iteration;
    * any other store to a global buffer is made by thread 0 only; everything else (local values)
      every thread computes alike.

    T is the smallest power of two (32 at least, ``max_threads`` at most) that covers the largest
    reduction or row.  Other kernels are returned unchanged."""
    launch = split_launch(f)
    if not launch.blocks or launch.threads or launch.shared or has_barrier(f.body):
        return f
    sizes: list[int] = []
    _share(launch.body, None, sizes, [])
    if not sizes:
        return f
    T = 32
    while T < min(max(sizes), max_threads):
        T *= 2
    tr = Var("tr", INDEX)
    shared: list = []
    body = _share(launch.body, (tr, T), [], shared)
    out: Stmt = For(tr, T, "threadIdx.x", body)
    for buf in reversed(shared):
        out = Allocate(buf, out)
    for lp in reversed(launch.blocks):
        out = For(lp.var, lp.extent, lp.kind, out)
    return PrimFunc(f.name, f.params, out, f.comment, dict(f.attrs))


def _reduction_nest(init: Stmt, loop: Stmt):
    """(loops, combiner, accumulator store) when ``init`` and ``loop`` are a reduction into one
    local element at an index the loops do not move; else None."""
    if not (isinstance(init, Store) and init.buffer.scope == "local" and isinstance(loop, For)):
        return None
    loops, s = [], loop
    while isinstance(s, For) and s.kind in ("serial", "unrolled") and isinstance(s.extent, int):
        loops.append(s)
        s = s.body
    if not isinstance(s, Store) or s.buffer is not init.buffer or key(s.index) != key(init.index):
        return None
    v = _accumulator_first(s.value, init)
    if not (isinstance(v, BinOp) and v.op in ("add", "mul", "max", "min") and isinstance(v.a, Load)
            and v.a.buffer is init.buffer and key(v.a.index) == key(init.index)):
        return None
    if any(uses_var(init.index, lp.var) for lp in loops) or _loads_buffer(v.b, init.buffer):
        return None
    return loops, v.op, s


def _accumulator_first(v: Expr, init: Store) -> Expr:
    """``v`` with the accumulator's load as its first operand: index simplification puts the terms
    of an integer sum in its own order (integer add, mul, max and min commute exactly)."""
    if isinstance(v, BinOp) and isinstance(v.b, Load) and v.b.buffer is init.buffer \
            and key(v.b.index) == key(init.index) and not is_float_dtype(v.dtype):
        return BinOp(v.op, v.b, v.a, v.dtype)
    return v


def _loads_buffer(e: Expr, buf) -> bool:
    return any(ld.buffer is buf for ld in loads_in(e))


def _stores_global(s: Stmt) -> bool:
    return any(isinstance(x, Store) and x.buffer.scope == "global" for x in walk_stmts(s))


def _share(s: Stmt, thread, sizes: list, shared: list) -> Stmt:
    """:func:`share_block_work` on one statement of the row's body; with ``thread`` None it only
    collects the sizes of the reductions and rows into ``sizes``."""
    if isinstance(s, Seq):
        out, k = [], 0
        while k < len(s.stmts):
            x = s.stmts[k]
            lanes = _lane_nest(x, s.stmts[k + 1]) if k + 1 < len(s.stmts) else None
            if lanes is not None and (thread is None or _lanes_fit(lanes, thread[1])):
                out.append(_cooperative_lanes(x, *lanes, thread, sizes, shared))
                k += 2
                continue
            nest = _reduction_nest(x, s.stmts[k + 1]) if k + 1 < len(s.stmts) else None
            if nest is not None:
                out.append(_cooperative(x, *nest, thread, sizes, shared))
                k += 2
                continue
            out.append(_share(x, thread, sizes, shared))
            k += 1
        return Seq.of(out)
    if isinstance(s, Allocate):
        return Allocate(s.buffer, _share(s.body, thread, sizes, shared))
    if isinstance(s, IfThenElse) and not loads_in(s.cond):
        return IfThenElse(s.cond, _share(s.then, thread, sizes, shared),
                          None if s.other is None else _share(s.other, thread, sizes, shared))
    if isinstance(s, For) and isinstance(s.extent, int) and s.kind not in THREAD_KINDS and _stores_global(s):
        sizes.append(s.extent)
        if thread is None:
            return s
        tr, T = thread
        co = Var(f"{s.var.name}o", INDEX)
        at = binop("add", binop("mul", co, Const(T)), tr)
        body = subst_stmt(s.body, {s.var: at})
        if s.extent % T:
            body = IfThenElse(binop("lt", at, Const(s.extent)), body)
        return For(co, -(-s.extent // T), "serial", body)
    if thread is not None and _stores_global(s):
        return IfThenElse(binop("eq", thread[0], Const(0)), s)
    return s


def _cooperative(init: Store, loops, op: str, update: Store, thread, sizes: list, shared: list) -> Stmt:
    total = 1
    for lp in loops:
        total *= lp.extent
    sizes.append(total)
    if thread is None:
        return Seq([init, loops[0]])
    tr, T = thread
    ro = Var("ro", INDEX)
    lin = binop("add", binop("mul", ro, Const(T)), tr)
    mapping, inner = {}, 1
    for lp in reversed(loops):
        mapping[lp.var] = binop("mod", binop("div", lin, Const(inner)), Const(lp.extent)) if lp is not loops[0] \
            else binop("div", lin, Const(inner))
        inner *= lp.extent
    step: Stmt = subst_stmt(update, mapping)
    if total % T:
        step = IfThenElse(binop("lt", lin, Const(total)), step)
    acc, idx = init.buffer, init.index
    red = Buffer(f"{acc.name}_red", acc.dtype, T, "shared")
    shared.append(red)
    out: list = [init, For(ro, -(-total // T), "serial", step), Store(red, tr, Load(acc, idx)), Barrier()]
    half = T // 2
    while half >= 1:
        out += [IfThenElse(binop("lt", tr, Const(half)),
                           Store(red, tr, binop(op, Load(red, tr), Load(red, binop("add", tr, Const(half)))))),
                Barrier()]
        half //= 2
    out.append(Store(acc, idx, Load(red, Const(0))))
    return Seq(out)


def _lane_nest(init: Stmt, loop: Stmt):
    """(P, reduction loop, combiner, update) when ``init`` and ``loop`` compute P partial results
    of a reduction into a local buffer of P elements (``ops.reduce.row_reduce``'s lanes: lane l
    combines its points over one serial loop), else None."""
    if not (isinstance(init, For) and isinstance(init.body, Store) and isinstance(loop, For)
            and isinstance(init.extent, int) and init.extent == loop.extent and init.kind == loop.kind == "serial"):
        return None
    st, acc = init.body, init.body.buffer
    if not (acc.scope == "local" and acc.size == init.extent and isinstance(st.index, Var)
            and st.index == init.var and not _loads_buffer(st.value, acc)):
        return None
    red = loop.body
    if not (isinstance(red, For) and red.kind in ("serial", "unrolled") and isinstance(red.extent, int)
            and isinstance(red.body, Store)):
        return None
    up = red.body
    v = up.value
    if not (up.buffer is acc and isinstance(up.index, Var) and up.index == loop.var and isinstance(v, BinOp)
            and v.op in ("add", "mul", "max", "min") and isinstance(v.a, Load) and v.a.buffer is acc
            and isinstance(v.a.index, Var) and v.a.index == loop.var and not _loads_buffer(v.b, acc)):
        return None
    return init.extent, loop, red, v.op


def _lanes_fit(lanes, T: int) -> bool:
    return T % lanes[0] == 0 and T // lanes[0] >= 2


def _cooperative_lanes(init: For, P: int, loop: For, red: For, op: str, thread, sizes: list, shared: list) -> Stmt:
    """P partial reductions shared by the T threads: thread t takes lane t % P and every
    (T / P)-th point of that lane, a tree in shared memory (stride P) combines the T / P groups
    of each lane, then every thread reads the P partials into its local buffer."""
    sizes.append(P * red.extent)
    if thread is None:
        return Seq([init, loop])
    tr, T = thread
    G = T // P
    lane = binop("mod", tr, Const(P))
    ro = Var(f"{red.var.name}o", INDEX)
    point = binop("add", binop("mul", ro, Const(G)), binop("div", tr, Const(P)))
    step: Stmt = subst_stmt(red.body, {loop.var: lane, red.var: point})
    if red.extent % G:
        step = IfThenElse(binop("lt", point, Const(red.extent)), step)
    acc = init.body.buffer
    buf = Buffer(f"{acc.name}_red", acc.dtype, T, "shared")
    shared.append(buf)
    out: list = [subst_stmt(init.body, {init.var: lane}), For(ro, -(-red.extent // G), "serial", step),
                 Store(buf, tr, Load(acc, lane)), Barrier()]
    half = G // 2
    while half >= 1:
        out += [IfThenElse(binop("lt", tr, Const(half * P)),
                           Store(buf, tr, binop(op, Load(buf, tr), Load(buf, binop("add", tr, Const(half * P)))))),
                Barrier()]
        half //= 2
    k = Var(init.var.name, INDEX)
    out.append(For(k, P, "serial", Store(acc, k, Load(buf, k))))
    return Seq(out)


#: the fewest reduction steps a shared-memory tile may hold (:func:`stage_tiles`)
MIN_TILE_K = 8


def stage_tiles(f: PrimFunc) -> PrimFunc:
    """A kernel with a 2-D block of threads (``threadIdx.y`` rows by ``threadIdx.x`` columns: the
    ``gpu`` matmul schedule) whose threads each sum products ``a * b`` over one reduction loop,
    where ``a`` does not depend on the thread's column and ``b`` not on its row, gets those
    operands staged through shared memory: per step of Tk reductions, the block loads a Ty x Tk
    tile of ``a`` (thread (y, x) loads row y, step x) and a Tk x Tx tile of ``b`` (thread (y, x)
    loads step y, column x) once, waits at a barrier, and every thread sums its Tk products from
    the tiles, then waits again before the next tiles.  Each operand element is read from global
    memory once per block instead of once per thread; the products are summed in the same order
    as before.  Tile loads out of the operands' ranges (guards of the original, or a last partial
    step) load 0.  Other kernels are returned unchanged."""
    launch = split_launch(f)
    axes = {s.kind: s for s in launch.threads}
    if set(axes) != {"threadIdx.x", "threadIdx.y"} or launch.shared or has_barrier(f.body):
        return f
    ty, tx = axes["threadIdx.y"], axes["threadIdx.x"]
    tk = min(ty.extent, tx.extent)
    if tk < MIN_TILE_K:
        return f
    shared: list = []
    body = _stage(launch.body, ty, tx, tk, shared)
    if not shared:
        return f
    out: Stmt = body
    for lp in reversed(launch.threads):
        out = For(lp.var, lp.extent, lp.kind, out)
    for buf in reversed(shared):
        out = Allocate(buf, out)
    for lp in reversed(launch.blocks):
        out = For(lp.var, lp.extent, lp.kind, out)
    return PrimFunc(f.name, f.params, out, f.comment, dict(f.attrs))


def _unguarded(s: Stmt):
    """(the statement under a chain of else-less ifs, the conjuncts of their conditions)."""
    conds = []
    while isinstance(s, IfThenElse) and s.other is None:
        parts = [s.cond]
        while parts:
            c = parts.pop()
            if isinstance(c, BinOp) and c.op == "and":
                parts += [c.a, c.b]
            else:
                conds.append(c)
        s = s.then
    return s, conds


def _stage(s: Stmt, ty: For, tx: For, tk: int, shared: list) -> Stmt:
    if isinstance(s, Seq):
        out, k = [], 0
        while k < len(s.stmts):
            if not shared and k + 1 < len(s.stmts):
                staged = _staged_product(s.stmts[k], s.stmts[k + 1], ty, tx, tk, shared)
                if staged is not None:
                    out.append(staged)
                    k += 2
                    continue
            out.append(_stage(s.stmts[k], ty, tx, tk, shared))
            k += 1
        return Seq.of(out)
    if isinstance(s, Allocate):
        return Allocate(s.buffer, _stage(s.body, ty, tx, tk, shared))
    return s


def _staged_product(init_s: Stmt, loop: Stmt, ty: For, tx: For, tk: int, shared: list):
    init, init_conds = _unguarded(init_s)
    if not (isinstance(init, Store) and init.buffer.scope == "local" and isinstance(loop, For)
            and loop.kind == "serial" and isinstance(loop.extent, int)):
        return None
    update, conds = _unguarded(loop.body)
    if not (isinstance(update, Store) and update.buffer is init.buffer and key(update.index) == key(init.index)):
        return None
    v = _accumulator_first(update.value, init)
    if not (isinstance(v, BinOp) and v.op == "add" and isinstance(v.a, Load) and v.a.buffer is init.buffer
            and key(v.a.index) == key(init.index) and isinstance(v.b, BinOp) and v.b.op == "mul"):
        return None
    a, b = v.b.a, v.b.b
    if uses_var(a, tx.var) and not uses_var(b, tx.var):
        a, b = b, a         # (a product of two floats does not depend on their order)
    k, K = loop.var, loop.extent
    if uses_var(a, tx.var) or uses_var(b, ty.var) or not uses_var(a, k) or not uses_var(b, k) \
            or any(uses_var(x, k) for x in [init.index] + init_conds):
        return None
    conds_a = [c for c in conds if not uses_var(c, tx.var)]
    conds_b = [c for c in conds if not uses_var(c, ty.var)]
    if len(conds_a) + len(conds_b) < len(conds) or _loads_buffer(a, init.buffer) or _loads_buffer(b, init.buffer):
        return None
    acc = init.buffer
    A = Buffer(f"{acc.name}_a", a.dtype, ty.extent * tk, "shared")
    B = Buffer(f"{acc.name}_b", b.dtype, tk * tx.extent, "shared")
    shared += [A, B]
    ko, kk = Var(f"{k.name}o", INDEX), Var(f"{k.name}i", INDEX)

    def tile_load(buf, e, e_conds, lane, index, limit):
        step = binop("add", binop("mul", ko, Const(tk)), lane)
        at = {k: step}
        guard = [subst_expr(c, at) for c in e_conds]
        if K % tk:
            guard.append(binop("lt", step, Const(K)))
        value = subst_expr(e, at)
        if guard:
            cond = guard[0]
            for c in guard[1:]:
                cond = binop("and", cond, c)
            value = Select(cond, value, Const(0, e.dtype))
        st: Stmt = Store(buf, index, value)
        return st if limit is None else IfThenElse(binop("lt", lane, Const(tk)), st)

    load_a = tile_load(A, a, conds_a, tx.var, binop("add", binop("mul", ty.var, Const(tk)), tx.var),
                       None if tx.extent == tk else tk)
    load_b = tile_load(B, b, conds_b, ty.var, binop("add", binop("mul", ty.var, Const(tx.extent)), tx.var),
                       None if ty.extent == tk else tk)
    prod = binop("mul", Load(A, binop("add", binop("mul", ty.var, Const(tk)), kk)),
                 Load(B, binop("add", binop("mul", kk, Const(tx.extent)), tx.var)))
    step = Store(acc, init.index, binop("add", Load(acc, init.index), prod))
    if K % tk:      # the last tile's missing steps must not add (their products are 0 * 0 anyway)
        step = IfThenElse(binop("lt", binop("add", binop("mul", ko, Const(tk)), kk), Const(K)), step)
    body = Seq([load_a, load_b, Barrier(), For(kk, tk, "serial", step), Barrier()])
    return Seq([init, For(ko, -(-K // tk), "serial", body)])


def subst_expr(e: Expr, mapping: dict) -> Expr:
    from .analysis import simplify_index, substitute

    return simplify_index(substitute(e, mapping))

"""GPU kernels in the loop IR: their shape, the loop-IR pipeline they go through, and the check.

A GPU kernel is a :class:`~ember.tir.stmt.PrimFunc` of this form::

    for blockIdx.x bx in 0..NB:            (block loops: up to one per axis x, y, z)
      shared tile: float32[...]            (shared buffers of the block, optional)
        for threadIdx.x tx in 0..NT:       (thread loops: up to one per axis x, y, z)
          ... serial and unrolled loops, stores, ifs, local buffers, barriers ...

The launch runs one block per iteration of the block loops and, in each block, one thread per
iteration of the thread loops, all at once; a :class:`~ember.tir.stmt.Barrier` synchronizes the
threads of a block.  :func:`check_kernel` checks that a kernel has this form and can run on a
device: static loop bounds, thread counts and shared memory within the device's limits, every
barrier reached by all threads of a block, and (for the simple cases a static look can decide)
no race on shared memory between two barriers.  The tests' interpreter runs GPU kernels thread by
thread and finds the remaining races when they happen.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CodegenError
from .analysis import bound, key, loads_in, uses_var
from .expr import INDEX, BinOp, Const, Expr, Not, Var
from .stmt import THREAD_KINDS, Allocate, Barrier, For, IfThenElse, PrimFunc, Seq, Stmt, Store, walk_stmts
from .transform import map_stmt, simplify, subst_stmt, unroll


@dataclass(frozen=True)
class DeviceLimits:
    """What one launch may use: threads per block (in all and per axis), blocks per grid axis and
    shared memory per block."""

    max_threads: int = 1024
    max_block: tuple = (1024, 1024, 64)
    max_grid: tuple = ((1 << 31) - 1, 65535, 65535)
    max_shared_bytes: int = 48 * 1024


@dataclass
class Launch:
    """The parts of a GPU kernel: its block loops, the shared buffers, its thread loops and the
    body every thread runs."""

    blocks: list            # For loops bound to blockIdx.*
    shared: list            # Allocate statements of shared buffers
    threads: list           # For loops bound to threadIdx.*
    body: Stmt

    def dims(self, prefix: str) -> tuple[int, int, int]:
        loops = self.blocks if prefix == "blockIdx" else self.threads
        out = [1, 1, 1]
        for s in loops:
            out["xyz".index(s.kind[-1])] = int(s.extent)
        return tuple(out)

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.dims("blockIdx")

    @property
    def block(self) -> tuple[int, int, int]:
        return self.dims("threadIdx")


def is_thread_kind(kind: str) -> bool:
    return kind in THREAD_KINDS


def split_launch(f: PrimFunc) -> Launch:
    """The block loops, shared buffers, thread loops and thread body of a GPU kernel (its form is
    checked by :func:`check_kernel`)."""
    s, blocks, shared, threads = f.body, [], [], []
    while True:
        if isinstance(s, For) and s.kind.startswith("blockIdx.") and not shared and not threads:
            blocks.append(s)
        elif isinstance(s, Allocate) and s.buffer.scope == "shared" and not threads:
            shared.append(s)
        elif isinstance(s, For) and s.kind.startswith("threadIdx."):
            threads.append(s)
        else:
            return Launch(blocks, shared, threads, s)
        s = s.body


def as_gpu_kernel(f: PrimFunc) -> PrimFunc:
    """``f`` as a GPU kernel: one that binds no loop to threads runs one thread per block (and one
    block, where it binds no loop to blocks either: a kernel with no loops at all)."""
    launch = split_launch(f)
    if launch.threads:
        return f
    body: Stmt = For(Var("tx", INDEX), 1, "threadIdx.x", launch.body)
    for a in reversed(launch.shared):
        body = Allocate(a.buffer, body)
    blocks = launch.blocks or [For(Var("bx", INDEX), 1, "blockIdx.x", body)]
    for lp in reversed(blocks):
        body = For(lp.var, lp.extent, lp.kind, body)
    return PrimFunc(f.name, f.params, body, f.comment, dict(f.attrs))


def optimize(f: PrimFunc) -> PrimFunc:
    """The loop-IR pipeline of a GPU kernel: the CPU pipeline's index simplification and unrolling,
    without removing loops of extent 1 (a thread loop of one thread is still the launch's) and
    without vectorizing (each thread runs scalar code)."""
    from .gpu_threads import share_block_work, stage_tiles

    f = simplify(_remove_unit_loops(f))
    f = as_gpu_kernel(unroll(simplify(_remove_unit_loops(stage_tiles(share_block_work(f))))))
    f.attrs["index_bits"] = index_bits(f)
    return f


def _remove_unit_loops(f: PrimFunc) -> PrimFunc:
    """Loops of one iteration replaced by their body (with the variable 0), except bound ones."""
    def fs(s: Stmt):
        if isinstance(s, For) and s.kind not in THREAD_KINDS and isinstance(s.extent, int) and s.extent <= 1:
            body = map_stmt(s.body, fs, lambda e: e)
            return subst_stmt(body, {s.var: Const(0)}) if s.extent == 1 else Seq([])
        return None

    return PrimFunc(f.name, f.params, map_stmt(f.body, fs, lambda e: e), f.comment, dict(f.attrs))


def index_bits(f: PrimFunc) -> int:
    """32 where every index of the kernel fits in a signed 32-bit int (every buffer and the whole
    launch have fewer than 2**31 elements and iterations), else 64."""
    limit = (1 << 31) - 1
    if any(not isinstance(b.size, int) or b.size > limit for b in f.params):
        return 64
    big = [False]

    def go(s: Stmt, iters: int) -> None:
        if isinstance(s, For):
            if not isinstance(s.extent, int) or iters * s.extent > limit:
                big[0] = True
                return
            go(s.body, iters * s.extent)
        elif isinstance(s, Seq):
            for x in s.stmts:
                go(x, iters)
        elif isinstance(s, Allocate):
            if not isinstance(s.buffer.size, int) or s.buffer.size > limit:
                big[0] = True
            go(s.body, iters)
        elif isinstance(s, IfThenElse):
            go(s.then, iters)
            if s.other is not None:
                go(s.other, iters)

    go(f.body, 1)
    return 64 if big[0] else 32


def has_barrier(s: Stmt) -> bool:
    return any(isinstance(x, Barrier) for x in walk_stmts(s))


def check_kernel(f: PrimFunc, limits: DeviceLimits | None = None) -> Launch:
    """Check that ``f`` is a GPU kernel that a device within ``limits`` can run (see the module's
    docstring); returns its parts.  Raises :class:`~ember.errors.CodegenError` naming the kernel
    and what is wrong."""
    lim = limits or DeviceLimits()

    def bad(msg: str):
        raise CodegenError(f"GPU kernel {f.name}: {msg}")

    launch = split_launch(f)
    if not launch.threads:
        bad("no loop is bound to threadIdx (the body would run outside any thread)")
    for loops, what in ((launch.blocks, "block"), (launch.threads, "thread")):
        kinds = [s.kind for s in loops]
        if len(set(kinds)) != len(kinds):
            bad(f"two {what} loops are bound to the same axis ({', '.join(kinds)})")
        for s in loops:
            if not isinstance(s.extent, int):
                bad(f"the {s.kind} loop {s.var.name} has a symbolic extent ({s.extent!r}): a launch "
                    "needs static sizes")
    nthreads = 1
    for s, (axis, cap) in zip(launch.threads, [(s.kind[-1], lim.max_block["xyz".index(s.kind[-1])])
                                               for s in launch.threads]):
        if s.extent > cap:
            bad(f"{s.extent} threads along {axis} (at most {cap})")
        nthreads *= s.extent
    if nthreads > lim.max_threads:
        bad(f"{nthreads} threads per block (at most {lim.max_threads})")
    for s in launch.blocks:
        cap = lim.max_grid["xyz".index(s.kind[-1])]
        if s.extent > cap:
            bad(f"{s.extent} blocks along {s.kind[-1]} (at most {cap})")
    shared_bytes = 0
    for a in launch.shared:
        if not isinstance(a.buffer.size, int):
            bad(f"shared buffer {a.buffer.name} has a symbolic size")
        import numpy as np

        shared_bytes += a.buffer.size * np.dtype("float32" if a.buffer.dtype == "bfloat16" else a.buffer.dtype).itemsize
    if shared_bytes > lim.max_shared_bytes:
        bad(f"{shared_bytes} bytes of shared memory per block (at most {lim.max_shared_bytes})")
    if any(isinstance(s, Barrier) for s in walk_stmts(f.body)) and not has_barrier(launch.body):
        bad("a barrier outside the threads' body")
    thread_vars = [s.var for s in launch.threads if s.extent > 1]
    for s in walk_stmts(launch.body):
        if isinstance(s, For):
            if s.kind in THREAD_KINDS:
                bad(f"the {s.kind} loop {s.var.name} is not at the top of the kernel")
            if s.kind in ("parallel", "vectorized"):
                bad(f"the {s.kind} loop {s.var.name} has no meaning inside a GPU thread")
            if not isinstance(s.extent, int):
                bad(f"the loop {s.var.name} has a symbolic extent ({s.extent!r})")
        elif isinstance(s, Allocate) and s.buffer.scope == "shared":
            bad(f"shared buffer {s.buffer.name} is allocated inside the threads' body")
        elif isinstance(s, Allocate) and not isinstance(s.buffer.size, int):
            bad(f"local buffer {s.buffer.name} has a symbolic size")
    _check_barriers(launch.body, thread_vars, bad)
    _check_shared_races(launch, bad)
    return launch


def _uniform(cond: Expr, thread_vars) -> bool:
    """Whether every thread of a block sees the same value of ``cond`` (it reads no thread index
    and no memory)."""
    return not loads_in(cond) and not any(uses_var(cond, v) for v in thread_vars)


def _check_barriers(s: Stmt, thread_vars, bad, divergent: bool = False) -> None:
    if isinstance(s, Barrier):
        if divergent:
            bad("a barrier under a condition that differs between the threads of a block "
                "(some threads would never reach it)")
    elif isinstance(s, (For, Allocate)):
        _check_barriers(s.body, thread_vars, bad, divergent)
    elif isinstance(s, Seq):
        for x in s.stmts:
            _check_barriers(x, thread_vars, bad, divergent)
    elif isinstance(s, IfThenElse):
        d = divergent or not _uniform(s.cond, thread_vars)
        _check_barriers(s.then, thread_vars, bad, d)
        if s.other is not None:
            _check_barriers(s.other, thread_vars, bad, d)


def _events(s: Stmt, conds: tuple, ranges: dict, out: list) -> None:
    """Shared-memory accesses (with the conditions they sit under and the ranges of the loop
    variables around them) and barriers in program order; a loop that holds a barrier is walked
    twice, so the accesses after its last barrier meet those before its first (the next trip)."""
    if isinstance(s, Barrier):
        out.append(("barrier",))
    elif isinstance(s, For):
        inner = {**ranges, s.var: (0, s.extent - 1)}
        for _ in range(2 if has_barrier(s.body) else 1):
            _events(s.body, conds, inner, out)
    elif isinstance(s, Allocate):
        _events(s.body, conds, ranges, out)
    elif isinstance(s, Seq):
        for x in s.stmts:
            _events(x, conds, ranges, out)
    elif isinstance(s, IfThenElse):
        _loads_of(s.cond, conds, ranges, out)
        _events(s.then, conds + (s.cond,), ranges, out)
        if s.other is not None:
            _events(s.other, conds + (Not(s.cond),), ranges, out)
    elif isinstance(s, Store):
        _loads_of(s.index, conds, ranges, out)
        _loads_of(s.value, conds, ranges, out)
        if s.buffer.scope == "shared":
            out.append(("store", s.buffer, s.index, conds, ranges))


def _loads_of(e: Expr, conds, ranges, out) -> None:
    for ld in loads_in(e):
        if ld.buffer.scope == "shared":
            out.append(("load", ld.buffer, ld.index, conds, ranges))


def _narrowed(ranges: dict, conds) -> dict:
    """``ranges`` narrowed by the conditions of the form ``var < c`` (<=, >, >=, ==) among ``conds``."""
    out = dict(ranges)
    for c in conds:
        parts = [c]
        while parts:
            x = parts.pop()
            if isinstance(x, BinOp) and x.op == "and":
                parts += [x.a, x.b]
                continue
            if not (isinstance(x, BinOp) and isinstance(x.a, Var) and isinstance(x.b, Const) and x.a in out):
                continue
            lo, hi = out[x.a]
            v = int(x.b.value)
            lo, hi = {"lt": (lo, min(hi, v - 1)), "le": (lo, min(hi, v)), "gt": (max(lo, v + 1), hi),
                      "ge": (max(lo, v), hi), "eq": (max(lo, v), min(hi, v))}.get(x.op, (lo, hi))
            out[x.a] = (lo, hi)
    return out


def _disjoint(a, b) -> bool:
    """Whether the element ranges of two accesses (``(index, conds, ranges)``) cannot meet."""
    ra = bound(a[0], _narrowed(a[2], a[1]))
    rb = bound(b[0], _narrowed(b[2], b[1]))
    return ra is not None and rb is not None and (ra[1] < rb[0] or rb[1] < ra[0])


def _check_shared_races(launch: Launch, bad) -> None:
    """The simple cases: between two barriers, a thread reads an element of a shared buffer that
    the block also writes there at another index expression and in an overlapping range (likely
    another thread's element), or several threads store to one element (its index and conditions
    ignore a thread index)."""
    if not launch.shared:
        return
    thread_vars = [s.var for s in launch.threads if s.extent > 1]
    base = {s.var: (0, s.extent - 1) for s in launch.threads}
    events: list = []
    _events(launch.body, (), base, events)
    phase: list = []
    for ev in events + [("barrier",)]:
        if ev[0] != "barrier":
            phase.append(ev)
            continue
        stores = [e for e in phase if e[0] == "store"]
        for _, buf, idx, conds, _r in stores:
            pinned = [v for v in thread_vars
                      if uses_var(idx, v) or any(uses_var(c, v) for c in conds)]
            if len(pinned) < len(thread_vars):
                free = [v.name for v in thread_vars if v not in pinned]
                bad(f"every thread along {', '.join(free)} stores to the same element of shared buffer "
                    f"{buf.name} (a race)")
        for _, buf, idx, conds, ranges in (e for e in phase if e[0] == "load"):
            for _s, sbuf, sidx, sconds, sranges in stores:
                if sbuf is not buf or key(sidx) == key(idx) or _disjoint((idx, conds, ranges), (sidx, sconds, sranges)):
                    continue
                bad(f"shared buffer {buf.name} is read at {idx!r} between the same barriers as threads write "
                    f"it at {sidx!r} (a race: a barrier is missing)")
        phase = []

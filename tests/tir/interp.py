"""A checking interpreter of loop-IR kernels, for tests.

``run_kernel(f, arrays)`` executes a :class:`~ember.tir.stmt.PrimFunc` in Python, with C's
semantics where they matter (truncating integer division, lazy scalar ``select``; a call is its
intrinsic's numpy meaning, ``ember.tir.intrinsics``), and reports
as :class:`KernelFault`:

* a load or store outside its buffer (vector lanes included), except the lanes of a load in a
  branch of a *vector* select, which C code generation bounds-checks (those read 0);
* a read of a kernel-local buffer element that was never written;
* two iterations of a parallel loop writing the same element, or a parallel loop writing a
  local buffer allocated outside it (a data race);
* (with ``check_coverage``) an element of the output that no store wrote.

A failed run-time check (``IndexCheck``: an index outside [-extent, extent)) is no fault: as in
C, the kernel goes on with index 0, and the failure is recorded in ``Interpreter.failed_checks``
(``run_kernel(..., failed_checks=[])`` collects them: (check, index, extent) triples).

GPU kernels (``ember.tir.gpu``) run block by block; the threads of a block run one after another
up to each barrier, so every thread sees what the others wrote before it.  Faults of GPU kernels:

* a barrier that some threads of a block do not reach (or two threads at different barriers);
* a race: a thread reads or writes an element of a shared buffer that another thread of the block
  wrote, or read, since the last barrier; two threads of the launch writing one element of a
  global buffer, or a thread reading one that another thread of the launch writes.

It is slow (one Python step per scalar operation): use it on small kernels.
"""

from __future__ import annotations

import numpy as np

from ember.tir import intrinsics
from ember.tir.expr import (NARROW_FLOAT_DTYPES, NARROW_INT_DTYPES, BinOp, Broadcast, Call, Cast, Const, IndexCheck,
                            Load, Not, Ramp, Select, Shuffle, Var)
from ember.tir.stmt import Allocate, Barrier, For, IfThenElse, PrimFunc, Seq, Store


class KernelFault(AssertionError):
    pass


def _np(dtype: str):
    # bfloat16 values are C floats in expressions (only their stores round); the narrow types
    # are bytes (only casts look inside them)
    if dtype == "bfloat16":
        return np.dtype("float32")
    if dtype in NARROW_FLOAT_DTYPES or dtype in NARROW_INT_DTYPES:
        return np.dtype("uint8")
    return np.dtype(dtype)


def _c_div(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return a / b
    bz = np.where(b == 0, 1, b)
    q = np.abs(a) // np.abs(bz) * np.sign(a) * np.sign(bz)
    return np.where(b == 0, 0, q).astype(a.dtype)


def _c_mod(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return np.fmod(a, b)
    bz = np.where(b == 0, 1, b)
    return np.where(b == 0, 0, np.fmod(a, bz)).astype(a.dtype)


def _nan_max(a, b):
    return np.where((a > b) | (a != a), a, b)


def _nan_min(a, b):
    return np.where((a < b) | (a != a), a, b)


_BIN = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _c_div, "mod": _c_mod,
    "max": _nan_max, "min": _nan_min, "eq": np.equal, "ne": np.not_equal, "lt": np.less,
    "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "and": np.logical_and, "or": np.logical_or,
}


class _Buf:
    def __init__(self, buffer, data: np.ndarray, local: bool):
        self.buffer = buffer
        self.data = data
        self.local = local
        self.init = np.zeros(data.shape, bool) if local else None
        self.written = np.zeros(data.shape, bool)
        self.writer = np.full(data.shape, -1, np.int64)   # parallel iteration (GPU thread) that wrote it
        self.shared = buffer.scope == "shared"
        if self.shared:
            self.wepoch = np.full(data.shape, -1, np.int64)    # barrier interval of that write
            self.reader = np.full(data.shape, -1, np.int64)    # thread that read it (-2: several)
            self.repoch = np.full(data.shape, -1, np.int64)


class Interpreter:
    def __init__(self, f: PrimFunc, arrays: list[np.ndarray]):
        self.f = f
        self.bufs: dict[int, _Buf] = {}
        for b, a in zip(f.params, arrays):
            a = np.ascontiguousarray(a, dtype=_np(b.dtype)).reshape(-1).copy()
            if a.size != b.size:
                raise ValueError(f"buffer {b.name}: {a.size} elements given, {b.size} expected")
            self.bufs[id(b)] = _Buf(b, a, False)
        self.env: dict = {}
        self.par_iter = -1        # id of the current parallel iteration (-1 outside)
        self.par_depth_locals: set = set()
        self.in_parallel = False
        self.depth = 0
        self.steps = 0
        self.failed_checks: list = []
        self.thread = None        # a GPU kernel: the running thread's number in the launch
        self.block = 0            # the running block's number
        self.epoch = 0            # barrier intervals so far (GPU)

    def fault(self, msg: str):
        raise KernelFault(f"kernel {self.f.name}: {msg}")

    # ---- statements -------------------------------------------------------------------------

    def run(self):
        with np.errstate(all="ignore"):
            self.stmt(self.f.body)

    def stmt(self, s):
        if isinstance(s, Seq):
            for x in s.stmts:
                self.stmt(x)
        elif isinstance(s, For) and s.kind.startswith("threadIdx."):
            self.run_threads(s)
        elif isinstance(s, For) and s.kind.startswith("blockIdx."):
            if self.thread is not None:
                self.fault(f"block loop {s.var.name} inside a thread")
            outer = self.block
            for k in range(s.extent):
                self.env[s.var] = np.int64(k)
                self.block = outer * s.extent + k
                self.stmt(s.body)
            self.block = outer
            self.env.pop(s.var, None)
        elif isinstance(s, Barrier):
            self.fault("a barrier outside the threads of a GPU kernel, or reached by a thread alone")
        elif isinstance(s, For):
            # as C code generation does: only a parallel loop at the top of the kernel runs
            # on the thread pool, nested ones run serially
            parallel = s.kind == "parallel" and self.depth == 0 and s.extent > 1
            if parallel:
                self.in_parallel = True
                self.par_depth_locals = {k for k, b in self.bufs.items() if b.local}
                for b in self.bufs.values():
                    b.writer[:] = -1
            self.depth += 1
            for k in range(s.extent):
                self.env[s.var] = np.int64(k)
                if parallel:
                    self.par_iter = k
                self.stmt(s.body)
            self.depth -= 1
            self.env.pop(s.var, None)
            if parallel:
                self.in_parallel = False
                self.par_iter = -1
                self.par_depth_locals = set()
        elif isinstance(s, Store):
            b = self.buf(s.buffer)
            idx = np.asarray(self.expr(s.index, False))
            val = np.asarray(self.expr(s.value, False))
            self.check_index(b, idx, "store")
            if self.in_parallel and b.local and id(s.buffer) in self.par_depth_locals:
                self.fault(f"parallel loop writes local buffer {s.buffer.name} allocated outside it (data race)")
            if self.in_parallel and not b.local:
                prev = b.writer[idx]
                if np.any((prev >= 0) & (prev != self.par_iter)):
                    self.fault(f"two iterations of a parallel loop write {s.buffer.name}[{idx.tolist()}] (data race)")
                b.writer[idx] = self.par_iter
            if self.thread is not None:
                self.gpu_store(b, idx)
            b.data[idx] = np.broadcast_to(val, idx.shape).astype(b.data.dtype) if idx.ndim else val
            b.written[idx] = True
            if b.local:
                b.init[idx] = True
        elif isinstance(s, Allocate):
            dt = _np(s.buffer.dtype)
            data = np.full(s.buffer.size, np.nan, dt) if dt.kind == "f" else np.zeros(s.buffer.size, dt)
            self.bufs[id(s.buffer)] = _Buf(s.buffer, data, True)
            self.stmt(s.body)
            del self.bufs[id(s.buffer)]
        elif isinstance(s, IfThenElse):
            if bool(self.expr(s.cond, False)):
                self.stmt(s.then)
            elif s.other is not None:
                self.stmt(s.other)
        else:
            self.fault(f"unknown statement {type(s).__name__}")

    # ---- GPU kernels ------------------------------------------------------------------------

    def run_threads(self, s: For):
        """The threads of one block: each runs to its next barrier in turn, until all are done."""
        if self.thread is not None:
            self.fault(f"thread loop {s.var.name} inside a thread")
        loops = []
        while isinstance(s, For) and s.kind.startswith("threadIdx."):
            loops.append(s)
            s = s.body
        body = s
        n = 1
        for lp in loops:
            n *= lp.extent
        env0, bufs0 = self.env, self.bufs
        threads = []
        for lin, idx in enumerate(np.ndindex(*[lp.extent for lp in loops])):
            env = dict(env0)
            env.update({lp.var: np.int64(k) for lp, k in zip(loops, idx)})
            threads.append((env, dict(bufs0), self.block * n + lin, self._gen(body)))
        self.epoch += 1
        try:
            while threads:
                arrived, done = [], 0
                for th in threads:
                    self.env, self.bufs, self.thread = th[0], th[1], th[2]
                    try:
                        arrived.append((th, next(th[3])))
                    except StopIteration:
                        done += 1
                if arrived and done:
                    self.fault(f"{done} thread(s) of block {self.block} finish while the others wait at a barrier")
                if len({id(b) for _, b in arrived}) > 1:
                    self.fault(f"threads of block {self.block} wait at different barriers")
                self.epoch += 1
                threads = [th for th, _ in arrived]
        finally:
            self.env, self.bufs, self.thread = env0, bufs0, None

    def _gen(self, s):
        """Run ``s`` in the current thread, stopping (yielding) at each barrier."""
        if isinstance(s, Barrier):
            yield s
        elif not _has_barrier(s):
            self.stmt(s)
        elif isinstance(s, Seq):
            for x in s.stmts:
                yield from self._gen(x)
        elif isinstance(s, For):
            for k in range(s.extent):
                self.env[s.var] = np.int64(k)
                yield from self._gen(s.body)
            self.env.pop(s.var, None)
        elif isinstance(s, IfThenElse):
            if bool(self.expr(s.cond, False)):
                yield from self._gen(s.then)
            elif s.other is not None:
                yield from self._gen(s.other)
        elif isinstance(s, Allocate):
            if s.buffer.scope == "shared":
                self.fault(f"shared buffer {s.buffer.name} allocated inside a thread")
            dt = _np(s.buffer.dtype)
            data = np.full(s.buffer.size, np.nan, dt) if dt.kind == "f" else np.zeros(s.buffer.size, dt)
            self.bufs[id(s.buffer)] = _Buf(s.buffer, data, True)
            yield from self._gen(s.body)
            del self.bufs[id(s.buffer)]
        else:
            self.fault(f"unknown statement {type(s).__name__}")

    def gpu_store(self, b: _Buf, idx):
        me, name = self.thread, b.buffer.name
        if b.shared:
            w, r = b.writer[idx], b.reader[idx]
            if np.any((b.wepoch[idx] == self.epoch) & (w != me) & (w != -1)):
                self.fault(f"two threads write shared {name}[{idx.tolist()}] between barriers (a race)")
            if np.any((b.repoch[idx] == self.epoch) & (r != me) & (r != -1)):
                self.fault(f"thread {me} writes shared {name}[{idx.tolist()}] that another thread read "
                           "since the last barrier (a race)")
            b.wepoch[idx] = self.epoch
        elif not b.local:
            w = b.writer[idx]
            if np.any((w >= 0) & (w != me)):
                self.fault(f"two threads of the launch write {name}[{idx.tolist()}] (a race)")
        b.writer[idx] = me

    def gpu_load(self, b: _Buf, idx):
        me, name = self.thread, b.buffer.name
        w = b.writer[idx]
        if b.shared:
            if np.any((b.wepoch[idx] == self.epoch) & (w != me) & (w != -1)):
                self.fault(f"thread {me} reads shared {name}[{idx.tolist()}] that another thread wrote "
                           "since the last barrier (a race)")
            r = b.reader[idx]
            many = (b.repoch[idx] == self.epoch) & (r != me) & (r != -1)
            b.reader[idx] = np.where(many, -2, me)
            b.repoch[idx] = self.epoch
        elif not b.local and np.any((w >= 0) & (w != me)):
            self.fault(f"thread {me} reads {name}[{idx.tolist()}] that another thread of the launch writes")

    def buf(self, buffer) -> _Buf:
        b = self.bufs.get(id(buffer))
        if b is None:
            self.fault(f"buffer {buffer.name} is used outside its allocation or is not a parameter")
        return b

    def check_index(self, b: _Buf, idx: np.ndarray, what: str):
        if idx.dtype.kind not in "iu":
            self.fault(f"{what} of {b.buffer.name} with a non-integer index {idx!r}")
        if idx.size and (idx.min() < 0 or idx.max() >= b.data.size):
            self.fault(f"{what} of {b.buffer.name}[{idx.tolist()}] is out of bounds (size {b.data.size})")

    # ---- expressions ------------------------------------------------------------------------

    def expr(self, e, guarded: bool):
        self.steps += 1
        if isinstance(e, Const):
            return np.asarray(e.value, dtype=_np(e.dtype))[()]
        if isinstance(e, Var):
            if e not in self.env:
                self.fault(f"variable {e.name} used outside its loop")
            return self.env[e]
        if isinstance(e, Load):
            b = self.buf(e.buffer)
            idx = np.asarray(self.expr(e.index, guarded))
            if guarded and idx.ndim:
                ok = (idx >= 0) & (idx < b.data.size)
                safe = np.where(ok, idx, 0)
                if b.data.size == 0:
                    return np.zeros(idx.shape, b.data.dtype)
                out = np.where(ok, b.data[safe], 0).astype(b.data.dtype)
                if b.local and not b.init[safe][ok].all():
                    self.fault(f"read of uninitialized local {b.buffer.name}")
                return out
            if guarded and (idx < 0 or idx >= b.data.size):
                return np.zeros((), b.data.dtype)[()]
            self.check_index(b, idx, "load")
            if self.thread is not None:
                self.gpu_load(b, idx)
            if b.local and not b.init[idx].all():
                self.fault(f"read of uninitialized local {b.buffer.name}[{idx.tolist()}]")
            return b.data[idx]
        if isinstance(e, Ramp):
            base = self.expr(e.base, guarded)
            return np.int64(base) + np.arange(e.lanes, dtype=np.int64) * e.stride
        if isinstance(e, Broadcast):
            v = self.expr(e.value, guarded)
            return np.full(e.lanes, v)
        if isinstance(e, Shuffle):
            a, b = np.asarray(self.expr(e.a, guarded)), np.asarray(self.expr(e.b, guarded))
            if a.shape != b.shape or a.ndim != 1 or any(not 0 <= i < 2 * a.size for i in e.indices):
                self.fault(f"a shuffle of {a.shape} and {b.shape} picking lanes {list(e.indices)}")
            return np.concatenate([a, b])[list(e.indices)]
        if isinstance(e, BinOp):
            a = self.expr(e.a, guarded)
            if e.op == "and" and np.ndim(a) == 0 and not a:
                return np.bool_(False)
            if e.op == "or" and np.ndim(a) == 0 and a:
                return np.bool_(True)
            b = self.expr(e.b, guarded)
            r = _BIN[e.op](a, b)
            if e.op in ("add", "sub", "mul", "max", "min", "div", "mod"):
                r = np.asarray(r).astype(_np(e.dtype))
            return r[()] if isinstance(r, np.ndarray) and r.ndim == 0 else r
        if isinstance(e, Not):
            return np.logical_not(self.expr(e.a, guarded))
        if isinstance(e, Cast):
            v = np.asarray(self.expr(e.a, guarded))
            if e.dtype == "bool":
                return (v != 0)[()]
            return v.astype(_np(e.dtype))[()]
        if isinstance(e, Select):
            c = self.expr(e.cond, guarded)
            if np.ndim(c) == 0 and not isinstance(e.cond, Broadcast):
                return self.expr(e.t if c else e.f, guarded)
            if isinstance(e.cond, Broadcast):
                # one condition for all lanes: C code evaluates one branch
                cv = self.expr(e.cond.value, guarded)
                return self.expr(e.t if cv else e.f, guarded)
            t, f = self.expr(e.t, True), self.expr(e.f, True)
            return np.where(c, t, f)
        if isinstance(e, IndexCheck):
            i, n = self.expr(e.index, guarded), self.expr(e.extent, guarded)
            if np.ndim(i) or np.ndim(n):
                self.fault("a vector index check (checks are scalar)")
            w = np.int64(i) + np.int64(n) if i < 0 else np.int64(i)
            if not 0 <= w < n:
                self.failed_checks.append((e, int(i), int(n)))
                return np.int64(0)
            return w
        if isinstance(e, Call):
            args = [self.expr(a, guarded) for a in e.args]
            intr = intrinsics.INTRINSICS.get(e.fn)
            if intr is None:
                self.fault(f"unknown intrinsic {e.fn}")
            r = np.asarray(intr.numpy(*args))
            return r.astype(_np(e.dtype))[()]
        self.fault(f"unknown expression {type(e).__name__}")


def _has_barrier(s) -> bool:
    if isinstance(s, Barrier):
        return True
    if isinstance(s, (For, Allocate)):
        return _has_barrier(s.body)
    if isinstance(s, Seq):
        return any(_has_barrier(x) for x in s.stmts)
    if isinstance(s, IfThenElse):
        return _has_barrier(s.then) or (s.other is not None and _has_barrier(s.other))
    return False


def run_kernel(f: PrimFunc, arrays: list[np.ndarray], check_coverage: bool = True,
               failed_checks: list | None = None) -> list[np.ndarray]:
    """Run ``f`` on ``arrays`` (one per parameter, flattened as needed); returns the final
    contents of every parameter.  Raises :class:`KernelFault` on a memory-safety problem.
    Failed run-time checks are appended to ``failed_checks`` when it is given."""
    it = Interpreter(f, arrays)
    it.run()
    if failed_checks is not None:
        failed_checks += it.failed_checks
    if check_coverage:
        out = it.bufs[id(f.params[-1])]
        if out.data.size and not out.written.all():
            missing = np.flatnonzero(~out.written)
            it.fault(f"{len(missing)} element(s) of the output {f.params[-1].name} are never written, "
                     f"first {missing[0]}")
    return [it.bufs[id(b)].data for b in f.params]


def trip_count(f: PrimFunc) -> int:
    """An upper bound of the scalar statements ``f`` executes (to skip big kernels)."""
    def go(s) -> int:
        if isinstance(s, Seq):
            return sum(go(x) for x in s.stmts)
        if isinstance(s, For):
            return s.extent * go(s.body)
        if isinstance(s, Allocate):
            return go(s.body)
        if isinstance(s, IfThenElse):
            return go(s.then) + (go(s.other) if s.other is not None else 0)
        return 1
    return go(f.body)

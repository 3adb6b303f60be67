"""How fast a kernel could be on this machine, whatever its schedule: the limits ``ember tune``
shows beside each kernel's times.

The machine (:func:`measure_machine`): its fp32 arithmetic peak on the thread count (vector FMAs
alone, at the widest vectors the C compiler targets here, no memory traffic) and the bandwidth of
a copy whose working set fits each thread's L1, each thread's L2, the last-level cache, and none
of the caches (main memory), with the cache sizes the operating system reports.  The kernel (``Workload.flops`` and
``Workload.bytes``): the operations it must do and the bytes it must read and write at least,
each input (weights too) and output once.  Its bound (:func:`bound_ms`) is the larger of the
time its operations take at the FMA peak and the time its bytes take to move: all of them at
least at L1 speed, those that do not fit the L1s at least at L2 speed, those that do not fit the
L2s at least at the last level's, those that do not fit the last-level cache at memory speed.  No schedule beats the bound (up to the measurement's
noise: on a busy machine the peaks measure low and a kernel can reach past them), so a kernel at
85% of it has at most 1/0.85 = 1.18x left to gain, by any knob.

The peaks are measured in a child of the tuner (:mod:`.measure`, on the machine that measures
the trials) and kept per target and thread count in the cache directory (``tuning/machine.json``),
the highest of each ever measured, since other work on the machine only lowers them (each
thread's rate is taken over its own CPU time, which other work lowers far less than the wall
time: cache and memory bandwidth it still shares).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

#: independent chains of vector FMAs, the register's width (-march=native), to measure the
#: cores' arithmetic throughput (12 chains hide the FMA latency on two pipes); and a vectorized
#: copy, to measure the bandwidth of the level its working set fits in
KERNELS_C = r"""
#if defined(__AVX512F__)
typedef float vec __attribute__((vector_size(64)));
#elif defined(__AVX__)
typedef float vec __attribute__((vector_size(32)));
#else
typedef float vec __attribute__((vector_size(16)));
#endif
#define CHAINS 12
#define STEP(k) a##k = a##k * m + c;
double fma_flops(long iters) {
  vec m = (vec){0} + 0.999999f, c = (vec){0} + 1e-7f;
  vec a0 = m, a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c, a6 = a5 + c, a7 = a6 + c,
      a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
  for (long i = 0; i < iters; ++i) {
    STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
  }
  vec s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
  volatile float sink = s[0];
  (void)sink;
  return 2.0 * CHAINS * (sizeof(vec) / sizeof(float)) * (double)iters;
}
double copy_bytes(float *restrict dst, const float *restrict src, long n, long reps) {
  for (long r = 0; r < reps; ++r) {
    for (long i = 0; i < n; ++i) dst[i] = src[i] * 1.0001f;
    __asm__ volatile("" ::: "memory");
  }
  return 8.0 * (double)n * (double)reps;
}
"""

#: cache sizes where the operating system does not report them (bytes): L1d and L2 per core,
#: the last level shared
FALLBACK_CACHES = (32 << 10, 256 << 10, 8 << 20)


@dataclass
class Machine:
    """What :func:`measure_machine` measured on ``threads`` threads: GFLOP/s of vector FMAs,
    GB/s of a copy within the L1s, within the L2s, within the last-level cache and from memory,
    and the cache sizes (bytes: one core's L1d and L2, the shared last level) the bound goes by."""

    threads: int
    fma_gflops: float
    l1_gbs: float
    l2_gbs: float
    llc_gbs: float
    memory_gbs: float
    l1_bytes: int
    l2_bytes: int
    llc_bytes: int

    def byte_levels(self) -> list[tuple[int, float, str]]:
        """(bytes that fit the faster levels, GB/s of this one, its name), fastest first."""
        l2 = self.l2_bytes * self.threads
        return [(0, self.l1_gbs, "L1"), (self.l1_bytes * self.threads, self.l2_gbs, "L2"),
                (l2, min(self.llc_gbs, self.l2_gbs), "L3"), (max(self.llc_bytes, l2), self.memory_gbs, "memory")]

    @classmethod
    def from_dict(cls, d: dict) -> "Machine":
        """From :func:`dataclasses.asdict`'s form; a figure an older Ember did not measure is 0."""
        return cls(**{f.name: d.get(f.name, 0.0 if f.type == "float" else d[f.name]) for f in fields(cls)})


def cache_sizes() -> tuple[int, int, int]:
    """(L1d per core, L2 per core, last level) in bytes, from Linux's sysfs, else the fallbacks."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes: dict[int, int] = {}
    try:
        for idx in sorted(base.glob("index*")):
            if (idx / "type").read_text().strip() == "Instruction":
                continue
            text = (idx / "size").read_text().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            sizes[int((idx / "level").read_text())] = int(text.rstrip("KMG")) * mult
    except (OSError, ValueError):
        sizes = {}
    l1 = sizes.get(1, FALLBACK_CACHES[0])
    l2 = sizes.get(2, FALLBACK_CACHES[1])
    return l1, l2, max(sizes.values()) if sizes else FALLBACK_CACHES[2]


def _library():
    """The measuring kernels, compiled for this machine (``-march=native``)."""
    from ..toolchain.cc import find_compiler

    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "roofline.c", Path(tmp) / "roofline.so"
        src.write_text(KERNELS_C)
        subprocess.run([*find_compiler().command, "-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC",
                        "-o", str(lib), str(src)], check=True, capture_output=True)
        dll = ctypes.CDLL(str(lib))
    dll.fma_flops.restype, dll.fma_flops.argtypes = ctypes.c_double, [ctypes.c_long]
    dll.copy_bytes.restype = ctypes.c_double
    dll.copy_bytes.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
    return dll


def _best_rate(threads: int, work, rounds: int = 3, cpu_time: bool = False) -> float:
    """The highest total of ``work(i)`` (thread i's count) per second over ``rounds`` rounds of
    ``threads`` threads at once (ctypes lets go of the GIL for the calls).  With ``cpu_time``,
    each thread's count over its own CPU time, summed: the rate of cores that are this process's
    alone, which other work on the machine (taking turns on the cores) lowers far less."""
    best = 0.0
    for _ in range(rounds):
        done = [0.0] * threads
        cpu = [0.0] * threads

        def run(i):
            c = time.thread_time()
            done[i] = work(i)
            cpu[i] = time.thread_time() - c
        ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        if cpu_time and all(c > 0 for c in cpu):
            best = max(best, sum(d / min(c, wall) for d, c in zip(done, cpu)))
        else:
            best = max(best, sum(done) / wall)
    return best


def fma_peak(threads: int, iters: int = 20_000_000) -> float:
    """fp32 GFLOP/s of vector FMAs alone on ``threads`` threads: the arithmetic limit of the
    cores at the widest vectors the C compiler targets here (no memory traffic)."""
    fn = _library().fma_flops
    return _best_rate(threads, lambda i: fn(iters)) / 1e9


def copy_bandwidth(threads: int, nbytes: int, total: float = 64e6, dll=None, cpu_time: bool = False) -> float:
    """GB/s of a copy (read and written bytes) on ``threads`` threads, each over arrays of
    ``nbytes`` together, about ``total`` bytes per thread and round."""
    import numpy as np

    dll = dll or _library()
    n = max(64, nbytes // 8)
    reps = max(1, int(total // (8 * n)))
    bufs = [(np.zeros(n, np.float32), np.ones(n, np.float32)) for _ in range(threads)]
    return _best_rate(threads, lambda i: dll.copy_bytes(bufs[i][0].ctypes.data, bufs[i][1].ctypes.data, n, reps),
                      cpu_time=cpu_time) / 1e9


def measure_machine(threads: int) -> Machine:
    """The machine's limits on ``threads`` threads (about a second), each thread's rate over
    its own CPU time: on a machine other work keeps busy, what its cores do while they run ours."""
    dll = _library()
    threads = max(1, int(threads))
    l1, l2, llc = cache_sizes()
    fma = _best_rate(threads, lambda i: dll.fma_flops(5_000_000), cpu_time=True) / 1e9
    # the last level: a working set past the L2s, within half the (shared) cache
    in_llc = max(2 * l2, llc // (2 * threads))

    def copy(nbytes: int, total: float) -> float:
        return copy_bandwidth(threads, nbytes, total, dll=dll, cpu_time=True)
    return Machine(threads, fma, copy(l1 // 2, 64e6), copy(l2 // 2, 64e6),
                   copy(in_llc, 1.3e8) if llc > 2 * l2 * threads else 0.0,
                   copy(max(64 << 20, 4 * llc // threads), 2.5e8), l1, l2, llc)


def _store() -> Path:
    from ..toolchain.cache import cache_dir

    return cache_dir() / "tuning" / "machine.json"


def remember(key: str, m: Machine) -> Machine:
    """``m`` merged with what was measured before for target ``key`` on as many threads (each
    figure the highest seen: other work on the machine only lowers them), and kept."""
    path = _store()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    slot = f"{key}/{m.threads}"
    old = known.get(slot)
    if isinstance(old, dict):
        try:
            prev = Machine.from_dict(old)
            m = Machine(m.threads, *(max(getattr(m, f.name), getattr(prev, f.name)) for f in fields(Machine)[1:6]),
                        m.l1_bytes, m.l2_bytes, m.llc_bytes)
        except (KeyError, TypeError):
            pass
    known[slot] = asdict(m)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
    return m


def known(key: str, threads: int | None = None) -> Machine | None:
    """What :func:`remember` kept for target ``key`` (on ``threads`` threads; None: the most
    threads kept), else None."""
    try:
        got = json.loads(_store().read_text())
    except (OSError, ValueError):
        return None
    slots = {int(s.rpartition("/")[2]): v for s, v in got.items()
             if s.rpartition("/")[0] == key and s.rpartition("/")[2].isdigit()}
    if not slots:
        return None
    pick = threads if threads in slots else (None if threads else max(slots))
    try:
        return Machine.from_dict(slots[pick]) if pick is not None else None
    except (KeyError, TypeError):
        return None


@dataclass
class Limit:
    """A kernel's bound on ``machine``: ``flops_ms`` (its operations at the FMA peak),
    ``bytes_ms`` (its bytes at the bandwidths of the levels they must come from, ``level`` the
    one that binds), ``ms`` the larger, and what binds (``"FMA"`` or ``"bytes"``)."""

    flops_ms: float
    bytes_ms: float
    level: str

    @property
    def ms(self) -> float:
        return max(self.flops_ms, self.bytes_ms)

    @property
    def binds(self) -> str:
        return "FMA" if self.flops_ms >= self.bytes_ms else "bytes"


def bound(flops: int, nbytes: int, machine: Machine) -> Limit | None:
    """The bound of a kernel that does ``flops`` operations and moves ``nbytes`` bytes per call;
    None when neither is known (a symbolic size)."""
    if flops <= 0 and nbytes <= 0:
        return None
    flops_ms = flops / (machine.fma_gflops * 1e9) * 1e3 if machine.fma_gflops > 0 else 0.0
    bytes_ms, level = 0.0, "L1"
    for fits, gbs, name in machine.byte_levels():
        if gbs > 0 and nbytes > fits:
            t = (nbytes - fits) / (gbs * 1e9) * 1e3
            if t >= bytes_ms:
                bytes_ms, level = t, name
    return Limit(flops_ms, bytes_ms, level)


#: ops whose kernels no knob reaches, and what they are (the verdict of a kernel with nothing
#: to search names it)
UNTUNABLE_KINDS = {"winograd_input": "Winograd transform", "winograd_output": "Winograd transform",
                   "layer_norm": "normalization", "batch_norm": "normalization", "softmax": "softmax",
                   "reshape": "layout", "transpose": "layout", "pad": "layout", "concat": "layout",
                   "gather": "gather", "slice": "layout", "reduce_mean": "reduction", "reduce_sum": "reduction",
                   "reduce_max": "reduction"}


def kind_of(op: str) -> str:
    """What a kernel led by ``op`` is, in words, for a verdict."""
    return UNTUNABLE_KINDS.get(op, "elementwise" if op not in ("conv2d_nchwc", "matmul_packed", "matmul",
                                                                  "attention", "conv2d_packed", "conv2d") else op)


def verdict(limit: Limit | None, ms: float, searched: bool, op: str) -> str:
    """A kernel's verdict in words: how near ``ms`` is its bound and what is left to gain; for a
    kernel without knobs to search (``searched`` false) that nothing was searched, and why."""
    where = _where(limit, ms)
    if not searched:
        return f"not searched: no knobs ({kind_of(op)}); {where}"
    return where


def _where(limit: Limit | None, ms: float) -> str:
    if limit is None or ms <= 0 or limit.ms <= 0:
        return "no bound (symbolic sizes)"
    eff = limit.ms / ms
    what = "FMA peak" if limit.binds == "FMA" else f"{limit.level} bandwidth"
    if eff >= 1.0:
        return f"at its bound ({what}; the peaks measured low)"
    return f"at {100 * eff:.0f}% of {what}: <= {1 / eff:.2f}x left"

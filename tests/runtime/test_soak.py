"""Soak: many distinct models loaded and dropped, and many runs of one, in one process.

Memory (VmRSS), threads, open descriptors and mapped files must stay flat.  A library that is
never released keeps its mapping, its copy and its thread pool's workers (3 threads per library
here), so 180 leaked libraries exceed the tolerances below many times over (measured: see
MODELS_RSS_MIB); a run that leaked even 1 KiB would exceed the run tolerance over 10,000 runs.
Compiling keeps no Python objects of a model once it is dropped: the blocks Python's allocator
holds are counted (``sys.getallocatedblocks``), exact where VmRSS is not.
"""

from __future__ import annotations

import gc
import hashlib
import os
import struct
import sys
import time

import numpy as np
import pytest

import ember
from ember.runtime import load
from ember.runtime.artifact import TRAILER_MAGIC, TRAILER_SIZE
from ember.toolchain import build_shared

from .models import const_model, scale_source

#: RSS growth allowed over the 180 models after the warm-up.  Measured (x86-64, glibc 2.36): 0.05
#: MiB when libraries are released; 13.8 MiB, 540 more threads and 180 more descriptors when
#: none is.  Threads and descriptors must not grow at all.
MODELS_RSS_MIB = 4
#: RSS growth allowed over the 180 compiled models after the warm-up.  The compiler's own
#: allocations leave the heap fragmented for a while: measured 3.4-3.9 MiB in a new process and
#: 5.7 MiB in a test worker that had run hundreds of tests before, levelling off after about 300
#: compiles.  A leak is caught exactly by the threads, descriptors, mapped files and blocks.
COMPILED_RSS_MIB = 16
#: Python allocator blocks allowed to stay per compiled model (measured: 8, the loader's record of
#: the files it verified, bounded by ``runtime.artifact.VERIFIED_KEPT``; 57 when the C generator
#: kept each kernel's loop IR after the compile)
COMPILED_BLOCKS = 20
#: RSS growth allowed over 10,000 runs after the warm-up (measured: 0; 1 KiB a run would be 9.8 MiB)
RUNS_RSS_MIB = 6
WARMUP_MODELS = 20


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


def status() -> tuple[float, int, int, int]:
    """(VmRSS in MiB, threads, open descriptors, mapped segments of files) of this process."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    with open("/proc/self/maps") as f:
        files = sum(1 for line in f if line.split(maxsplit=5)[5:] and line.split(maxsplit=5)[5].startswith("/"))
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]), len(os.listdir("/proc/self/fd")),
            files)


def assert_flat(before: tuple, after: tuple, rss_mib: float) -> None:
    assert after[1] == before[1], f"threads {before[1]} -> {after[1]}"
    assert after[2] == before[2], f"open descriptors {before[2]} -> {after[2]}"
    assert after[3] == before[3], f"mapped file segments {before[3]} -> {after[3]}"
    assert after[0] - before[0] < rss_mib, f"RSS {before[0]:.1f} -> {after[0]:.1f} MiB"


N = 4096
MARK = b"EMBER-SOAK-CONST"    # follows the scale in the constants, so it can be found and changed


def scale_artifact() -> bytes:
    """y = x * c (c: the first float of the constants), in 64 pieces over the thread pool."""
    src = scale_source(N, "*(const float*)ember_constants", name="soak", constants=64)
    consts = struct.pack("<f", 1.0) + MARK + bytes(44)
    return build_shared({"model.c": src}, {"ember_constants": consts}, name="soak").read_bytes()


def with_scale(artifact: bytes, scale: float) -> bytes:
    """The artifact with another constant: a distinct artifact (its own digest), sealed."""
    payload = bytearray(artifact[:-TRAILER_SIZE])
    at = payload.index(MARK) - 4
    payload[at:at + 4] = struct.pack("<f", scale)
    return bytes(payload) + TRAILER_MAGIC + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest()


def load_run_drop(path, scale: float, x: np.ndarray) -> None:
    m = load(path)
    m.num_threads = 4
    np.testing.assert_array_equal(m(x), x * np.float32(scale))
    del m       # released at once: a Module is in no reference cycle (no gc.collect needed)


def test_soak_200_distinct_artifacts(tmp_path, four_threads):
    """200 artifacts that differ in a constant, each loaded from the same path (a new one saved
    over the last), run on 4 threads and dropped."""
    base = scale_artifact()
    x = np.arange(N, dtype=np.float32)
    path = tmp_path / "model.so"
    before = None
    for k in range(200):
        scale = 1.0 + k / 8
        path.write_bytes(with_scale(base, scale))
        load_run_drop(path, scale, x)
        if k + 1 == WARMUP_MODELS:
            before = status()
    assert_flat(before, status(), MODELS_RSS_MIB)


def test_soak_10000_runs(four_threads):
    """10,000 runs of one model (a 1 MiB output, recycled; 4 threads)."""
    n = 1 << 18
    src = f"""#include "ember_kernel.h"
const char ember_model_metadata[] = "{{\\"format\\": 1, \\"ember_version\\": \\"0.1.0\\", \\"name\\": \\"runs\\", \\"target\\": \\"cpu\\", \\"inputs\\": [{{\\"name\\": \\"x\\", \\"dtype\\": \\"float32\\", \\"shape\\": [{n}]}}], \\"outputs\\": [{{\\"name\\": \\"y\\", \\"dtype\\": \\"float32\\", \\"shape\\": [{n}]}}, {{\\"name\\": \\"s\\", \\"dtype\\": \\"float32\\", \\"shape\\": [4]}}], \\"arena_bytes\\": 0, \\"constants_bytes\\": 0, \\"kernels\\": 1}}";
const unsigned long long ember_model_arena_bytes = 0ULL;
typedef struct {{ const float* x; float* y; }} ctx;
static void part(void* p, int64_t b, int64_t e) {{
  ctx* k = p;
  for (int64_t i = b * {n // 64}; i < e * {n // 64}; i++) k->y[i] = k->x[i] + 1.0f;
}}
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {{
  (void)arena;
  ctx k = {{ inputs[0], outputs[0] }};
  ember_parallel_for(64, part, &k);
  float* s = outputs[1];
  for (int i = 0; i < 4; i++) s[i] = ((const float*)inputs[0])[i];
  return 0;
}}
"""
    m = load(build_shared({"model.c": src}, name="runs"))
    m.num_threads = 4
    x = np.arange(n, dtype=np.float32)
    for _ in range(200):
        y, s = m(x)
    before = status()
    t0 = time.perf_counter()
    for k in range(10_000):
        y, s = m(x)
        if k % 1000 == 0:
            assert y[k] == x[k] + 1 and s[3] == 3
    elapsed = time.perf_counter() - t0
    after = status()
    assert_flat(before, after, RUNS_RSS_MIB)
    print(f"10,000 runs: {elapsed:.2f} s, RSS {before[0]:.1f} -> {after[0]:.1f} MiB")


@pytest.mark.slow
def test_soak_200_compiled_models(tmp_path, four_threads):
    """200 models compiled by ember.compile (a tiny ONNX graph, another constant each), saved to
    one path, loaded, run and dropped."""
    x = np.arange(64, dtype=np.float32)
    path = tmp_path / "m.ember"
    before = None
    t0 = time.perf_counter()
    for k in range(200):
        scale = 1.0 + k / 8
        ember.compile(const_model("Mul", scale, 64), cflags=("-O0",), cache=False).save(path)
        load_run_drop(path, scale, x)
        if k + 1 == WARMUP_MODELS:
            gc.collect()
            before, blocks = status(), sys.getallocatedblocks()
    gc.collect()
    after, kept = status(), sys.getallocatedblocks() - blocks
    print(f"200 compiles: {time.perf_counter() - t0:.1f} s; RSS {before[0]:.1f} -> {after[0]:.1f} MiB; "
          f"{kept} blocks kept")
    n = 200 - WARMUP_MODELS
    assert kept < COMPILED_BLOCKS * n, f"{kept} Python blocks kept by {n} compiles that were dropped"
    assert_flat(before, after, COMPILED_RSS_MIB)

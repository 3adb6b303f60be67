"""ember.runtime: loading artifacts, checking inputs, running, the thread pool.

The models here are written by hand in the form code generation emits (see ember_kernel.h), so
the runtime is tested on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections import OrderedDict

import numpy as np
import pytest

from ember.errors import ArtifactError, EmberError, EmberRuntimeError, InputError
from ember.graph.types import TensorType
from ember.runtime import (load, pattern_array, process_threads, set_process_threads, trailer_ok,
                           verify_artifact)
from ember.runtime.module import _WORKER_SLOTS, TRAILER_MAGIC, TRAILER_SIZE
from ember.toolchain import build_shared


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


def model_source(name, inputs, outputs, body, *, arena=0, prelude=""):
    """A C translation unit following the code-generation contract."""
    def entries(items):
        return [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in items]

    meta = {"format": 1, "ember_version": "0.1.0", "name": name, "target": "cpu",
            "inputs": entries(inputs), "outputs": entries(outputs), "arena_bytes": arena,
            "constants_bytes": 0, "kernels": 1}
    text = json.dumps(meta).replace("\\", "\\\\").replace('"', '\\"')
    return f"""#include "ember_kernel.h"
extern const unsigned char ember_constants[];
const char ember_model_metadata[] = "{text}";
const unsigned long long ember_model_arena_bytes = {arena}ULL;
{prelude}
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {{
  (void)arena; (void)inputs; (void)outputs;
{body}
  return 0;
}}
"""


def build(name, inputs, outputs, body, *, arena=0, prelude="", blobs=None):
    src = model_source(name, inputs, outputs, body, arena=arena, prelude=prelude)
    return build_shared({"model.c": src}, blobs, name=name)


# ---- models -----------------------------------------------------------------------------------

ROWS, COLS = 4, 64
CONSTS = (np.arange(COLS, dtype=np.float32) - COLS / 2) / 8

ADD_RELU = dict(
    name="add_relu",
    inputs=[("x", "float32", (ROWS, COLS))],
    outputs=[("y", "float32", (ROWS, COLS))],
    arena=ROWS * COLS * 4,
    prelude=f"""
typedef struct {{ const float* x; const float* c; float* t; }} add_ctx;
static void add_rows(void* p, int64_t begin, int64_t end) {{
  add_ctx* k = p;
  for (int64_t r = begin; r < end; r++)
    for (int j = 0; j < {COLS}; j++) k->t[r * {COLS} + j] = k->x[r * {COLS} + j] + k->c[j];
}}""",
    body=f"""
  float* t = (float*)EMBER_ALIGNED(arena, 64);
  add_ctx k = {{ (const float*)inputs[0], (const float*)ember_constants, t }};
  ember_parallel_for({ROWS}, add_rows, &k);
  float* y = outputs[0];
  for (int i = 0; i < {ROWS * COLS}; i++) y[i] = t[i] > 0 ? t[i] : 0;""",
)


@pytest.fixture(scope="module")
def add_relu_path():
    return build(**ADD_RELU, blobs={"ember_constants": CONSTS.tobytes()})


@pytest.fixture(scope="module")
def add_relu(add_relu_path):
    return load(add_relu_path)


def add_relu_ref(x):
    return np.maximum(x + CONSTS, 0)


@pytest.fixture(scope="module")
def multi():
    """Two inputs and two outputs of different dtypes."""
    body = """
  const float* a = inputs[0]; const int32_t* b = inputs[1];
  float* s = outputs[0]; int64_t* m = outputs[1];
  for (int r = 0; r < 3; r++) {
    int64_t best = 0;
    for (int c = 0; c < 5; c++) {
      s[r * 5 + c] = a[r * 5 + c] * 2 + (float)b[c];
      if (a[r * 5 + c] > a[r * 5 + best]) best = c;
    }
    m[r] = best;
  }"""
    return load(build("multi", [("a", "float32", (3, 5)), ("b", "int32", (5,))],
                      [("s", "float32", (3, 5)), ("m", "int64", (3,))], body))


@pytest.fixture(scope="module")
def counter_path():
    """Counts its runs in the arena: state is per instance."""
    body = """
  int64_t* count = (int64_t*)arena;
  *count += 1;
  *(int64_t*)outputs[0] = *count + *(const int64_t*)inputs[0];"""
    return build("counter", [("x", "int64", ())], [("n", "int64", ())], body, arena=64)


CHUNKS_MAX = 10000
CHUNKS = dict(
    name="chunks",
    inputs=[("n", "int64", (1,))],
    outputs=[("hits", "int32", (CHUNKS_MAX,)), ("chunks", "int64", (256, 2)),
             ("nchunks", "int64", (1,)), ("nested", "int64", (1,))],
    prelude="""
typedef struct { int32_t* hits; int64_t* chunks; int64_t count; int64_t nested; } chunk_ctx;
typedef struct { int64_t calls, begin, end; } inner_ctx;
static void inner(void* p, int64_t b, int64_t e) {
  inner_ctx* k = p; k->calls++; k->begin = b; k->end = e;
}
static void body(void* p, int64_t b, int64_t e) {
  chunk_ctx* k = p;
  int64_t slot = __atomic_fetch_add(&k->count, 1, __ATOMIC_RELAXED);
  if (slot < 256) { k->chunks[2 * slot] = b; k->chunks[2 * slot + 1] = e; }
  for (int64_t i = b; i < e; i++) k->hits[i] += 1;
  inner_ctx in = {0, 0, 0};
  ember_parallel_for(3, inner, &in);   /* nested: must run inline, in one call */
  if (!(in.calls == 1 && in.begin == 0 && in.end == 3)) __atomic_store_n(&k->nested, 0, __ATOMIC_RELAXED);
}""",
    body="""
  int64_t n = *(const int64_t*)inputs[0];
  memset(outputs[0], 0, sizeof(int32_t) * 10000);
  memset(outputs[1], 0, sizeof(int64_t) * 512);
  chunk_ctx k = { outputs[0], outputs[1], 0, 1 };
  ember_parallel_for(n, body, &k);
  *(int64_t*)outputs[2] = k.count;
  *(int64_t*)outputs[3] = k.nested;""",
)


@pytest.fixture(scope="module")
def chunks_path():
    return build(**CHUNKS)


# ---- loading and describing -------------------------------------------------------------------

def test_describes_the_model(add_relu, add_relu_path):
    m = add_relu
    assert m.input_names == ["x"] and m.output_names == ["y"]
    assert m.input_types == [TensorType((ROWS, COLS), "float32")]
    assert m.output_types == [TensorType((ROWS, COLS), "float32")]
    assert m.arena_bytes == ROWS * COLS * 4
    assert m.metadata["name"] == "add_relu" and m.metadata["format"] == 1
    assert m.name == "add_relu"
    assert m.path == add_relu_path
    assert "add_relu" in repr(m) and "float32[4, 64]" in repr(m)


def test_run_matches_numpy(add_relu):
    x = np.random.default_rng(0).standard_normal((ROWS, COLS)).astype(np.float32)
    out = add_relu.run({"x": x})
    assert isinstance(out, OrderedDict) and list(out) == ["y"]
    np.testing.assert_array_equal(out["y"], add_relu_ref(x))
    np.testing.assert_array_equal(add_relu(x), add_relu_ref(x))


def test_big_outputs_are_recycled_only_when_dropped():
    """An output array the caller has dropped is written again by a later run (no page faults
    on fresh memory); one the caller keeps, directly or through a view, never is."""
    n = 512 * 1024                       # 2 MiB of float32: above the recycling threshold
    body = f"""
  const float* x = inputs[0]; float* y = outputs[0];
  for (int64_t i = 0; i < {n}; i++) y[i] = 2.0f * x[i];"""
    m = load(build("twice", [("x", "float32", (512, 1024))], [("y", "float32", (512, 1024))], body))
    xs = [np.full((512, 1024), k, np.float32) for k in range(4)]
    first = m.run({"x": xs[0]})["y"]
    where = first.ctypes.data
    del first
    again = m.run({"x": xs[1]})["y"]
    assert again.ctypes.data == where          # dropped: its memory is reused
    kept = m.run({"x": xs[2]})["y"]            # `again` is still held: a new array
    assert kept.ctypes.data != again.ctypes.data
    view = again[100:]
    del again
    third = m.run({"x": xs[3]})["y"]
    assert third.ctypes.data not in (where, kept.ctypes.data)   # the view keeps the memory
    np.testing.assert_array_equal(view, 2.0)
    np.testing.assert_array_equal(kept, 4.0)
    np.testing.assert_array_equal(third, 6.0)


def test_several_inputs_and_outputs_in_model_order(multi):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.integers(-5, 5, 5).astype(np.int32)
    out = multi.run({"b": b, "a": a})   # feed order does not matter
    assert list(out) == ["s", "m"]
    assert out["s"].dtype == np.float32 and out["m"].dtype == np.int64
    np.testing.assert_array_equal(out["s"], a * 2 + b.astype(np.float32))
    np.testing.assert_array_equal(out["m"], a.argmax(axis=1))
    s, m = multi(a, b)
    np.testing.assert_array_equal(m, a.argmax(axis=1))


def test_non_contiguous_inputs_are_accepted(add_relu):
    big = np.random.default_rng(2).standard_normal((ROWS, 2 * COLS)).astype(np.float32)
    x = big[:, ::2]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(add_relu(x), add_relu_ref(np.ascontiguousarray(x)))
    xt = np.asfortranarray(big[:, :COLS])
    np.testing.assert_array_equal(add_relu(xt), add_relu_ref(big[:, :COLS]))


def test_instances_are_independent(counter_path):
    a, b = load(counter_path), load(counter_path)
    zero = np.array(0, dtype=np.int64)
    assert [int(a(zero)) for _ in range(3)] == [1, 2, 3]
    assert int(b(zero)) == 1          # its own arena
    assert int(a(np.array(10, dtype=np.int64))) == 14
    del a
    assert int(b(zero)) == 2


# ---- input checking ---------------------------------------------------------------------------

def test_inputs_and_constants_that_are_outputs_still_feed_kernels():
    """Regression: a kernel read an input that is also an output from the output buffer, which
    is only filled after the kernels run."""
    import ember
    from ember.graph import GraphBuilder

    b = GraphBuilder("echo")
    x = b.input("x", TensorType((4,), "float32"))
    k = b.const(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    mod = ember.compile(b.finish([b.op("relu", [x]), x, b.op("mul", [x, k]), k]), cflags=("-O1",))
    xs = np.array([1.0, -2.0, 3.0, -4.0], np.float32)
    relu, same, prod, const = mod.run({"x": xs}).values()
    np.testing.assert_array_equal(relu, np.maximum(xs, 0))
    np.testing.assert_array_equal(same, xs)
    np.testing.assert_array_equal(prod, xs * [1, 2, 3, 4])
    np.testing.assert_array_equal(const, [1, 2, 3, 4])


def test_wrong_dtype_is_refused(add_relu):
    x = np.zeros((ROWS, COLS), dtype=np.float64)
    with pytest.raises(InputError) as e:
        add_relu.run({"x": x})
    msg = str(e.value)
    assert "'x'" in msg and "float32[4, 64]" in msg and "float64[4, 64]" in msg
    assert e.value.code == "E302"
    with pytest.raises(InputError):
        add_relu(x.tolist())     # a list becomes float64: still no silent cast
    with pytest.raises(InputError):
        add_relu(np.zeros((ROWS, COLS), dtype=">f4"))   # not native byte order


def test_wrong_shape_is_refused(add_relu):
    with pytest.raises(InputError) as e:
        add_relu.run({"x": np.zeros((ROWS, COLS + 1), dtype=np.float32)})
    assert "'x'" in str(e.value) and "float32[4, 64]" in str(e.value) and "float32[4, 65]" in str(e.value)
    with pytest.raises(InputError):
        add_relu(np.zeros((ROWS * COLS,), dtype=np.float32))


def test_missing_and_unknown_inputs_are_refused(multi):
    a = np.zeros((3, 5), np.float32)
    b = np.zeros(5, np.int32)
    with pytest.raises(InputError, match="missing input.*'b'"):
        multi.run({"a": a})
    with pytest.raises(InputError, match="unknown input.*'c'"):
        multi.run({"a": a, "b": b, "c": b})
    with pytest.raises(InputError, match="unknown input.*'c'"):
        multi.run({"a": a, "c": b})
    with pytest.raises(InputError, match="takes 2 input"):
        multi(a)
    with pytest.raises(InputError, match="'b'.*int32"):
        multi(a, b.astype(np.int64))


def test_failure_in_the_model_raises(tmp_path):
    body = """
  const float* x = inputs[0];
  if (x[0] < 0) { ember_set_error("negative first input %g", (double)x[0]); return 3; }
  if (x[0] > 100) return 7;
  memcpy(outputs[0], x, 8);"""
    m = load(build("failing", [("x", "float32", (2,))], [("y", "float32", (2,))], body))
    np.testing.assert_array_equal(m(np.array([1, 2], np.float32)), [1, 2])
    with pytest.raises(EmberRuntimeError, match="negative first input -1"):
        m(np.array([-1, 2], np.float32))
    with pytest.raises(EmberRuntimeError, match="status 7"):
        m(np.array([1000, 2], np.float32))
    np.testing.assert_array_equal(m(np.array([3, 4], np.float32)), [3, 4])


def test_profile_reports_kernel_totals(add_relu):
    """Artifacts compiled with profiling export ember_profile (kernel times in ns and names)."""
    prelude = """
static unsigned long long ns[3] = {1500000000ULL, 250000000ULL, 0};
static const char* const names[3] = {"conv", "relu", "conv"};
__attribute__((visibility("default"))) int ember_profile(const unsigned long long** t, const char* const** n) {
  *t = ns; *n = names; return 3;
}"""
    body = "  ns[2] += 500000000ULL;\n  memcpy(outputs[0], inputs[0], 4);"
    m = load(build("profiled", [("x", "float32", (1,))], [("y", "float32", (1,))], body, prelude=prelude))
    m(np.zeros(1, np.float32))
    prof = m.profile()
    assert list(prof) == ["conv", "relu"]
    assert prof["conv"] == pytest.approx(2.0) and prof["relu"] == pytest.approx(0.25)
    with pytest.raises(EmberRuntimeError, match="profil"):
        add_relu.profile()


# ---- artifacts --------------------------------------------------------------------------------

def test_artifact_is_sealed(add_relu_path):
    assert trailer_ok(add_relu_path)
    data = add_relu_path.read_bytes()
    assert data[-TRAILER_SIZE:][:8] == TRAILER_MAGIC
    verify_artifact(add_relu_path)


@pytest.mark.parametrize("damage", ["truncated_tail", "truncated_half", "flipped_byte", "random",
                                    "empty", "random_with_trailer", "no_trailer"])
def test_damaged_artifacts_raise_before_loading(add_relu_path, tmp_path, damage):
    good = add_relu_path.read_bytes()
    rng = np.random.default_rng(3)
    if damage == "truncated_tail":
        data = good[:-100]
    elif damage == "truncated_half":
        data = good[: len(good) // 2]
    elif damage == "flipped_byte":
        data = bytearray(good)
        data[len(data) // 3] ^= 0x40
        data = bytes(data)
    elif damage == "random":
        data = rng.bytes(len(good))
    elif damage == "empty":
        data = b""
    elif damage == "no_trailer":
        data = good[:-TRAILER_SIZE]          # a valid library, but not sealed
    else:                                    # random bytes that carry a valid trailer
        import hashlib
        import struct
        payload = rng.bytes(4096)
        data = payload + TRAILER_MAGIC + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest()
    bad = tmp_path / f"{damage}.so"
    bad.write_bytes(data)
    with pytest.raises(ArtifactError) as e:
        load(bad)
    assert e.value.code == "E303" and str(bad) in str(e.value)


def test_artifact_for_another_processor_is_refused():
    """Compiled for an instruction-set feature this processor lacks: ArtifactError, no SIGILL."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        pytest.skip("the processor check covers x86-64")
    with open("/proc/cpuinfo") as f:
        have = set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    candidates = [("avx512_fp16", "-mavx512fp16", "avx512fp16"), ("avx512_bf16", "-mavx512bf16", "avx512bf16"),
                  ("avx512vbmi", "-mavx512vbmi", "avx512vbmi"), ("avx512f", "-mavx512f", "avx512f"),
                  ("avx2", "-mavx2", "avx2")]
    missing = next((c for c in candidates if c[0] not in have), None)
    if missing is None:
        pytest.skip("this processor has every feature the test could ask for")
    _, flag, name = missing
    src = model_source("foreign", [("x", "float32", (1,))], [("y", "float32", (1,))],
                       "  ((float*)outputs[0])[0] = ((const float*)inputs[0])[0];")
    path = build_shared({"model.c": src}, flags=[flag], name="foreign")
    with pytest.raises(ArtifactError, match=name):
        load(path)


def test_missing_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no artifact"):
        load(tmp_path / "nope.so")
    with pytest.raises(ArtifactError):
        load(tmp_path)


def test_save_and_load_round_trip(add_relu, tmp_path):
    dest = add_relu.save(tmp_path / "saved.so")
    assert dest == tmp_path / "saved.so" and dest.read_bytes() == add_relu.path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["saved.so"]   # no temporary left behind
    assert os.stat(dest).st_mode & stat.S_IRUSR
    m = load(dest)
    x = np.random.default_rng(4).standard_normal((ROWS, COLS)).astype(np.float32)
    np.testing.assert_array_equal(m(x), add_relu_ref(x))
    into_dir = add_relu.save(tmp_path)
    assert into_dir.parent == tmp_path and into_dir.name == add_relu.path.name
    load(into_dir)


def test_ember_errors_share_a_base(add_relu):
    with pytest.raises(EmberError):
        add_relu(np.zeros(3, np.float32))


# ---- the thread pool --------------------------------------------------------------------------

def test_num_threads_get_and_set(add_relu):
    m = add_relu
    default = m.num_threads
    expected = min(len(os.sched_getaffinity(0)), 64) if "EMBER_NUM_THREADS" not in os.environ else default
    assert default == expected
    try:
        m.num_threads = 3
        assert m.num_threads == 3
        x = np.ones((ROWS, COLS), np.float32)
        np.testing.assert_array_equal(m(x), add_relu_ref(x))
        with pytest.raises(EmberError, match="positive integer"):
            m.num_threads = 0
        with pytest.raises(EmberError):
            m.num_threads = 2.5
    finally:
        m.num_threads = default
    assert m.num_threads == default


def test_num_threads_from_environment(add_relu_path):
    code = f"import ember.runtime as r; print(r.load({str(add_relu_path)!r}).num_threads)"
    env = dict(os.environ, EMBER_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@contextlib.contextmanager
def process_threads_at(n):
    """All Modules of the process may use ``n`` threads at once (more than the CPUs, to test
    the pool's logic with many workers)."""
    old = process_threads()
    set_process_threads(n)
    try:
        yield
    finally:
        set_process_threads(old)


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 8])
def test_parallel_for_splits_into_contiguous_chunks(chunks_path, threads):
    m = load(chunks_path)
    old = m.num_threads
    m.num_threads = threads
    with process_threads_at(16):
        try:
            for n in [0, 1, 2, 3, 7, 100, CHUNKS_MAX]:
                out = m(np.array([n], np.int64))
                hits, chunks, nchunks, nested = out
                assert (hits[:n] == 1).all() and (hits[n:] == 0).all(), (threads, n)
                want = 0 if n == 0 else 1 if threads == 1 else min(n, 4 * threads)  # CHUNKS_PER_THREAD
                assert int(nchunks[0]) == want, (threads, n)
                spans = sorted(map(tuple, chunks[: int(nchunks[0])]))
                if spans:
                    assert [b for b, _ in spans] == [0] + [e for _, e in spans[:-1]]
                    assert spans[-1][1] == n
                    sizes = [e - b for b, e in spans]
                    assert max(sizes) - min(sizes) <= 1
                if want > 1:     # a loop nested in a chunk of a real region runs inline
                    assert int(nested[0]) == 1, (threads, n)
        finally:
            m.num_threads = old


def test_modules_share_the_process_threads(chunks_path):
    """A region takes worker slots from the process's counter: with none to spare it runs
    inline on its host thread; it takes at most what is there; it gives them all back."""
    m = load(chunks_path)
    old = m.num_threads
    m.num_threads = 4
    n = 1000
    try:
        for total, threads in [(1, 1), (2, 2), (3, 3), (8, 4)]:
            with process_threads_at(total):
                hits, _, nchunks, _ = m(np.array([n], np.int64))
                assert (hits[:n] == 1).all()
                assert int(nchunks[0]) == (1 if threads == 1 else 4 * threads), (total, int(nchunks[0]))
                assert _WORKER_SLOTS.value == total - 1     # all slots back
    finally:
        m.num_threads = old
    with pytest.raises(EmberError, match="positive integer"):
        set_process_threads(0)


@pytest.fixture
def many_threads():
    with process_threads_at(16):
        yield


def test_many_regions_in_a_row(tmp_path, many_threads):
    """Thousands of small regions: late workers must never run a chunk of the wrong region."""
    prelude = """
typedef struct { int32_t* acc; int32_t round; } bump_ctx;
static void bump(void* p, int64_t b, int64_t e) {
  bump_ctx* k = p;
  for (int64_t i = b; i < e; i++) k->acc[i] += k->round;
}"""
    body = """
  int32_t* acc = outputs[0];
  memset(acc, 0, 64 * sizeof(int32_t));
  for (int32_t r = 1; r <= 3000; r++) {
    bump_ctx k = { acc, r };
    ember_parallel_for(1 + r % 64, bump, &k);
  }"""
    m = load(build("regions", [], [("acc", "int32", (64,))], body, prelude=prelude))
    expected = np.zeros(64, np.int64)
    for r in range(1, 3001):
        expected[: 1 + r % 64] += r
    old = m.num_threads
    try:
        for threads in (2, 4):
            m.num_threads = threads
            for _ in range(3):
                np.testing.assert_array_equal(m.run({})["acc"], expected)
    finally:
        m.num_threads = old


@pytest.mark.parametrize("total", [2, 16])
def test_concurrent_runs_from_host_threads(add_relu_path, chunks_path, total):
    """Different instances (same file and different files) and one shared instance, at once;
    with few process threads (the pools share the slots) and with many."""
    instances = [load(add_relu_path), load(add_relu_path), load(chunks_path)]
    shared = instances[0]
    instances[0].num_threads = 4
    instances[2].num_threads = 4
    errors = []
    x = np.random.default_rng(5).standard_normal((ROWS, COLS)).astype(np.float32)
    ref = add_relu_ref(x)

    def work(m, rounds):
        try:
            for _ in range(rounds):
                if m.input_names == ["x"]:
                    np.testing.assert_array_equal(m(x), ref)
                else:
                    hits = m(np.array([CHUNKS_MAX], np.int64))[0]
                    assert (hits == 1).all()
        except Exception as e:  # reported below
            errors.append(e)

    with process_threads_at(total):
        threads = [threading.Thread(target=work, args=(m, 300)) for m in instances + [shared]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors[0]
    assert _WORKER_SLOTS.value == process_threads() - 1      # every region gave its slots back


def test_pool_survives_fork(add_relu_path):
    """A child forked after the pool started must still run (on its own fresh pool)."""
    code = f"""
import os, numpy as np, ember.runtime as r
m = r.load({str(add_relu_path)!r}); m.num_threads = 4
x = np.ones((4, 64), np.float32)
m(x)
pid = os.fork()
if pid == 0:
    ok = all(np.array_equal(m(x), np.maximum(x + {CONSTS.tolist()!r}, 0).astype(np.float32)) for _ in range(50))
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


# ---- the input pattern shared with the C example ---------------------------------------------

def test_pattern_array():
    f = pattern_array(TensorType((2, 3), "float32"))
    v = (np.arange(6) * 7919) % 1000
    np.testing.assert_array_equal(f.ravel(), (v / 1000 - 0.5).astype(np.float32))
    i = pattern_array(TensorType((6,), "int8"))
    np.testing.assert_array_equal(i, (v % 200 - 100).astype(np.int8))
    assert pattern_array(TensorType((6,), "bool")).tolist() == [bool(x % 2) for x in v]
    assert pattern_array(TensorType((), "float64")).shape == ()
    with pytest.raises(InputError, match="int4"):
        pattern_array(TensorType((3,), "int4"))


def test_narrow_inputs_and_outputs():
    """float8/int4 buffers are one byte an element: given and returned as ml_dtypes arrays, or
    given as their raw bytes; any other dtype is refused before anything runs."""
    import ml_dtypes

    import ember
    from ember.graph import GraphBuilder

    b = GraphBuilder("narrow_io")
    q = b.input("q", TensorType((2, 3), "int4"))
    f = b.input("f", TensorType((4,), "float8_e5m2"))
    mod = ember.compile(b.finish([b.op("transpose", [q], perm=(1, 0)), b.op("cast", [f], to="float32"), f]),
                        cflags=("-O1",))
    qs = np.array([[-8, 7, 0], [1, -1, 3]], ml_dtypes.int4)
    fs = np.array([0.5, -np.inf, 57344, 1e-5], np.float32).astype(ml_dtypes.float8_e5m2)
    t, c, same = mod.run({"q": qs, "f": fs}).values()
    assert t.dtype == ml_dtypes.int4 and t.T.tobytes() == qs.tobytes()
    np.testing.assert_array_equal(c, fs.astype(np.float32))
    assert same.dtype == ml_dtypes.float8_e5m2 and same.tobytes() == fs.tobytes()
    raw = list(mod.run({"q": qs.view(np.uint8), "f": fs.view(np.uint8)}).values())
    assert all(r.tobytes() == o.tobytes() for r, o in zip(raw, (t, c, same)))
    with pytest.raises(InputError, match="int4"):
        mod.run({"q": qs.astype(np.int8), "f": fs})

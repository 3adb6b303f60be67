"""ember.toolchain: building artifacts from C sources and blobs, and the cache."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from ember.errors import ToolchainError
from ember.runtime import load, trailer_ok, verify_artifact
from ember.toolchain import Cache, DEFAULT_CFLAGS, build_shared, cache_dir, runtime_dir


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


def model_source(outputs_body: str, *, outputs=(("y", "float32", (4,)),), inputs=(("x", "float32", (4,)),),
                 prelude: str = "", tag: str = "") -> str:
    def entries(items):
        return [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in items]

    meta = {"format": 1, "ember_version": "0.1.0", "name": "t", "target": "cpu",
            "inputs": entries(inputs), "outputs": entries(outputs), "arena_bytes": 0,
            "constants_bytes": 0, "kernels": 1}
    text = json.dumps(meta).replace('"', '\\"')
    return (f"/* {tag} */\n#include \"ember_kernel.h\"\n"
            f"const char ember_model_metadata[] = \"{text}\";\n"
            "const unsigned long long ember_model_arena_bytes = 0;\n"
            f"{prelude}\n"
            "int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {\n"
            f"  (void)arena; (void)inputs;\n{outputs_body}\n  return 0;\n}}\n")


DOUBLE = "  const float* x = inputs[0]; float* y = outputs[0];\n  for (int i = 0; i < 4; i++) y[i] = 2 * x[i];"


def test_builds_a_loadable_artifact():
    path = build_shared({"model.c": model_source(DOUBLE)}, name="double")
    assert path.is_file() and path.suffix == ".so"
    assert path.parent.parent == cache_dir()
    assert path.name.startswith("double-")
    assert trailer_ok(path)
    verify_artifact(path)
    m = load(path)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(m(x), 2 * x)


def test_only_the_public_api_is_exported(tmp_path):
    path = build_shared({"model.c": model_source(DOUBLE)}, {"ember_constants": b"abc"})
    lib = ctypes.CDLL(str(path))
    for public in ("ember_model_create", "ember_model_run", "ember_metadata", "ember_last_error",
                   "ember_set_num_threads", "ember_num_inputs", "ember_input_info"):
        assert hasattr(lib, public), public
    for internal in ("ember_model_entry", "ember_model_metadata", "ember_parallel_for",
                     "ember_constants", "ember_set_error", "ember_model_arena_bytes"):
        assert not hasattr(lib, internal), internal


@pytest.mark.parametrize("written", [True, False], ids=["object-written", "incbin-assembled"])
def test_blobs_are_aligned_and_intact(written, monkeypatch):
    """Where the host's objects are ELF64, a blob's object is written directly; elsewhere it is
    assembled from .incbin: both give the same symbols, alignment and bytes."""
    from ember.toolchain import cc

    if not written:
        monkeypatch.setattr(cc, "_host_elf_machine", lambda cflags: None)
    elif cc._host_elf_machine(list(DEFAULT_CFLAGS)) is None:
        pytest.skip("the host's objects are not ELF64")
    blobs = {"ember_constants": bytes(range(7)), "second_blob": b"\xff" * 100, "empty": b"",
             "tag": uuid.uuid4().bytes + bytes([written])}      # a library of its own per case
    body = """
  int64_t* o = outputs[0];
  o[0] = (int64_t)((uintptr_t)ember_constants % 64);
  o[1] = (int64_t)((uintptr_t)second_blob % 64);
  o[2] = ember_constants[6];
  o[3] = second_blob[99];"""
    prelude = "extern const unsigned char ember_constants[];\nEMBER_HIDDEN extern const unsigned char second_blob[];"
    path = build_shared({"model.c": model_source(body, outputs=(("o", "int64", (4,)),), prelude=prelude)}, blobs)
    out = load(path)(np.zeros(4, np.float32))
    assert out.tolist() == [0, 0, 6, 255]
    readelf = shutil.which("readelf")
    if readelf:         # the objects ask for no executable stack, so the library has none
        stack = [ln for ln in subprocess.run([readelf, "-lW", str(path)], capture_output=True, text=True).stdout
                 .splitlines() if "GNU_STACK" in ln]
        assert stack and "RWE" not in stack[0], stack


def test_constants_are_not_mapped_executable():
    """Whichever linker links the library (gold where installed, with --rosegment; else the
    compiler's default), the constants lie in no executable segment."""
    import struct

    from ember.toolchain import cc

    if cc._host_elf_machine(list(DEFAULT_CFLAGS)) is None:
        pytest.skip("the host's objects are not ELF64")
    blob = uuid.uuid4().bytes * 4096        # 64 KiB no other part of the library holds
    prelude = "extern const unsigned char ember_constants[];"
    body = "  ((int64_t*)outputs[0])[0] = ember_constants[5];"
    path = build_shared({"model.c": model_source(body, outputs=(("o", "int64", (1,)),), prelude=prelude)},
                        {"ember_constants": blob})
    assert load(path)(np.zeros(4, np.float32)).tolist() == [blob[5]]
    data = path.read_bytes()
    at = data.find(blob)
    assert at > 0
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        kind, flags, offset, _, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1 and flags & 1:         # PT_LOAD, PF_X
            assert not offset <= at < offset + filesz and not offset < at + len(blob) <= offset + filesz


def test_model_without_blobs_may_still_declare_constants():
    body = "  ((int64_t*)outputs[0])[0] = (int64_t)((uintptr_t)ember_constants % 64);"
    prelude = "extern const unsigned char ember_constants[];"
    path = build_shared({"model.c": model_source(body, outputs=(("o", "int64", (1,)),), prelude=prelude)})
    assert load(path)(np.zeros(4, np.float32)).tolist() == [0]


def test_several_translation_units_and_a_shared_header():
    sources = {
        "kernels.h": "float ember_test_scale(float v);\n",
        "scale.c": '#include "ember_kernel.h"\n#include "kernels.h"\nfloat ember_test_scale(float v) { return 3 * v; }\n',
        "model.c": model_source("  const float* x = inputs[0]; float* y = outputs[0];\n"
                                "  for (int i = 0; i < 4; i++) y[i] = ember_test_scale(x[i]);",
                                prelude='#include "kernels.h"'),
    }
    events = []
    path = build_shared(sources, jobs=3, progress=lambda what, done, total: events.append((what, done, total)))
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(load(path)(x), 3 * x)
    assert events[-1][0] == "link" and events[-1][1] == events[-1][2]
    assert [d for _, d, _ in events] == sorted(d for _, d, _ in events)
    assert any("scale.c" in what for what, _, _ in events)
    lib = ctypes.CDLL(str(path))
    assert not hasattr(lib, "ember_test_scale")   # hidden by default


def test_cache_hit_does_not_run_the_compiler(tmp_path, monkeypatch):
    log = tmp_path / "cc.log"
    wrapper = tmp_path / "logging-cc"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\nexec cc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    sources = {"model.c": model_source(DOUBLE, tag=uuid.uuid4().hex)}
    first = build_shared(sources)
    calls = log.read_text().splitlines()
    assert any(" -c " in f" {c} " for c in calls) and any("-shared" in c for c in calls)
    t0 = time.perf_counter()
    second = build_shared(sources)
    elapsed = time.perf_counter() - t0
    assert second == first
    assert log.read_text().splitlines() == calls, "the compiler ran on a cache hit"
    assert elapsed < 0.5


def test_key_covers_sources_blobs_and_flags():
    src = {"model.c": model_source(DOUBLE)}
    base = build_shared(src, {"ember_constants": b"\x00" * 8})
    assert build_shared(src, {"ember_constants": b"\x00" * 8}) == base
    assert build_shared(src, {"ember_constants": b"\x00" * 7 + b"\x01"}) != base
    assert build_shared(src, {"ember_constants": b"\x00" * 8}, flags=["-O2"]) != base
    assert build_shared({"model.c": src["model.c"] + "\n"}, {"ember_constants": b"\x00" * 8}) != base


def test_damaged_cache_entry_is_rebuilt():
    src = {"model.c": model_source(DOUBLE)}
    path = build_shared(src)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    again = build_shared(src)
    assert again == path and again.read_bytes() == good


def test_bit_flipped_cache_entry_is_rebuilt():
    """A damaged entry whose trailer is intact (a flipped bit) is found by its hash."""
    src = {"model.c": model_source(DOUBLE, tag=uuid.uuid4().hex)}
    path = build_shared(src)
    good = path.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    path.write_bytes(bytes(bad))
    assert trailer_ok(path)
    again = build_shared(src)
    assert again.read_bytes() == good
    np.testing.assert_array_equal(load(again)(np.arange(4, dtype=np.float32)), 2 * np.arange(4, dtype=np.float32))


def test_native_identity_names_the_processor_and_is_stable():
    """With -march=native the key holds what the compiler makes of it here (its compiler
    proper's command line), without the temporary file names that change from run to run."""
    from ember.toolchain import cc

    compiler = cc.find_compiler()
    flags = list(DEFAULT_CFLAGS)
    cc._native.clear()
    first = cc._native_identity(compiler, flags)
    cc._native.clear()
    assert cc._native_identity(compiler, flags) == first
    assert "cc1" in first
    assert cc._native_identity(compiler, ["-O2"]) == ""


def test_cache_dir_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    path = build_shared({"model.c": model_source(DOUBLE)})
    assert (tmp_path / "explicit") in path.parents
    monkeypatch.delenv("EMBER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ember"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ember"


def test_concurrent_builds_of_the_same_source(tmp_path):
    """Several processes build the same (new) artifact at once: all succeed, one entry results."""
    src = model_source(DOUBLE, tag=uuid.uuid4().hex)
    (tmp_path / "model.c").write_text(src)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from ember.toolchain import build_shared
        print(build_shared({{"model.c": Path({str(tmp_path / "model.c")!r}).read_text()}}, name="race"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=dict(os.environ)) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    path = Path(paths.pop())
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(load(path)(x), 2 * x)
    entries = [p.name for p in path.parent.iterdir()]
    assert [e for e in entries if e.startswith("race-")] == [path.name]
    assert not [e for e in entries if e.endswith(".tmp")]       # no temporaries left in the cache
    assert not any((path.parent / ".building").iterdir())       # nor build folders


def test_compiler_error_is_reported_with_file_and_line():
    bad = model_source("  float* y = outputs[0];\n  y[0] = undeclared_variable;")
    with pytest.raises(ToolchainError) as e:
        build_shared({"model.c": bad})
    msg = str(e.value)
    assert e.value.code == "E202"
    assert "model.c:" in msg and "undeclared_variable" in msg and "error" in msg
    lineno = bad.splitlines().index("  y[0] = undeclared_variable;") + 1
    assert f"model.c:{lineno}:" in msg
    assert "/tmp" not in msg.split("\n")[0]
    assert e.value.stderr and e.value.command


def test_link_error_names_the_contract():
    src = '#include "ember_kernel.h"\nint unrelated(void) { return 1; }\n'
    with pytest.raises(ToolchainError, match="ember_model_entry"):
        build_shared({"model.c": src})


def test_missing_compiler(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/ember-test-cc")
    with pytest.raises(ToolchainError, match="not found"):
        build_shared({"model.c": model_source(DOUBLE)})


@pytest.mark.parametrize("sources,blobs", [
    ({"../model.c": "x"}, None),
    ({"model.txt": "x"}, None),
    ({"runtime.c": "x"}, None),
    ({}, None),
    ({"model.c": "x"}, {"not a symbol": b""}),
])
def test_bad_names_are_refused(sources, blobs):
    with pytest.raises(ToolchainError):
        build_shared(sources, blobs)


def test_default_flags_and_runtime_files():
    for flag in ("-O3", "-march=native", "-fPIC", "-fvisibility=hidden", "-std=gnu11",
                 "-ffp-contract=fast", "-fno-math-errno"):
        assert flag in DEFAULT_CFLAGS
    names = {p.name for p in runtime_dir().iterdir()}
    assert {"ember_kernel.h", "ember_runtime.h", "runtime.c", "threadpool.c"} <= names


# ---- the generic cache ------------------------------------------------------------------------

def test_cache_put_and_get(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    cache = Cache("things", suffix=".bin")
    assert cache.root == tmp_path / "cache" / "things"
    assert cache.get("abc") is None and "abc" not in cache
    src = tmp_path / "payload"
    src.write_bytes(b"hello")
    src.chmod(0o644)
    path = cache.put("abc", src)
    assert path == cache.root / "abc.bin" and path.read_bytes() == b"hello" and src.exists()
    assert cache.get("abc") == path and "abc" in cache
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    cache.put("abc", src)   # replacing is harmless
    assert cache.put_bytes("def", b"xyz").read_bytes() == b"xyz"
    moved = cache.put("ghi", src, move=True)
    assert moved.read_bytes() == b"hello" and not src.exists()
    assert sorted(p.name for p in cache.root.iterdir()) == ["abc.bin", "def.bin", "ghi.bin"]
    cache.remove("def")
    assert cache.get("def") is None
    for bad in ("../escape", "", "a/b", ".hidden", "x" * 201, None, 7):
        with pytest.raises(ToolchainError, match="invalid cache key") as e:
            cache.get(bad)
        assert e.value.code == "E202"
    with pytest.raises(ToolchainError):
        cache.put_bytes("", b"")


def test_cache_entry_is_whole_or_absent_after_a_crash(tmp_path):
    """A process killed while it stores an entry (after writing, before the rename) leaves no
    entry, only a temporary file, which a later scratch_dir() removes once it is a day old."""
    root = tmp_path / "crash"
    code = f"""
import os
from ember.toolchain import Cache
cache = Cache(root={str(root)!r})
os.replace = lambda *a: os._exit(9)
cache.put_bytes("key", b"x" * 100000)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    cache = Cache(root=root)
    assert cache.get("key") is None
    leftovers = [p for p in root.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    cache.scratch_dir()
    assert leftovers[0].exists()                     # too young to be someone else's leftover
    old = time.time() - 2 * 86400
    os.utime(leftovers[0], (old, old))
    cache.scratch_dir()
    assert not leftovers[0].exists()


def test_failed_put_leaves_nothing(tmp_path, monkeypatch):
    cache = Cache(root=tmp_path / "c")
    src = tmp_path / "src"
    src.write_bytes(b"y" * 1000)

    def interrupted(a, b, *args, **kw):
        Path(b).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("shutil.copyfile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.put("key", src)
    assert cache.get("key") is None and list(cache.root.iterdir()) == []


def test_cache_with_explicit_root(tmp_path):
    cache = Cache(root=tmp_path / "elsewhere")
    assert cache.put_bytes("k", b"v") == tmp_path / "elsewhere" / "k"

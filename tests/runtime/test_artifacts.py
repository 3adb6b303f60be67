"""Artifacts are loaded by content and released when unused: never a stale result.

Each ``stale`` test here returned the old model's results before artifacts were loaded by content
(``dlopen`` hands back a library already loaded from the same path name) or before the model
cache key covered the model's external data."""

from __future__ import annotations

import gc
import hashlib
import importlib
import os
import shutil
import struct
import subprocess
import sys
import threading
import weakref

import numpy as np
import onnx
import pytest

import ember
from ember.errors import ArtifactError
from ember.runtime import library, load, process_threads, set_process_threads
from ember.runtime.artifact import TRAILER_MAGIC
from ember.runtime.module import _WORKER_SLOTS
from ember.toolchain import build_shared

from .models import const_model, scale_source


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


N = 1 << 18      # floats: a 1 MiB output, which the Module recycles


def scale_artifact(scale: float):
    return build_shared({"model.c": scale_source(N, f"{scale!r}f")}, name="scale")


X = np.arange(N, dtype=np.float32) / N


def maps() -> str:
    with open("/proc/self/maps") as f:
        return f.read()


def threads() -> int:
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("Threads:")).split()[1])


def mapped(lib) -> bool:
    """Whether the library of that digest is mapped into the process."""
    return f"ember-{lib.id[:16]}" in maps() or f"{lib.id}.so" in maps()


def add_model(c: float) -> onnx.ModelProto:
    return const_model("Add", c, 8)


@pytest.fixture(params=["memfd", "file"])
def strategy(request, monkeypatch):
    """Both ways of loading a private copy: memory files, and files in a private folder."""
    if request.param == "file":
        monkeypatch.setattr(library, "_memfd_works", False)
    elif not library._memfd_possible():
        pytest.skip("no memfd_create here")
    return request.param


# ---- never a stale result ---------------------------------------------------------------------

def test_stale_compile_save_load_over_the_same_path(tmp_path, strategy):
    """The reported bug: a second model saved to the same path must be the one that runs."""
    x = np.arange(8, dtype=np.float32)
    path = tmp_path / "m.ember"
    ember.compile(add_model(1.0), cflags=("-O1",)).save(path)
    first = ember.load(path)
    ember.compile(add_model(2.0), cflags=("-O1",)).save(path)
    second = ember.load(path)
    np.testing.assert_array_equal(second(x), x + 2)
    np.testing.assert_array_equal(first(x), x + 1)        # both stay loaded, each its own
    del first
    gc.collect()
    ember.compile(add_model(3.0), cflags=("-O1",)).save(path)
    np.testing.assert_array_equal(ember.load(path)(x), x + 3)


def test_stale_save_writes_what_the_module_runs(tmp_path, strategy):
    path = tmp_path / "m.so"
    path.write_bytes(scale_artifact(2.0).read_bytes())
    m2 = load(path)
    path.write_bytes(scale_artifact(3.0).read_bytes())      # rewritten in place, same size
    m3 = load(path)
    np.testing.assert_array_equal(m3(X), X * 3)
    again = load(m2.save(tmp_path / "again.so"))
    np.testing.assert_array_equal(again(X), X * 2)
    np.testing.assert_array_equal(m2(X), X * 2)


def test_artifact_changed_after_loading_does_not_change_the_module(tmp_path, strategy):
    path = tmp_path / "m.so"
    path.write_bytes(scale_artifact(2.0).read_bytes())
    m = load(path)
    with open(path, "r+b") as f:          # damage the file in place: the Module runs its own copy
        f.seek(100)
        f.write(b"\xff" * 4000)
    np.testing.assert_array_equal(m(X), X * 2)
    with pytest.raises(ArtifactError, match="corrupt"):
        load(path)


def test_same_content_shares_one_library(tmp_path, strategy):
    src = scale_artifact(4.0)
    copy = tmp_path / "copy.so"
    copy.write_bytes(src.read_bytes())
    a, b, c = load(src), load(src), load(copy)
    assert a._library is b._library is c._library
    assert a._model != b._model                          # each Module has its own instance
    for m in (a, b, c):
        np.testing.assert_array_equal(m(X), X * 4)


def test_concurrent_loads_of_one_artifact(tmp_path, strategy):
    src = scale_artifact(5.0)
    got, errors = [], []

    def work():
        try:
            got.append(load(src))
        except Exception as e:     # reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    assert len({id(m._library) for m in got}) == 1
    np.testing.assert_array_equal(got[0](X), X * 5)


def test_read_only_folder(tmp_path, strategy):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "m.so").write_bytes(scale_artifact(6.0).read_bytes())
    folder.chmod(0o555)
    try:
        np.testing.assert_array_equal(load(folder / "m.so")(X), X * 6)
        assert sorted(p.name for p in folder.iterdir()) == ["m.so"]
    finally:
        folder.chmod(0o755)


def test_memory_files_that_cannot_hold_code_fall_back_to_files(monkeypatch):
    """Where a memory file cannot be opened as a library (vm.memfd_noexec, say), the first load
    falls back to a file in the private folder, and later loads go there directly."""
    if not library._memfd_possible():
        pytest.skip("no memfd_create here")
    real = library._Copy.dlopen
    tried = []

    def noexec(self, digest):
        tried.append(self.path is None)
        if self.path is None:
            raise OSError("failed to map segment from shared object")
        return real(self, digest)

    monkeypatch.setattr(library._Copy, "dlopen", noexec)
    monkeypatch.setattr(library, "_memfd_works", None)
    m = load(scale_artifact(7.5))
    np.testing.assert_array_equal(m(X), X * 7.5)
    assert tried == [True, False] and library._memfd_works is False
    m2 = load(scale_artifact(8.5))
    np.testing.assert_array_equal(m2(X), X * 8.5)
    assert tried == [True, False, False]
    payload = b"not a library" * 100       # sealed, so only dlopen can refuse it
    sealed = payload + TRAILER_MAGIC + struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest()
    with pytest.raises(ArtifactError, match="cannot load the artifact junk"):
        library.load_bytes(sealed, "junk")


def test_private_folder_holds_nothing_once_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(library, "_memfd_works", False)
    m = load(scale_artifact(7.0))
    assert list(library._private_folder().iterdir()) == []
    np.testing.assert_array_equal(m(X), X * 7)


def test_private_folders_of_dead_processes_are_removed(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    stale = tmp_path / f"{library._FOLDER_PREFIX}{dead}-abc"
    stale.mkdir()
    (stale / "x.so").write_bytes(b"left by a killed process")
    alive = tmp_path / f"{library._FOLDER_PREFIX}{os.getpid()}-abc"
    alive.mkdir()
    library._sweep(tmp_path)
    assert not stale.exists() and alive.exists()


# ---- released when unused ----------------------------------------------------------------------

def test_library_is_released_with_its_last_module():
    src = scale_artifact(8.0)
    a, b = load(src), load(src)
    lib = weakref.ref(a._library)
    digest = a._library.id
    assert mapped(a._library)
    a(X)
    del a
    gc.collect()
    assert lib() is not None and mapped(lib())
    np.testing.assert_array_equal(b(X), X * 8)
    del b
    gc.collect()
    assert lib() is None
    assert f"ember-{digest[:16]}" not in maps() and f"{digest}.so" not in maps()
    assert digest not in {x.id for x in library.live_libraries()}


def test_outputs_outlive_the_library():
    """Outputs are numpy's memory (the recycled ones too): valid after the library is gone."""
    m = load(scale_artifact(9.0))
    y1 = m(X)
    del y1
    y2 = m(X)                    # recycled
    y3 = m(X)
    lib = weakref.ref(m._library)
    del m
    gc.collect()
    assert lib() is None
    np.testing.assert_array_equal(y2, X * 9)
    np.testing.assert_array_equal(y3, X * 9)
    y2 += 1


def test_workers_stop_when_the_library_is_released(four_threads):
    base = threads()
    m = load(scale_artifact(10.0))
    m.num_threads = 4
    np.testing.assert_array_equal(m(X), X * 10)
    assert threads() == base + 3         # the pool's workers
    other = load(scale_artifact(11.0))   # the slots are shared by every library
    other.num_threads = 4
    np.testing.assert_array_equal(other(X), X * 11)
    del m
    gc.collect()
    assert threads() == base + 3
    set_process_threads(3)               # through a library that is still loaded
    assert _WORKER_SLOTS.value == 2
    np.testing.assert_array_equal(other(X), X * 11)
    del other
    gc.collect()
    assert threads() == base
    set_process_threads(4)               # directly, if no other library is loaded
    assert _WORKER_SLOTS.value == 3
    m = load(scale_artifact(10.0))       # loaded again: a fresh library and pool
    m.num_threads = 4
    np.testing.assert_array_equal(m(X), X * 10)
    assert _WORKER_SLOTS.value == 3      # every region gave its slots back


def test_stopped_workers_start_again(four_threads):
    """ember_stop_workers joins the pool's workers; the next region starts them again."""
    m = load(scale_artifact(14.5))
    m.num_threads = 4
    base = threads()
    for _ in range(3):
        np.testing.assert_array_equal(m(X), X * 14.5)
        assert threads() == base + 3
        m._library.fns["ember_stop_workers"]()
        assert threads() == base
    assert _WORKER_SLOTS.value == 3


def test_release_under_concurrent_runs_of_other_modules():
    """Libraries released while other modules run on other threads: no crash, no lost slots."""
    keep = load(scale_artifact(12.0))
    keep.num_threads = 2
    stop, errors = threading.Event(), []

    def run():
        try:
            while not stop.is_set():
                np.testing.assert_array_equal(keep(X), X * 12)
        except Exception as e:    # reported below
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    try:
        for k in range(5):
            m = load(scale_artifact(13.0 + k))
            m.num_threads = 2
            np.testing.assert_array_equal(m(X), X * (13.0 + k))
            del m
            gc.collect()
    finally:
        stop.set()
        t.join(timeout=60)
    assert not errors, errors[0]
    assert _WORKER_SLOTS.value == process_threads() - 1


def test_release_in_a_child_process_after_fork():
    """fork() after a library was released (its fork handler must be gone with it), then a
    library released in the child."""
    code = f"""
import gc, os, numpy as np
from ember.runtime import load
gone = load({str(scale_artifact(3.5))!r}); gone.num_threads = 2
x = np.ones({N}, np.float32)
assert (gone(x) == 3.5).all()
del gone
m = load({str(scale_artifact(2.5))!r}); m.num_threads = 2
m(x)
pid = os.fork()
if pid == 0:
    ok = bool((m(x) == 2.5).all())
    del m; gc.collect()
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), bool((m(x) == 2.5).all()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"]


# ---- the model cache --------------------------------------------------------------------------

def test_stale_external_data_changes_are_compiled(tmp_path):
    """Weights in an ONNX external-data file: changing the file compiles the model again."""
    x = np.arange(8, dtype=np.float32)
    path = tmp_path / "ext.onnx"
    onnx.save_model(add_model(1.0), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    np.testing.assert_array_equal(ember.compile(path, cflags=("-O1",))(x), x + 1)
    (tmp_path / "weights.bin").write_bytes(np.full(8, 5.0, np.float32).tobytes())
    np.testing.assert_array_equal(ember.compile(path, cflags=("-O1",))(x), x + 5)
    steps: list[str] = []
    np.testing.assert_array_equal(ember.compile(path, cflags=("-O1",), progress=steps.append)(x), x + 5)
    assert any("found in cache" in s for s in steps), steps


def test_model_key_covers_every_input_of_a_compile(tmp_path, monkeypatch):
    build = importlib.import_module("ember.driver.compile")
    from ember.target import resolve

    path = tmp_path / "ext.onnx"
    onnx.save_model(add_model(1.0), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.bin", size_threshold=0)
    tgt = resolve("cpu")
    base = dict(model=path, target=tgt, opt_level=3, shapes=None, bounds=None, profile=False, cflags=())
    key = build._model_key(**base)
    assert key is not None and build._model_key(**base) == key
    variants = [dict(opt_level=2), dict(shapes={"x": (8,)}), dict(bounds={"n": 4}), dict(profile=True),
                dict(cflags=("-O1",)), dict(target=tgt.with_knobs({"vector.lanes": 4})),
                dict(target=type(tgt)(tgt.kind, tgt.arch, tgt.features | {"made_up_feature"}, tgt.threads,
                                      tgt.l2_bytes)),
                dict(target=type(tgt)(tgt.kind, tgt.arch, tgt.features, tgt.threads, tgt.l2_bytes // 2))]
    keys = {build._model_key(**{**base, **v}) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    (tmp_path / "w.bin").write_bytes(np.full(8, 2.0, np.float32).tobytes())
    assert build._model_key(**base) != key
    (tmp_path / "w.bin").unlink()
    assert build._model_key(**base) is None           # the frontend will say what is missing
    proto = add_model(1.0)
    k1 = build._model_key(**{**base, "model": proto})
    monkeypatch.setattr(build, "_SOURCE_DIGEST", "yet another ember")
    assert build._model_key(**{**base, "model": proto}) != k1
    assert build._model_key(**{**base, "model": proto.SerializeToString()}) is not None


def test_damaged_model_cache_entry_is_compiled_again(tmp_path):
    build = importlib.import_module("ember.driver.compile")
    from ember.target import resolve
    from ember.toolchain import Cache

    x = np.arange(8, dtype=np.float32)
    m = add_model(7.0)
    ember.compile(m, cflags=("-O1",))
    key = build._model_key(m, resolve("cpu"), 3, None, None, False, ("-O1",))
    entry = Cache("models", suffix=".so").get(key)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    np.testing.assert_array_equal(ember.compile(m, cflags=("-O1",))(x), x + 7)


def test_sealed_copy_is_what_the_load_opens(tmp_path, strategy):
    """``build_shared(loading=True)`` seals the library through a private copy (hashed there)
    that the next load of that content opens; the file on disk carries the same trailer and
    verifies on its own; the copy is taken once, so a later load of a damaged file fails."""
    from ember.runtime.artifact import verify_artifact

    scale = 5.375 if strategy == "memfd" else 5.125     # (a library cache hit is not sealed again)
    path = build_shared({"model.c": scale_source(N, f"{scale!r}f")}, name="scale", loading=True)
    kept = library._kept
    assert kept is not None and kept[0] == verify_artifact(path)
    m = load(path)
    assert library._kept is None and m._library.digest == kept[0]
    np.testing.assert_array_equal(m(X), X * np.float32(scale))
    with open(path, "rb") as f:
        f.seek(-len(TRAILER_MAGIC) - 40, os.SEEK_END)
        assert f.read(len(TRAILER_MAGIC)) == TRAILER_MAGIC
    damaged = tmp_path / "damaged.so"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt"):
        load(damaged)


def test_sealed_copy_of_other_content_is_not_used(tmp_path, strategy):
    """Only a load of the kept copy's own digest takes it; one copy is kept, the last one."""
    a, b = (6.375, 7.375) if strategy == "memfd" else (6.125, 7.125)
    first = build_shared({"model.c": scale_source(N, f"{a!r}f")}, name="scale", loading=True)
    second = build_shared({"model.c": scale_source(N, f"{b!r}f")}, name="scale", loading=True)
    assert library._take_kept(b"\0" * 32) is None and library._kept is not None
    np.testing.assert_array_equal(load(first)(X), X * np.float32(a))      # copied and hashed as usual
    assert library._kept is not None
    np.testing.assert_array_equal(load(second)(X), X * np.float32(b))     # the kept copy
    assert library._kept is None


def test_copy_hashed_while_copied(tmp_path, strategy, monkeypatch):
    """A large artifact is copied by a thread while the loading one hashes the finished pieces
    (``library._copy_hashed``): with the threshold and the pieces made small, a whole
    artifact loads, and one damaged or truncated on disk is refused."""
    monkeypatch.setattr(library, "PIPELINE_BYTES", 1)
    monkeypatch.setattr(library, "_PIECE", 4096)
    scale = 8.375 if strategy == "memfd" else 8.125
    src = build_shared({"model.c": scale_source(N, f"{scale!r}f", constants=1 << 20)}, name="scale")
    path = tmp_path / "m.so"
    data = src.read_bytes()
    path.write_bytes(data)
    np.testing.assert_array_equal(load(path)(X), X * np.float32(scale))
    flipped = bytearray(data)
    flipped[len(data) - 100_000] ^= 0x01
    (tmp_path / "flipped.so").write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="corrupt"):
        load(tmp_path / "flipped.so")
    (tmp_path / "short.so").write_bytes(data[:len(data) // 2] + data[-len(TRAILER_MAGIC) - 40:])
    with pytest.raises(ArtifactError, match="truncated|damaged|corrupt"):
        load(tmp_path / "short.so")


def test_record_of_verified_files_is_bounded(tmp_path, monkeypatch):
    """A process that loads new files for ever keeps the last ``VERIFIED_KEPT`` identities; a
    file forgotten is hashed again (and still loads), one asked again is kept as the newest."""
    from ember.runtime import artifact

    monkeypatch.setattr(artifact, "VERIFIED_KEPT", 3)
    monkeypatch.setattr(artifact, "_verified", {})
    path = build_shared({"model.c": scale_source(N, "8.5f")}, name="scale")
    names = [tmp_path / f"m{k}.so" for k in range(5)]
    for name in names:
        shutil.copyfile(path, name)
        artifact.verify_artifact(name)
    assert len(artifact._verified) == 3
    idents = [artifact.file_identity(os.stat(n), artifact.trailer_digest(n)) for n in names]
    assert not artifact.was_verified(idents[0]) and artifact.was_verified(idents[2])
    artifact.verify_artifact(names[0])            # hashed again: the oldest but one (m3) goes
    assert not artifact.was_verified(idents[3])
    assert all(artifact.was_verified(i) for i in (idents[0], idents[2], idents[4]))
    np.testing.assert_array_equal(load(names[1])(X), X * np.float32(8.5))

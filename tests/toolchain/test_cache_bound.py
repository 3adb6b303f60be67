"""The cache's bound (EMBER_CACHE_MAX), least-recently-used trimming, linked entries, a full disk,
and `ember cache`."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember
from ember.errors import ToolchainError
from ember.toolchain import Cache, cache
from ember.toolchain.cache import cache_limit, trim, usage


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EMBER_CACHE_MAX", raising=False)
    return tmp_path / "cache"


def _entry(c: Cache, key: str, size: int, age_s: float):
    path = c.put_bytes(key, os.urandom(size))
    t = path.stat().st_mtime - age_s
    os.utime(path, (t, t))
    return path


@pytest.mark.parametrize("text,expected", [("", 10 << 30), ("1000", 1000), ("5K", 5 << 10), ("2.5M", int(2.5 * (1 << 20))),
                                           ("3G", 3 << 30), ("1GiB", 1 << 30), ("unlimited", None), ("0", None)])
def test_the_bound_is_read_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv("EMBER_CACHE_MAX", text)
    assert cache_limit() == expected


def test_a_bound_that_is_not_a_size_is_refused(monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_MAX", "lots")
    with pytest.raises(ToolchainError, match="EMBER_CACHE_MAX='lots' is not a size"):
        cache_limit()


def test_trim_removes_the_least_recently_used_entries_of_every_kind(root):
    libs, objs = Cache("lib", suffix=".so"), Cache("obj", suffix=".obj")
    old = _entry(libs, "old", 40_000, 300)
    mid = _entry(objs, "mid", 40_000, 200)
    new = _entry(libs, "new", 40_000, 100)
    used = _entry(objs, "used", 40_000, 400)
    assert objs.get("used") == used           # a hit renews it: now the most recent
    freed = trim(120_000, root=root)
    # over 120 kB: entries go, oldest first, until under 80% of it (96 kB): old, then mid
    assert not old.exists() and not mid.exists() and new.exists() and used.exists()
    assert freed >= 80_000 and usage(root) <= 96_000 + 2 * 4096
    assert trim(10 ** 9, root=root) == 0 and new.exists()


def test_trim_never_removes_the_entry_it_keeps(root):
    libs = Cache("lib", suffix=".so")
    keep = _entry(libs, "keep", 50_000, 1000)
    other = _entry(libs, "other", 50_000, 10)
    trim(60_000, root=root, keep=keep)
    assert keep.exists() and not other.exists()


def test_a_linked_entry_shares_the_file_and_is_counted_once(root, tmp_path):
    libs, models = Cache("lib", suffix=".so"), Cache("models", suffix=".so")
    lib = libs.put_bytes("lib1", os.urandom(100_000))
    model = models.put("model1", lib, link=True)
    assert model.read_bytes() == lib.read_bytes()
    assert os.stat(model).st_ino == os.stat(lib).st_ino
    assert usage(root) < 2 * 100_000
    # both names of a file go together when it is the least recently used
    t = lib.stat().st_mtime - 500
    os.utime(lib, (t, t))
    newer = _entry(libs, "lib2", 100_000, 0)
    trim(150_000, root=root)
    assert not lib.exists() and not model.exists() and newer.exists()


@pytest.mark.parametrize("how", ["put_bytes", "put", "link", "move"])
def test_a_folder_at_an_entrys_name_is_a_miss_and_replaced(root, tmp_path, how):
    c = Cache("models", suffix=".so")
    c.put_bytes("k", b"old")
    path = c.path_for("k")
    path.unlink()
    (path / "inner").mkdir(parents=True)
    (path / "inner" / "file").write_bytes(b"x")
    assert c.get("k") is None
    src = tmp_path / "src.so"
    src.write_bytes(b"new")
    if how == "put_bytes":
        got = c.put_bytes("k", b"new")
    else:
        got = c.put("k", src, link=how == "link", move=how == "move")
    assert got == path and path.is_file() and path.read_bytes() == b"new"
    assert c.get("k") == path


def test_writes_past_the_bound_trim_the_cache(root, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_MAX", "300K")
    c = Cache("things")
    for k in range(4):
        _entry(c, f"e{k}", 100_000, 100 - k)     # e0 oldest
    cache._trimmer.last = 0.0
    c.put_bytes("big", os.urandom(100_000 + (64 << 20)))    # past the bound, and 64 MB: trims now
    names = sorted(p.name for p in c.root.iterdir())
    assert "big" in names and "e0" not in names


def test_a_folder_of_the_callers_own_is_never_trimmed(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_MAX", "1K")
    c = Cache(root=tmp_path / "mine")
    for k in range(3):
        c.put_bytes(f"e{k}", os.urandom(70_000))
    assert sorted(p.name for p in c.root.iterdir()) == ["e0", "e1", "e2"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_a_clear_error_and_leaves_nothing_behind(root, monkeypatch, code):
    c = Cache("things")
    src = root.parent / "payload"
    src.write_bytes(b"x" * 1000)

    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ToolchainError, match="no space left on the disk of Ember's cache") as e:
        c.put_bytes("k", b"y" * 1000)
    assert e.value.code == "E202" and "EMBER_CACHE_MAX" in str(e.value)
    with pytest.raises(ToolchainError, match="no space left"):
        c.put("k2", src)
    assert list(c.root.iterdir()) == []


def _tiny_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], np.arange(4, dtype=np.float32) + 0.5)
    g = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "cache_bound_tiny", [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_compiled_model_is_stored_once_on_disk(root, tmp_path):
    """The model cache's entry is the library cache's entry under a second name, not a copy."""
    path = tmp_path / "m.onnx"
    _tiny_model(path)
    m = ember.compile(str(path))
    np.testing.assert_allclose(m.run({"x": np.ones(4, np.float32)})["y"], np.arange(4) + 0.5)
    (model,) = (root / "models").glob("*.so")
    libs = list((root / "lib").iterdir())
    assert os.stat(model).st_ino in {os.stat(p).st_ino for p in libs}
    again = ember.compile(str(path))     # from the model cache
    np.testing.assert_allclose(again.run({"x": np.full(4, 2, np.float32)})["y"], 2 * (np.arange(4) + 0.5))


def test_ember_cache_shows_and_clears(root, tmp_path):
    path = tmp_path / "m.onnx"
    _tiny_model(path)
    ember.compile(str(path))
    env = {**os.environ, "EMBER_CACHE_MAX": "2G"}
    out = subprocess.run([sys.executable, "-m", "ember.cli", "cache"], capture_output=True, text=True, env=env, check=True)
    assert str(root) in out.stdout and "2.0 GiB" in out.stdout
    assert "models" in out.stdout and "lib" in out.stdout and "obj" in out.stdout
    out = subprocess.run([sys.executable, "-m", "ember.cli", "cache", "--clear"], capture_output=True, text=True, env=env,
                         check=True)
    assert "cleared" in out.stdout
    assert cache.entries(root) == []

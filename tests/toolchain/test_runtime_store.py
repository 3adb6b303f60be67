"""The runtime store (toolchain.cc.RuntimeStore): the runtime's objects and the precompiled
preamble, built once per target (compiler, flags, runtime sources) by `ember prebuild-runtime`
or the first build, apart from the model caches: a build with an empty cache compiles neither,
a damaged entry is built again, a key changes with what the objects depend on, processes filling
the store at once are safe, and a store that cannot be written falls back to the cache."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ember.cli import main as cli_main
from ember.runtime import load
from ember.toolchain import build_shared
from ember.toolchain.cc import (Compiler, RuntimeStore, _object_key, _runtime_units, _setup, prebuild_runtime,
                                runtime_files, runtime_store_dir)

from test_prebuild import HEADER, _sources as _prebuild_sources


def _sources(tag: str = "") -> dict[str, str]:
    """test_prebuild's model (a header, an entry, three kernels), its entry marked with ``tag``."""
    files = _prebuild_sources(HEADER)
    files["model.c"] = files["model.c"].replace('#include "m.h"\n', f'#include "m.h"\n/* {tag} */\n', 1)
    return files


def _check(path: Path) -> None:
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(load(path)(x), 6 * x + 3)


@pytest.fixture
def logged_cc(tmp_path, monkeypatch):
    """A private cache and runtime store, and a compiler that logs its command lines."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBER_RUNTIME_DIR", str(tmp_path / "runtime"))
    log = tmp_path / "cc.log"
    log.write_text("")
    wrapper = tmp_path / "logging-cc"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\nexec cc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    return log


def _runtime_compiles(lines: list[str]) -> list[str]:
    return [c for c in lines if "ember_rt/" in c and " -c " in c]


def _pch_compiles(lines: list[str]) -> list[str]:
    return [c for c in lines if "c-header" in c]


def _entries() -> list[Path]:
    return sorted(RuntimeStore().home.root.glob("*.obj"))


def test_prebuilt_runtime_is_not_compiled_by_a_build_with_an_empty_cache(logged_cc, tmp_path, monkeypatch):
    said = prebuild_runtime({"m.h": HEADER}, pch="m.h")
    assert [s.split(":")[0] for s in said] == ["blocks.c", "runtime.c", "threadpool.c", "m.h (precompiled)"]
    assert all("compiled (" in s for s in said), said
    assert len(_entries()) == 4 and runtime_store_dir() == tmp_path / "runtime"
    before = logged_cc.read_text().splitlines()
    assert len(_runtime_compiles(before)) == 3 and len(_pch_compiles(before)) == 1
    assert all("in the store already" in s for s in prebuild_runtime({"m.h": HEADER}, pch="m.h"))
    for cache in ("cache2", "cache3"):       # a fresh, empty cache each time
        monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / cache))
        n = len(logged_cc.read_text().splitlines())
        _check(build_shared(_sources(cache), pch="m.h"))
        during = logged_cc.read_text().splitlines()[n:]
        assert not _runtime_compiles(during) and not _pch_compiles(during), during
        assert sorted(c.split(" -c ")[1].split()[0] for c in during if " -c " in c) == \
            ["k0.c", "k1.c", "k2.c", "model.c"]
    assert not list((tmp_path / "cache3").glob("runtime/*.obj"))      # nothing of the runtime in the cache


def test_the_first_build_fills_the_store(logged_cc, tmp_path, monkeypatch):
    _check(build_shared(_sources("a"), pch="m.h"))
    first = logged_cc.read_text().splitlines()
    assert len(_runtime_compiles(first)) == 3 and len(_pch_compiles(first)) == 1
    assert len(_entries()) == 4
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "empty"))
    _check(build_shared(_sources("b"), pch="m.h"))
    later = logged_cc.read_text().splitlines()[len(first):]
    assert not _runtime_compiles(later) and not _pch_compiles(later)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_entry_is_built_again(logged_cc, tmp_path, monkeypatch, damage):
    prebuild_runtime({"m.h": HEADER}, pch="m.h")
    whole = {p.name: p.read_bytes() for p in _entries()}
    for p in _entries():
        data = p.read_bytes()
        p.write_bytes({"truncate": data[: len(data) // 2], "flip": data[:100] + bytes([data[100] ^ 1]) + data[101:],
                       "garbage": b"garbage", "empty": b""}[damage])
    n = len(logged_cc.read_text().splitlines())
    _check(build_shared(_sources(damage), pch="m.h"))       # never links a damaged object
    during = logged_cc.read_text().splitlines()[n:]
    assert len(_runtime_compiles(during)) == 3 and len(_pch_compiles(during)) == 1
    assert {p.name: p.read_bytes() for p in _entries()}.keys() == whole.keys()
    assert all(RuntimeStore().valid(p.stem) for p in _entries())
    # and `prebuild-runtime` builds a damaged entry again too
    victim = _entries()[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    said = prebuild_runtime({"m.h": HEADER}, pch="m.h")
    assert sum("compiled (" in s for s in said) == 1 and RuntimeStore().valid(victim.stem)


def test_the_key_covers_compiler_flags_and_sources():
    compiler, cflags, rt, _ = _setup([], None, runtime_files())
    keys = dict(_runtime_units(compiler, cflags, rt))
    assert set(keys) == {n for n in rt if n.endswith(".c")}
    assert dict(_runtime_units(compiler, cflags, rt)) == keys                       # stable
    assert not set(dict(_runtime_units(compiler, [*cflags, "-O2"], rt)).values()) & set(keys.values())
    other = Compiler(compiler.command, compiler.identity + "\n(another version)")
    assert not set(dict(_runtime_units(other, cflags, rt)).values()) & set(keys.values())
    changed = {**rt, "runtime.c": rt["runtime.c"] + b"\n/* changed */\n"}
    moved = dict(_runtime_units(compiler, cflags, changed))
    assert moved["runtime.c"] != keys["runtime.c"] and moved["blocks.c"] == keys["blocks.c"]
    header = {**rt, "ember_kernel.h": rt["ember_kernel.h"] + b"\n"}       # a header: every file's key
    assert not set(dict(_runtime_units(compiler, cflags, header)).values()) & set(keys.values())
    # no model's file is in a runtime object's key; the precompiled header's covers its text
    blob = b"m.h:3:abc"
    assert _object_key(compiler, cflags, blob, "pch:gcc:m.h", b"") != \
        _object_key(compiler, cflags, b"m.h:3:abd", "pch:gcc:m.h", b"")


def test_other_flags_fill_entries_of_their_own(logged_cc):
    prebuild_runtime({"m.h": HEADER}, pch="m.h")
    assert len(_entries()) == 4
    n = len(logged_cc.read_text().splitlines())
    _check(build_shared(_sources("O1"), pch="m.h", flags=["-O1"]))
    during = logged_cc.read_text().splitlines()[n:]
    assert len(_runtime_compiles(during)) == 3 and len(_pch_compiles(during)) == 1
    assert len(_entries()) == 8


def test_concurrent_fills_are_safe(logged_cc, tmp_path):
    """Processes and threads filling the same store at once: every entry whole, no temporary
    left, every build right."""
    script = ("from ember.toolchain.cc import prebuild_runtime\n"
              "prebuild_runtime({'m.h': open(%r).read()}, pch='m.h')\n")
    (tmp_path / "m.h").write_text(HEADER)
    procs = [subprocess.Popen([sys.executable, "-c", script % str(tmp_path / "m.h")]) for _ in range(2)]
    errors: list[BaseException] = []

    def build(tag: str) -> None:
        try:
            _check(build_shared(_sources(tag), pch="m.h"))
        except BaseException as e:      # reported below
            errors.append(e)

    threads = [threading.Thread(target=build, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    assert not errors, errors
    assert len(_entries()) == 4 and all(RuntimeStore().valid(p.stem) for p in _entries())
    assert not [p for p in RuntimeStore().home.root.iterdir() if p.name.startswith(".")]


def test_a_store_that_cannot_be_written_falls_back_to_the_cache(logged_cc, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("EMBER_RUNTIME_DIR", str(blocker / "runtime"))     # under a file: cannot be made
    _check(build_shared(_sources("x"), pch="m.h"))
    spare = sorted((tmp_path / "cache" / "runtime").glob("*.obj"))
    assert len(spare) == 4
    n = len(logged_cc.read_text().splitlines())
    _check(build_shared(_sources("y"), pch="m.h"))
    during = logged_cc.read_text().splitlines()[n:]
    assert not _runtime_compiles(during) and not _pch_compiles(during)


def test_ember_prebuild_runtime(logged_cc, tmp_path, capsys):
    assert cli_main(["prebuild-runtime"]) == 0
    out = capsys.readouterr().out
    assert f"runtime store: {tmp_path / 'runtime'}" in out and "runtime.c: compiled" in out
    assert "model.h (precompiled): compiled" in out
    assert cli_main(["prebuild-runtime"]) == 0
    assert capsys.readouterr().out.count("in the store already") == 4
    assert cli_main(["cache"]) == 0
    assert "runtime store: " in capsys.readouterr().out


def test_prebuild_writes_bytecode_the_interpreter_reads(tmp_path):
    """`ember prebuild-runtime` also writes the bytecode of Ember's modules (cli.compile_bytecode):
    an interpreter that does not write bytecode (-B, PYTHONDONTWRITEBYTECODE) still reads it."""
    from ember.cli import compile_bytecode

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "m.py").write_text("Y = 2\n")
    assert compile_bytecode(pkg).startswith(f"bytecode: 3 of 3 modules of {pkg}")
    import importlib.util

    cached = Path(importlib.util.cache_from_source(str(pkg / "sub" / "m.py")))
    assert cached.is_file()
    # a -B interpreter loads the module from it (-v says where each code object came from)
    err = subprocess.run([sys.executable, "-B", "-v", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
                          "import pkg.sub.m"], capture_output=True, text=True, check=True).stderr
    assert f"code object from '{cached}'" in err

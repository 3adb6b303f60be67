"""toolchain.cc.prebuild: the runtime's objects and the precompiled header, compiled in the
background before the build, which then finds them in the runtime store (the kernels in the
object cache); what fails there is compiled again by the build, which reports it, and nothing
half-made is left."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ember.errors import ToolchainError
from ember.runtime import load
from ember.toolchain import Cache, build_shared
from ember.toolchain.cc import RuntimeStore, _includes_first, prebuild

HEADER = "#include \"ember_kernel.h\"\nstatic inline float ember_test_twice(float v) { return 2 * v; }\n"


def _sources(header: str) -> dict[str, str]:
    entry = ('const char ember_model_metadata[] = "{\\"format\\": 1, \\"ember_version\\": \\"0.1.0\\", '
             '\\"name\\": \\"t\\", \\"target\\": \\"cpu\\", \\"inputs\\": [{\\"name\\": \\"x\\", \\"dtype\\": '
             '\\"float32\\", \\"shape\\": [4]}], \\"outputs\\": [{\\"name\\": \\"y\\", \\"dtype\\": \\"float32\\", '
             '\\"shape\\": [4]}], \\"arena_bytes\\": 0, \\"constants_bytes\\": 0, \\"kernels\\": 1}";\n'
             "const unsigned long long ember_model_arena_bytes = 0;\n"
             "EMBER_HIDDEN float k0(float); EMBER_HIDDEN float k1(float); EMBER_HIDDEN float k2(float);\n"
             "int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {\n"
             "  (void)arena; const float* x = inputs[0]; float* y = outputs[0];\n"
             "  for (int i = 0; i < 4; i++) y[i] = k0(x[i]) + k1(x[i]) + k2(x[i]);\n  return 0;\n}\n")
    files = {"m.h": header, "model.c": '#include "m.h"\n' + entry}
    for k in range(3):
        files[f"k{k}.c"] = f'#include "m.h"\nEMBER_HIDDEN float k{k}(float v) {{ return ember_test_twice(v) + {k}; }}\n'
    return files


@pytest.fixture
def logged_cc(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EMBER_RUNTIME_DIR", str(tmp_path / "runtime"))
    log = tmp_path / "cc.log"
    wrapper = tmp_path / "logging-cc"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\nexec cc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    return log


def test_the_build_finds_what_was_prebuilt(logged_cc):
    sources = _sources(HEADER)
    done = prebuild({"m.h": HEADER}, pch="m.h")
    done.submit("k0.c", sources["k0.c"])
    done.submit("k1.c", sources["k1.c"], key="k1's canonical code")
    said = done.wait()
    assert said.startswith("2 C files, the runtime's 3, the precompiled header compiled in the background"), said
    before = logged_cc.read_text().splitlines()
    assert any("runtime.c" in c for c in before) and any("c-header" in c for c in before)
    path = build_shared(sources, pch="m.h", object_keys={"k1.c": "k1's canonical code"})
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(load(path)(x), 6 * x + 3)
    during = logged_cc.read_text().splitlines()[len(before):]
    assert not any("ember_rt/" in c or "c-header" in c for c in during), during   # not compiled again
    assert [c for c in during if " -c k" in c] and all(" -c k2.c" in c for c in during if " -c k" in c)
    again = prebuild({"m.h": HEADER}, pch="m.h")
    again.submit("k2.c", sources["k2.c"])
    assert again.wait() == "nothing compiled in the background"          # all in the cache now
    assert not list((Cache("obj").root / ".building").iterdir())       # no work folder left


def test_a_kernel_failing_in_the_background_is_reported_by_the_build(logged_cc):
    sources = _sources(HEADER)
    sources["k2.c"] = sources["k2.c"].replace("+ 2;", "+ undeclared_thing;")
    done = prebuild({"m.h": HEADER}, pch="m.h")
    for k in range(3):
        done.submit(f"k{k}.c", sources[f"k{k}.c"])
    assert "1 failed, compiled again by the build" in done.wait()
    objs = Cache("obj")
    stored = sorted(p.name for p in objs.root.iterdir() if p.is_file())
    assert len(stored) == 2                  # k0 and k1: nothing of k2
    assert len(list(RuntimeStore().home.root.glob("*.obj"))) == 3 + 1     # the runtime's and the header
    with pytest.raises(ToolchainError) as e:
        build_shared(sources, pch="m.h")
    assert "] compile k2.c failed" in str(e.value).splitlines()[0] and "undeclared_thing" in str(e.value)
    added = {p.name for p in objs.root.iterdir() if p.is_file()} - set(stored)
    assert len(added) <= 1          # model.c's object at most (compiled beside k2.c): never k2's


def test_close_stops_the_background_compiles(logged_cc):
    done = prebuild({"m.h": HEADER}, pch="m.h")
    for k in range(3):
        done.submit(f"k{k}.c", _sources(HEADER)[f"k{k}.c"])
    done.close()             # an error in the compile: what is queued is dropped, the folder removed
    for t in done._threads:
        t.join(timeout=120)
    deadline = time.monotonic() + 30
    while list((Cache("obj").root / ".building").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list((Cache("obj").root / ".building").iterdir())


def test_what_fails_in_the_background_is_reported_by_the_build(logged_cc):
    bad = HEADER + "static inline float broken(float v) { return v +; }\n"
    done = prebuild({"m.h": bad}, pch="m.h")
    assert done.wait() == "the runtime's 3 compiled in the background" or "precompiled header" not in done.wait()
    objs = Cache("obj")
    stored = sorted(p.name for p in objs.root.iterdir() if p.is_file()) if objs.root.is_dir() else []
    assert stored == []
    assert len(list(RuntimeStore().home.root.glob("*.obj"))) == 3       # the runtime's three objects only
    with pytest.raises(ToolchainError) as e:
        build_shared(_sources(bad), pch="m.h")
    assert "k0.c" in str(e.value) or "k1.c" in str(e.value) or "model.c" in str(e.value)
    assert "m.h:" in str(e.value) and "error" in str(e.value)
    assert sorted(p.name for p in objs.root.iterdir() if p.is_file()) == stored   # no object of a failed compile
    assert len(list(RuntimeStore().home.root.glob("*.obj"))) == 3
    assert not list((objs.root / ".building").iterdir()) and not list((Cache("lib").root / ".building").iterdir())


def test_a_file_that_defines_macros_first_does_not_take_the_precompiled_header(tmp_path, monkeypatch):
    """The header tests a macro that one file defines before including it: that file gets the
    header's other branch, with GCC (which refuses the .gch) and Clang (-include-pch) alike."""
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    header = HEADER.replace("return 2 * v;", "\n#ifdef EMBER_TEST_THRICE\n return 3 * v;\n#else\n return 2 * v;\n#endif\n")
    sources = _sources(header)
    sources["k1.c"] = "#define EMBER_TEST_THRICE 1\n" + sources["k1.c"]
    assert not _includes_first(sources["k1.c"], "m.h") and _includes_first(sources["k0.c"], "m.h")
    assert _includes_first("/* a comment */\n#include  \"m.h\"\n", "m.h")
    path = build_shared(sources, pch="m.h")
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(load(path)(x), 2 * x + (3 * x + 1) + (2 * x + 2))

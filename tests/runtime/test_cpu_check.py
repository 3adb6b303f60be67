"""The load-time processor check covers every extension the build's flags enable: an artifact
compiled for an extension this processor lacks raises ArtifactError when loaded, instead of
dying of an illegal instruction."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from ember.errors import ArtifactError
from ember.toolchain import build_shared, cc, cpu_features

x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 processors only")

MODEL_C = """#include "ember_kernel.h"
const char ember_model_metadata[] = "{\\"format\\": 1, \\"name\\": \\"m\\", \\"inputs\\": [], \\"outputs\\": []}";
const unsigned long long ember_model_arena_bytes = 0;
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {
  (void)arena; (void)inputs; (void)outputs; return 0;
}
"""

# extensions no current processor has all of, none of them in the fixed list the check used to
# test: (the name /proc/cpuinfo gives it, the flag, the name the check reports)
ABSENT = [("xop", "-mxop", "xop"), ("fma4", "-mfma4", "fma4"), ("tbm", "-mtbm", "tbm"),
          ("amx_tile", "-mamx-tile", "amx-tile"), ("sse4a", "-msse4a", "sse4a"),
          ("avx512_vp2intersect", "-mavx512vp2intersect", "avx512vp2intersect")]


def _host_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@x86
def test_extension_the_processor_lacks_is_refused_at_load(tmp_path):
    """Compiled with an extension this processor does not have (none of the fixed list the
    check used to test), loading raises ArtifactError naming it, and nothing crashes."""
    have = _host_flags()
    missing = [(flag, name) for cpuinfo, flag, name in ABSENT if cpuinfo not in have]
    if not have or not missing:
        pytest.skip("cannot tell which extensions this processor lacks")
    flag, name = missing[0]
    script = textwrap.dedent(f"""
        import numpy as np, ember
        from ember.errors import ArtifactError
        from ember.graph import GraphBuilder, TensorType
        b = GraphBuilder("m")
        x = b.input("x", TensorType((64,), "float32"))
        g = b.finish([b.op("relu", [x])])
        try:
            ember.compile(g, cflags=({flag!r},))
        except ArtifactError as e:
            print("REFUSED", e)
        else:
            print("LOADED")
        """)
    env = {**os.environ, "EMBER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"the process died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "REFUSED" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert name in proc.stdout and "which this one lacks" in proc.stdout, proc.stdout


@x86
def test_unknown_or_absent_extensions_in_the_list_are_refused(tmp_path, monkeypatch):
    """Whatever the generated list holds is tested: an extension named by a CPUID leaf this
    processor does not have, or one nothing can detect, makes the check fail."""
    from ember.runtime import load

    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    real = cpu_features.header

    def with_extra(cpuid: str = "", unknown: str = ""):
        def fake(command, flags):
            text = real(command, flags)
            text = text.replace("#define EMBER_CPU_CPUID(X)", "#define EMBER_CPU_CPUID(X)" + cpuid)
            return text.replace('#define EMBER_CPU_UNKNOWN ""', f'#define EMBER_CPU_UNKNOWN "{unknown}"')
        return fake

    monkeypatch.setattr(cpu_features, "header", with_extra(cpuid=' X("fancy-extension", 0x0fffffffu, 0u, 1, 0, 0u)'))
    with pytest.raises(ArtifactError, match="fancy-extension, which this one lacks"):
        load(build_shared({"model.c": MODEL_C}, name="fake1"))
    monkeypatch.setattr(cpu_features, "header", with_extra(unknown="frobnicate"))
    with pytest.raises(ArtifactError, match="frobnicate, which Ember cannot detect"):
        load(build_shared({"model.c": MODEL_C}, name="fake2"))
    monkeypatch.setattr(cpu_features, "header", real)
    load(build_shared({"model.c": MODEL_C}, name="real"))      # this machine has all it was built for


def test_the_feature_list_follows_the_flags():
    """The list is the macros the flags add: none for the baseline, more for wider targets,
    and every feature a -m flag adds appears."""
    compiler = cc.find_compiler()
    if platform.machine() in ("x86_64", "AMD64"):
        base = cpu_features.header(compiler.command, ["-O2", "-march=x86-64"])
        assert 'X("' not in base, base
        v3 = cpu_features.header(compiler.command, ["-O2", "-march=x86-64-v3"])
        for name in ("avx2", "fma", "bmi2", "f16c", "movbe", "sse4.2"):
            assert f'X("{name}"' in v3, (name, v3)
        extra = cpu_features.header(compiler.command, ["-O2", "-mgfni", "-mavx512vnni", "-mxop"])
        for name in ("gfni", "avx512vnni", "avx512f", "xop"):
            assert f'X("{name}"' in extra, (name, extra)
    assert cpu_features.x86_features({"__AVX2__", "__znver3__", "__tune_znver3__", "__FP_FAST_FMA",
                                      "__SSE4_1__", "__AMX_TILE__", "__LAHF_SAHF__",
                                      "__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16"}) == \
        ["amx-tile", "avx2", "cmpxchg16b", "lahf_lm", "sse4.1"]

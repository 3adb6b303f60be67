"""Targets as values: the named targets, their options and ISA descriptions, the ISA modules of
the C preamble, and what the host target keeps."""

from __future__ import annotations

import platform
import re
import subprocess
import sys

import pytest

from ember.codegen import isa_generic
from ember.codegen.c import ISA_MODULES, preamble
from ember.errors import ArtifactError, TargetError
from ember.runtime.artifact import artifact_machine, check_machine, seal_artifact
from ember.target import TARGETS, Target, host, resolve

from .cross import ROOT, zig_missing


def test_named_targets_describe_their_isa():
    a = resolve("aarch64-linux")
    assert (a.triple, a.isa, a.lanes, a.fma, a.dot_kind, a.int8_dot) == ("aarch64-linux-gnu", "neon", 4, True, "", False)
    assert a.describe()["vector_registers"] == 32 and a.lanes_of("int8") == 16
    assert resolve("aarch64-linux+dotprod").dot_kind == "sdot"
    assert resolve("aarch64-linux+i8mm").dot_kind == "usdot"
    a76 = resolve("aarch64-linux -mcpu=cortex-a76")
    assert a76.dot_kind == "sdot" and a76.int8_dot and "-mcpu=cortex_a76" in a76.cflags
    assert a76.spec == "aarch64-linux -mcpu=cortex-a76"
    v7 = resolve("armv7-linux")
    assert (v7.isa, v7.triple, v7.describe()["vector_registers"]) == ("neon", "arm-linux-gnueabihf", 16)
    assert resolve("riscv64-linux").isa == "riscv" and "rvv" in resolve("riscv64-linux+v").features
    w = resolve("wasm32")
    assert (w.isa, w.fma, w.cflags) == ("wasm", False, ("-msimd128",))
    assert all(resolve(n).cross for n in TARGETS)
    keys = {resolve(s).key() for s in ["aarch64-linux", "aarch64-linux+dotprod", "aarch64-linux -mcpu=cortex-a76",
                                       "armv7-linux", "riscv64-linux", "riscv64-linux+v", "wasm32"]}
    assert len(keys) == 7          # every description compiles differently and is cached apart


@pytest.mark.parametrize("spec, message", [
    ("sparc-linux", "unknown target"), ("aarch64-linux+sve", r"no feature '\+sve'"),
    ("aarch64-linux -mcpu=pentium", "does not know the processor"), ("wasm32 -O3", "not understood"),
    ("", "unknown target")])
def test_bad_target_specs_are_refused(spec, message):
    with pytest.raises(TargetError, match=message):
        resolve(spec)


def test_host_target_is_unchanged():
    h = host()
    assert not h.cross and h.triple == "" and h.cflags == () and resolve("cpu") == h
    if platform.machine() in ("x86_64", "AMD64"):
        assert h.isa == "x86" and h.dot_kind in ("vnni", "")
        assert not h.key().endswith("-")      # the host's key has no cross part
    knobbed = h.with_knobs({"vector.lanes": 4})
    assert knobbed.lanes == 4 and knobbed.name == h.name     # knobs apart from the description


def test_every_isa_module_falls_back_to_generic_c():
    """Each block of an ISA module is an #if chain whose #else is the generic C of its hook, so
    every intrinsic has a fallback; a target without a block gets the generic C alone."""
    for name, module in ISA_MODULES.items():
        assert set(module.BLOCKS) <= set(isa_generic.HOOKS), name
        for hook, block in module.BLOCKS.items():
            assert re.search(r"^#if", block, re.M) and not re.search(r"^#else", block, re.M), (name, hook)
            text = isa_generic.hook(module, hook)
            assert text.endswith(isa_generic.GENERIC[hook] + "#endif\n") if isa_generic.GENERIC[hook] else \
                text.endswith("#endif\n")
    generic = preamble(4, "generic")
    assert "immintrin" not in generic and "arm_neon" not in generic and "_mm" not in generic


@pytest.mark.skipif(bool(zig_missing()), reason=zig_missing() or "zig")
@pytest.mark.parametrize("spec", ["aarch64-linux", "aarch64-linux+dotprod", "aarch64-linux+i8mm", "armv7-linux",
                                  "riscv64-linux", "riscv64-linux+v", "wasm32"])
def test_preamble_compiles_for_each_target(spec, tmp_path):
    """The preamble with the target's ISA module compiles with its cross compiler, every hook
    used (warnings are errors)."""
    from ember.toolchain import runtime_dir
    from ember.toolchain.cc import cross_compiler, target_flags

    t = resolve(spec)
    use = """
ember_vf use_f(ember_vf a, ember_vf b) { return ember_vmax(a, b) + ember_vmin(a, b) + ember_vround(a) + ember_vexp(b); }
ember_vi use_i(uint32_t x, const int8_t* w) { return ember_vdot4(x, w) + ember_vdot4_sat16(x, w)
                                              + ember_vwiden_u8(ember_vnarrow_u8(ember_vdot4(x, w))); }
float use_c(float a, float b, float c) { return EMBER_NO_CONTRACT(a * b) + c; }
"""
    (tmp_path / "p.c").write_text('#include "ember_kernel.h"\n' + preamble(t.lanes, t.isa) + use)
    cmd = [*cross_compiler(t).command, *target_flags(t)[0], "-Werror", "-Wno-unused-function",
           "-I", str(runtime_dir()), "-c", str(tmp_path / "p.c"), "-o", str(tmp_path / "p.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_foreign_artifacts_are_refused_by_machine(tmp_path):
    elf = bytearray(64)
    elf[:6] = b"\x7fELF\x02\x01"
    elf[18:20] = (0xB7).to_bytes(2, "little")          # EM_AARCH64
    p = tmp_path / "m.so"
    p.write_bytes(bytes(elf))
    assert artifact_machine(p) == "aarch64"
    (tmp_path / "m.wasm").write_bytes(b"\0asm\x01\0\0\0" + bytes(20))
    assert artifact_machine(tmp_path / "m.wasm") == "wasm32"
    if platform.machine() != "aarch64":     # unsealed: whether it is whole is said first
        with pytest.raises(ArtifactError, match="not an Ember artifact or is truncated"):
            check_machine(p)
    seal_artifact(p)
    seal_artifact(tmp_path / "m.wasm")
    if platform.machine() != "aarch64":
        with pytest.raises(ArtifactError, match="artifact for aarch64.*qemu-aarch64"):
            check_machine(p)
    with pytest.raises(ArtifactError, match="artifact for wasm32.*Node.js"):
        check_machine(tmp_path / "m.wasm")


def test_cli_lists_targets():
    proc = subprocess.run([sys.executable, "-m", "ember.cli", "targets"], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    for name in ["cpu", *TARGETS]:
        assert f"\n{name} " in "\n" + proc.stdout
    assert "+dotprod" in proc.stdout and "cortex-a76" in proc.stdout and "isa wasm" in proc.stdout

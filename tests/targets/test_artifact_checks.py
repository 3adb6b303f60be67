"""A cross artifact says what it is and is checked on load, on every target: a truncated file, a
flipped byte, another target's artifact, metadata that lies about its target, and a processor (or
WebAssembly engine) without a feature the code needs each fail with an ``ember.errors``
exception (E303) through ``CrossArtifact``, ``ember.load`` and ``ember run``, and with a message
and exit status 1 from the runners themselves (never a signal).  A one-op model at -O1 per target
(seconds to build); skipped, with the reason, where zig, qemu or Node.js is missing."""

from __future__ import annotations

import re
import subprocess

import pytest

import ember
from ember.errors import ArtifactError
from ember.runtime.artifact import TRAILER_SIZE, seal_artifact
from ember.runtime.cross import CrossArtifact
from ember.target import resolve
from ember.toolchain.emulator import QEMU, RUN_MODEL_MJS, runner_binary, target_machine

from .cross import artifact_name, missing
from .test_cross_models import tiny_model

TARGETS = ["aarch64-linux", "armv7-linux", "riscv64-linux", "wasm32"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """spec -> the saved artifact of the one-op model, built on first use."""
    work = tmp_path_factory.mktemp("checks")
    paths = {}

    def get(spec: str):
        target = resolve(spec)
        why = missing(target)
        if why:
            pytest.skip(why)
        if spec not in paths:
            art = ember.compile(tiny_model(), target=spec, cflags=("-O1",))
            paths[spec] = art.save(work / artifact_name("tiny", target))
        return paths[spec]

    get.work = work
    return get


def _runner(spec: str, path, cpu: str | None = None) -> subprocess.CompletedProcess:
    """The target's own runner (no Python) on ``path``."""
    target = resolve(spec)
    if target.arch == "wasm32":
        cmd = ["node", "--no-warnings", str(RUN_MODEL_MJS), str(path), "--iters", "1"]
    else:
        qemu, libc, any_cpu = QEMU[target_machine(target)]
        cmd = [qemu, "-L", libc, "-cpu", cpu or any_cpu, str(runner_binary(target)), str(path), "--iters", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _refused_everywhere(path, match: str, capsys) -> None:
    """CrossArtifact, ember.load and ``ember run`` all refuse ``path`` with ArtifactError."""
    from ember.cli import main

    with pytest.raises(ArtifactError, match=match):
        CrossArtifact(path)
    with pytest.raises(ArtifactError, match=match):
        ember.load(path)
    capsys.readouterr()
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "E303" in err and re.search(match, err), err


@pytest.mark.parametrize("spec", TARGETS)
def test_metadata_says_what_the_artifact_is(spec, built):
    art = CrossArtifact(built(spec))
    meta = art.metadata
    target = resolve(spec)
    assert meta["format"] == 1 and meta["target"] == spec and meta["triple"] == target.triple
    assert meta["features"] == sorted(target.features)
    assert [x["name"] for x in meta["inputs"]] == ["x"] and meta["outputs"][0]["shape"] == [64]
    assert re.fullmatch(r"[0-9a-f]{64}", meta["weights_sha256"])


@pytest.mark.parametrize("spec", TARGETS)
def test_truncated_artifact_is_refused(spec, built, capsys):
    data = built(spec).read_bytes()
    for keep in (len(data) // 2, len(data) - 10):
        cut = built.work / f"cut-{keep}-{built(spec).name}"
        cut.write_bytes(data[:keep])
        _refused_everywhere(cut, "truncated", capsys)
        bad = _runner(spec, cut)
        assert bad.returncode == 1 and re.search("truncated|not an Ember artifact", bad.stderr), bad.stderr


@pytest.mark.parametrize("spec", TARGETS)
def test_flipped_byte_is_refused(spec, built, capsys):
    data = built(spec).read_bytes()
    for where in (len(data) // 3, data.index(b'{"format":') + 12, len(data) - 5):   # code, metadata, digest
        flipped = bytearray(data)
        flipped[where] ^= 0x10
        path = built.work / f"flip-{where}-{built(spec).name}"
        path.write_bytes(bytes(flipped))
        _refused_everywhere(path, "corrupt", capsys)
        bad = _runner(spec, path)       # the runners check the digest themselves
        assert bad.returncode == 1 and "corrupt" in bad.stderr, bad.stderr


@pytest.mark.parametrize("spec", TARGETS)
def test_another_targets_artifact_is_refused(spec, built, capsys):
    from ember.cli import main

    other = TARGETS[(TARGETS.index(spec) + 1) % len(TARGETS)]
    path = built(other)
    with pytest.raises(ArtifactError, match=f"is an artifact for {other} .*not for {spec}"):
        CrossArtifact(path, spec)
    capsys.readouterr()
    assert main(["run", str(path), "--target", spec]) == 1
    assert "E303" in capsys.readouterr().err
    built(spec)                                    # (skips unless this target's runner works here)
    bad = _runner(spec, path)                      # the runner itself: a message, never a signal
    assert bad.returncode == 1 and bad.stderr.strip(), (bad.returncode, bad.stderr)


def test_metadata_that_lies_about_the_target_is_refused(built):
    """Re-sealed metadata naming another target of the same length: the code's machine decides."""
    data = bytearray(built("aarch64-linux").read_bytes()[:-TRAILER_SIZE])
    old = b'"target":"aarch64-linux","triple":"aarch64-linux-gnu"'
    at = bytes(data).index(old)
    data[at:at + len(old)] = b'"target":"riscv64-linux","triple":"riscv64-linux-gnu"'
    path = built.work / "lying.so"
    path.write_bytes(bytes(data))
    seal_artifact(path)
    with pytest.raises(ArtifactError, match=r"says it is for riscv64-linux .* but its code is for aarch64"):
        CrossArtifact(path)


@pytest.mark.parametrize("spec, cpu, feature", [("aarch64-linux+dotprod", "cortex-a72", "dotprod"),
                                                ("armv7-linux", "cortex-a8", "vfpv4")])
def test_processor_without_a_feature_is_refused(spec, cpu, feature, built, capsys):
    """Under qemu as a processor that lacks a feature the artifact needs: ArtifactError naming it
    through CrossArtifact.run and ``ember run --emulate-cpu``; the named target's spec without the
    feature refuses it before anything runs."""
    from ember.cli import main

    path = built(spec)
    art = CrossArtifact(path, spec)
    with pytest.raises(ArtifactError, match=f"compiled for a processor with {feature}, which this one lacks"):
        art.run(cpu=cpu)
    capsys.readouterr()
    assert main(["run", str(path), "--emulate-cpu", cpu]) == 1
    assert f"with {feature}, which this one lacks" in capsys.readouterr().err
    assert art.run() and art.last.outputs                   # qemu's processor with every extension
    if "+" in spec:
        base = spec.split("+")[0]
        with pytest.raises(ArtifactError, match=f"requires {feature}; {base} lacks it"):
            CrossArtifact(path, base)


def test_wasm_engine_without_simd_is_refused(built):
    """An engine without SIMD128 (simulated: its validator refuses SIMD) gets a message naming
    simd128 before the module is compiled."""
    path = built("wasm32")
    no_simd = "data:text/javascript,WebAssembly.validate=()=>false"
    bad = subprocess.run(["node", "--no-warnings", "--import", no_simd, str(RUN_MODEL_MJS), str(path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "needs WebAssembly SIMD (simd128), which this engine lacks" in bad.stderr, bad.stderr


def test_model_mjs_abi_version_is_the_runtimes():
    from ember.toolchain.cc import runtime_dir

    header = (runtime_dir() / "ember_runtime.h").read_text()
    mjs = (RUN_MODEL_MJS.parent / "model.mjs").read_text()
    abi = re.search(r"#define EMBER_ABI_VERSION (\d+)", header).group(1)
    assert re.search(rf"export const ABI_VERSION = {abi};", mjs)


@pytest.mark.parametrize("spec", TARGETS)
def test_info_reports_what_it_is_and_the_runtime_size(spec, built, capsys):
    """``ember info ARTIFACT``: the target, its required features, the weights' hash, and the
    runtime without weights (under 100 KB for a one-op model on every target) with its code."""
    from ember.cli import main

    path = built(spec)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    target = resolve(spec)
    assert f"target    {spec} ({target.triple}; code for {target_machine(target)}), requires " \
           f"{', '.join(sorted(target.features))}" in out
    meta = CrossArtifact(path).metadata
    assert f"weights   64 B, sha256 {meta['weights_sha256']}" in out
    m = re.search(r"runtime .* without weights \(([\d,]+) bytes; machine code ([\d.]+) KiB\)", out)
    runtime, code = int(m.group(1).replace(",", "")), float(m.group(2)) * 1024
    assert runtime == path.stat().st_size - TRAILER_SIZE - 64
    assert 0 < code < runtime < 100 * 1024


def test_host_artifact_is_not_run_as_a_cross_targets(tmp_path, capsys):
    """``ember run --target T`` on this machine's artifact refuses it rather than run it here."""
    from ember.cli import main

    path = tmp_path / "tiny.so"
    ember.compile(tiny_model(), cflags=("-O1",)).save(path)
    capsys.readouterr()
    assert main(["run", str(path), "--target", "aarch64-linux"]) == 1
    assert re.search(r"E303.*is an artifact for this \S+ machine, not for aarch64-linux", capsys.readouterr().err)
    assert main(["run", str(path)]) == 0

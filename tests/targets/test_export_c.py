"""``ember export --format c``: the package builds with the host's C compiler and with the cross
compiler (zig cc, for aarch64 under qemu user mode), with no Ember present, and its runner's
outputs match the reference interpreter."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from ember.cli import main
from ember.errors import ArtifactError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from ember.runtime import pattern_array
from ember.target import resolve

from .cross import missing
from .test_cross_models import demo_cnn, small_mlp

TOLERANCE = 1e-4


def _make(folder, *make_args) -> None:
    proc = subprocess.run(["make", "-C", str(folder), "-j2", *make_args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _outputs(folder, prefix, graph):
    return [np.fromfile(f"{prefix}{i}.bin", dtype=v.dtype).reshape(v.type.shape) for i, v in enumerate(graph.outputs)]


def _check(got, graph, feeds):
    for g, want in zip(got, run_graph(graph, feeds)):
        err = float(np.max(np.abs(g - want)) / max(1.0, float(np.max(np.abs(want)))))
        assert err <= TOLERANCE, err


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """The demo CNN exported as a portable C package (weights as a blob)."""
    import onnx

    if shutil.which("make") is None:
        pytest.skip("make is missing")
    work = tmp_path_factory.mktemp("export")
    onnx.save(demo_cnn(), work / "demo.onnx")
    assert main(["export", "--format", "c", str(work / "demo.onnx"), "-o", str(work / "pkg"), "--opt-level", "1"]) == 0
    return work


def test_exported_package_builds_with_the_host_compiler_and_runs(package):
    from ember.toolchain import find_compiler

    cc = " ".join(find_compiler().command)
    pkg = package / "host"
    shutil.copytree(package / "pkg", pkg)
    assert {"Makefile", "README.md", "model.h", "model.c", "weights.bin", "weights.S", "run_model.c"} <= \
        {p.name for p in pkg.iterdir()}
    _make(pkg, f"CC={cc}")
    graph = from_onnx(demo_cnn())
    x = np.random.default_rng(5).standard_normal(graph.inputs[0].type.shape).astype(np.float32)
    x.tofile(pkg / "x.bin")
    proc = subprocess.run([str(pkg / "run_model"), "--iters", "1", "--out", str(pkg / "out"), str(pkg / "x.bin")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    _check(_outputs(pkg, pkg / "out", graph), graph, {graph.inputs[0].name: x})


def test_exported_package_builds_with_the_cross_compiler_and_runs_under_qemu(package):
    from ember.toolchain.emulator import QEMU

    target = resolve("aarch64-linux")
    why = missing(target)
    if why:
        pytest.skip(why)
    pkg = package / "aarch64"
    shutil.copytree(package / "pkg", pkg)
    zig = f"{sys.executable} -m ziglang"
    _make(pkg, f"CC={zig} cc -target {target.triple}", f"AR={zig} ar")
    qemu, libc, cpu = QEMU["aarch64"]
    proc = subprocess.run([qemu, "-L", libc, "-cpu", cpu, str(pkg / "run_model"), "--iters", "1", "--out",
                           str(pkg / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    graph = from_onnx(demo_cnn())
    feeds = {v.name: pattern_array(v.type) for v in graph.inputs}
    _check(_outputs(pkg, pkg / "out", graph), graph, feeds)


def test_export_writes_weights_as_a_c_array_and_replaces_only_an_earlier_export(tmp_path):
    import onnx

    from ember.toolchain import find_compiler

    if shutil.which("make") is None:
        pytest.skip("make is missing")
    onnx.save(small_mlp(), tmp_path / "mlp.onnx")
    out = tmp_path / "pkg"
    args = ["export", "--format", "c", str(tmp_path / "mlp.onnx"), "-o", str(out), "--opt-level", "1"]
    assert main(args) == 0 and (out / "weights.bin").exists()
    assert main([*args, "--weights", "array"]) == 0            # an earlier export: replaced whole
    assert (out / "weights.c").exists() and not (out / "weights.bin").exists()
    cc = " ".join(find_compiler().command)
    _make(out, f"CC={cc}")
    proc = subprocess.run([str(out / "run_model"), "--iters", "1", "--out", str(out / "o")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    graph = from_onnx(small_mlp())
    _check(_outputs(out, out / "o", graph), graph, {v.name: pattern_array(v.type) for v in graph.inputs})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    from ember.driver.export import export_c

    with pytest.raises(ArtifactError, match="not an empty folder or an earlier export"):
        export_c(small_mlp(), mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

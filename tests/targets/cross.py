"""Running cross-built artifacts here: Linux targets under qemu user mode, wasm32 under Node.js.

``runner(target)`` gives a function that runs a saved artifact on the pattern inputs of
``examples/c/run_model.c`` and returns its outputs, or a reason to skip (a tool is missing).
The C example is built once per target triple with the same cross compiler (zig cc) as the
artifact and linked against the target's glibc, which Debian's cross libc packages
(``libc6-arm64-cross``, ``libc6-armhf-cross``, ``libc6-riscv64-cross``) provide for qemu's
``-L``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RUN_MODEL_C = ROOT / "examples" / "c" / "run_model.c"
RUN_MODEL_MJS = ROOT / "examples" / "wasm" / "run_model.mjs"

#: target architecture -> (qemu user-mode emulator, the folder of the target's libc, qemu -cpu)
QEMU = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "max"),
        "armv7": ("qemu-arm", "/usr/arm-linux-gnueabihf", "max"),
        "riscv64": ("qemu-riscv64", "/usr/riscv64-linux-gnu", "rv64,v=true,vlen=128,vext_spec=v1.0")}


def zig_missing() -> str:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return "the cross compiler is missing: pip install ziglang (make cross-deps)"
    return ""


def missing(target) -> str:
    """Why ``target``'s artifacts cannot be run here ("" if they can)."""
    why = zig_missing()
    if why:
        return why
    if target.arch == "wasm32":
        node = shutil.which("node")
        if not node:
            return "Node.js is missing (apt-get install nodejs; make cross-deps)"
        out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        m = re.match(r"v(\d+)", out)
        if not m or int(m.group(1)) < 20:
            return f"Node.js 20 or later is needed, found {out.strip()}"
        return ""
    qemu, libc, _ = QEMU[target.arch]
    if not shutil.which(qemu):
        return f"{qemu} is missing (apt-get install qemu-user; make cross-deps)"
    if not os.path.isdir(os.path.join(libc, "lib")):
        return f"the target's C library is missing from {libc} (make cross-deps)"
    return ""


def _run_model_binary(target, folder: Path) -> Path:
    """examples/c/run_model.c built for ``target`` (cached in ``folder`` by triple)."""
    from ember.toolchain import runtime_dir

    exe = folder / f"run_model-{target.triple}"
    if not exe.exists():
        tmp = exe.with_suffix(".tmp")
        cmd = [sys.executable, "-m", "ziglang", "cc", "-target", target.triple, "-O1", "-I", str(runtime_dir()),
               str(RUN_MODEL_C), "-o", str(tmp), "-ldl", "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        os.replace(tmp, exe)
    return exe


def run_artifact(target, artifact: Path, folder: Path, outputs: list) -> tuple[list[np.ndarray], str]:
    """Runs ``artifact`` (built for ``target``) on the pattern inputs; ``outputs`` are the
    model's output types (dtype, shape).  Returns the outputs and what the runner printed."""
    prefix = str(folder / f"out-{artifact.stem}-")
    if target.arch == "wasm32":
        cmd = ["node", "--no-warnings", str(RUN_MODEL_MJS), str(artifact), "--iters", "1", "--out", prefix]
    else:
        qemu, libc, cpu = QEMU[target.arch]
        cmd = [qemu, "-L", libc, "-cpu", cpu, str(_run_model_binary(target, folder)), str(artifact),
               "--iters", "1", "--threads", "2", "--out", prefix]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    arrays = [np.fromfile(f"{prefix}{i}.bin", dtype=np.dtype(dt)).reshape(shape)
              for i, (dt, shape) in enumerate(outputs)]
    return arrays, proc.stdout

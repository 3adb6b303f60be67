"""Running a cross-built artifact on this machine, under an emulator.

A Linux target's shared library runs under qemu user mode (Debian's ``qemu-user``) with the
target's C library (``libc6-arm64-cross``, ``libc6-armhf-cross``, ``libc6-riscv64-cross``, found
by ``qemu -L``), loaded by ``runtime/runners/run_model.c`` built for the same triple by the cross
compiler (``zig cc``, :func:`~ember.toolchain.cc.cross_compiler`) and kept in the cache; a
``wasm32`` module runs under Node.js 20 or later with ``runtime/runners/run_model.mjs``.  Inputs
go to the runner as raw files, outputs come back the same way (``--out``), so what runs is the
artifact exactly as it would run on the device.

:func:`run` is what ``ember run`` and :meth:`CrossArtifact.run
<ember.runtime.cross.CrossArtifact.run>` call.  A missing tool is a :class:`ToolchainError`
naming the package that provides it; a failing run an :class:`ArtifactError` with what the
runner printed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ArtifactError, InputError, ToolchainError

RUNNERS = Path(__file__).resolve().parents[1] / "runtime" / "runners"
RUN_MODEL_C = RUNNERS / "run_model.c"
RUN_MODEL_MJS = RUNNERS / "run_model.mjs"

#: artifact machine (``runtime.artifact.artifact_machine``) -> (qemu user-mode emulator, the
#: folder of the target's C library, the processor qemu emulates: one with every extension a
#: target may enable, so that the artifact's own load-time check decides)
QEMU = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu", "max"),
        "arm": ("qemu-arm", "/usr/arm-linux-gnueabihf", "max"),
        "riscv64": ("qemu-riscv64", "/usr/riscv64-linux-gnu", "rv64,v=true,vlen=128,vext_spec=v1.0")}
#: the oldest Node.js whose WASI (``node:wasi``, preview1) runs the modules
NODE_MAJOR = 20
#: the longest one emulated run may take
TIMEOUT_S = 3600


def target_machine(target) -> str:
    """The artifact machine (:data:`QEMU`'s keys, ``wasm32``) of the target ``target``."""
    return "arm" if target.arch.startswith("armv") else target.arch


def missing(machine: str) -> str:
    """Why artifacts for ``machine`` (``aarch64``, ``arm``, ``riscv64``, ``wasm32``) cannot run
    here ("" if they can)."""
    if machine == "wasm32":
        node = shutil.which("node")
        if not node:
            return "Node.js is missing (apt-get install nodejs; make cross-deps)"
        try:
            out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"Node.js does not run: {e}"
        m = re.match(r"v(\d+)", out)
        if not m or int(m.group(1)) < NODE_MAJOR:
            return f"Node.js {NODE_MAJOR} or later is needed, found {out.strip() or 'no version'}"
        return ""
    if machine not in QEMU:
        return f"no emulator is known for {machine or 'this file'}"
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return "the cross compiler that builds the runner is missing: pip install ziglang (make cross-deps)"
    qemu, libc, _ = QEMU[machine]
    if not shutil.which(qemu):
        return f"{qemu} is missing (apt-get install qemu-user; make cross-deps)"
    if not os.path.isdir(os.path.join(libc, "lib")):
        return f"the target's C library is missing from {libc} (make cross-deps)"
    return ""


def runner_binary(target) -> Path:
    """``run_model.c`` built for the cross target ``target`` (a Linux one), from the cache."""
    from .cache import Cache
    from .cc import _run, cross_compiler, runtime_dir

    compiler = cross_compiler(target)
    header = (runtime_dir() / "ember_runtime.h").read_bytes()
    key = hashlib.sha256(b"\0".join([compiler.identity.encode(), RUN_MODEL_C.read_bytes(), header])).hexdigest()
    runners = Cache("runners")
    entry = f"run_model-{target.triple}-{key[:32]}"
    hit = runners.get(entry)
    if hit is not None:
        return hit
    work = runners.scratch_dir(prefix="run_model-")
    try:
        _run([*compiler.command, "-O2", "-g0", "-I", str(runtime_dir()), str(RUN_MODEL_C), "-o", "run_model",
              "-ldl", "-lm"], work, f"compile run_model.c for {target.spec}")
        path = runners.put(entry, work / "run_model", move=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.chmod(path, 0o755)
    return path


@dataclass
class Result:
    """What an emulated run gives: the outputs by name, the median latency of the timed runs
    (milliseconds, under the emulator) and the runner's printout."""

    outputs: "OrderedDict[str, np.ndarray]"
    latency_ms: float
    printed: str


def command(path: Path, machine: str, target, threads: int | None, iters: int, cpu: str | None = None) -> list[str]:
    """The command that runs the artifact at ``path`` here (its inputs and ``--out`` follow),
    under qemu as the processor ``cpu`` (default: :data:`QEMU`'s, with every extension)."""
    why = missing(machine)
    if why:
        raise ToolchainError(f"cannot run the {target.spec} artifact '{path}' here: {why}")
    if machine == "wasm32":
        if cpu:
            raise InputError("a wasm32 artifact runs on Node.js's engine: there is no processor to choose")
        return ["node", "--no-warnings", str(RUN_MODEL_MJS), str(path), "--iters", str(iters)]
    qemu, libc, any_cpu = QEMU[machine]
    if cpu is not None and not re.fullmatch(r"[A-Za-z0-9_.,=-]+", cpu):
        raise InputError(f"{cpu!r} is not a processor name qemu takes (e.g. cortex-a72)")
    return [qemu, "-L", libc, "-cpu", cpu or any_cpu, str(runner_binary(target)), str(path), "--iters", str(iters),
            *(["--threads", str(threads)] if threads else [])]


def run(artifact, inputs: Mapping[str, np.ndarray] | None = None, *, threads: int | None = None,
        iters: int = 1, cpu: str | None = None) -> Result:
    """Runs ``artifact`` (a :class:`~ember.runtime.cross.CrossArtifact`) on ``inputs`` (by input
    name; None: the runner's deterministic pattern, :func:`ember.runtime.pattern_array`) under
    its emulator (qemu as the processor ``cpu``, if given): one run, then ``iters`` timed runs.
    The artifact's load-time check of the processor runs first: a processor without a feature
    it needs is an :class:`ArtifactError` naming the feature."""
    from ..target import resolve

    meta = artifact.metadata
    target = resolve(meta.get("target", artifact.target))
    files = []
    with tempfile.TemporaryDirectory(prefix="ember-emulate-") as tmp:
        if inputs is not None:
            names = [x["name"] for x in meta["inputs"]]
            unknown = sorted(set(inputs) - set(names))
            if unknown:
                raise InputError(f"'{artifact.name}' has no input named {', '.join(map(repr, unknown))}; "
                                 f"its inputs are {', '.join(names)}")
            for i, x in enumerate(meta["inputs"]):
                if x["name"] not in inputs:
                    raise InputError(f"input '{x['name']}' of '{artifact.name}' is missing")
                files.append(_input_file(Path(tmp) / f"in{i}.bin", x, inputs[x["name"]]))
        for x in meta["inputs"] + meta["outputs"]:
            if not all(isinstance(d, int) for d in x["shape"]):
                raise ArtifactError(f"'{artifact.name}' has symbolic dimensions ({x['name']}: {x['shape']}): the "
                                    "emulated runner runs models of static shapes; compile with --shape")
        prefix = str(Path(tmp) / "out")
        cmd = [*command(artifact.path, artifact.machine, target, threads, max(1, int(iters)), cpu), "--out", prefix, *files]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ArtifactError(f"'{artifact.name}' ran longer than {TIMEOUT_S} s under {cmd[0]}") from None
        if proc.returncode != 0:
            raise ArtifactError(f"'{artifact.name}' failed under {cmd[0]} (exit status {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
        outputs = OrderedDict()
        for i, x in enumerate(meta["outputs"]):
            data = np.fromfile(f"{prefix}{i}.bin", dtype=_dtype(x["dtype"]))
            outputs[x["name"]] = data.reshape(x["shape"])
    m = re.search(r"latency median ([0-9.]+) ms", proc.stdout)
    return Result(outputs, float(m.group(1)) if m else float("nan"), proc.stdout)


def _dtype(name: str) -> np.dtype:
    from ..runtime.module import _boundary_dtype

    return _boundary_dtype(name)


def _input_file(path: Path, info: dict, value) -> str:
    """Writes input ``info`` (metadata entry) from ``value``: exactly its dtype and shape."""
    arr = np.asarray(value)
    want = _dtype(info["dtype"])
    shape = tuple(info["shape"])
    if arr.shape != shape:
        raise InputError(f"input '{info['name']}' has shape {list(arr.shape)}; the model takes {list(shape)}")
    if arr.dtype != want:
        if not np.can_cast(arr.dtype, want, casting="same_kind"):
            raise InputError(f"input '{info['name']}' is {arr.dtype}; the model takes {info['dtype']}")
        arr = arr.astype(want)
    np.ascontiguousarray(arr).tofile(path)
    return str(path)

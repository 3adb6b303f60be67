"""GPU artifacts and the module that runs them.

A GPU artifact is one file: a magic line, a JSON header (the metadata of the model, with a
``gpu`` section: the kernels' language, the launches in graph order, the output copies), then the
kernels' source, the PTX when it was compiled (CUDA), and the constants; the header holds the
sha256 of everything after it, so a damaged file raises :class:`~ember.errors.ArtifactError`.

:class:`GPUModule` has the interface of every loaded model (``run``, a call, ``save``; inputs
checked by name, dtype and shape before anything runs).  It runs an OpenCL artifact through
``runtime/opencl.py`` (pyopencl) and a WGSL one through ``runtime/webgpu.py`` (wgpu), both on
:class:`DeviceRunner`; running a CUDA artifact needs an NVIDIA GPU and is not built yet (its PTX
is made and checked without one); a Metal artifact is saved as the folder a Metal host program
runs (``runtime/metal.py``) and is not run by Ember.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import ArtifactError, EmberRuntimeError, IndexOutOfRangeError

#: the bits a kernel sets in the flag buffer: a run-time index check failed; (WGSL) an int64
#: value read did not fit in the 32 bits WGSL computes it in
FLAG_INDEX, FLAG_INT64 = 1, 2
LANGUAGES = ("cuda", "opencl", "metal", "wgsl")
from .module import LoadedModel, Module

MAGIC = b"EMBERGPU"
VERSION = 1


class GPUArtifact:
    """What a GPU build makes: metadata, the kernels' source, PTX (CUDA; may be empty) and the
    constants blob."""

    def __init__(self, meta: dict, source: str, constants: bytes, ptx: str = ""):
        self.meta, self.source, self.constants, self.ptx = meta, source, constants, ptx

    @property
    def language(self) -> str:
        return self.meta["gpu"]["language"]

    def to_bytes(self) -> bytes:
        src, ptx = self.source.encode(), self.ptx.encode()
        payload = src + ptx + self.constants
        head = json.dumps({"meta": self.meta, "source": len(src), "ptx": len(ptx), "constants": len(self.constants),
                           "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        return MAGIC + struct.pack("<II", VERSION, len(head)) + head + payload

    @staticmethod
    def from_bytes(data: bytes, where: str = "the artifact") -> "GPUArtifact":
        def bad(why: str) -> ArtifactError:
            return ArtifactError(f"{where} is not a valid GPU artifact: {why}")

        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
            raise bad("no GPU artifact header")
        version, n = struct.unpack_from("<II", data, len(MAGIC))
        if version != VERSION:
            raise bad(f"format {version}; this Ember reads format {VERSION}")
        start = len(MAGIC) + 8
        try:
            head = json.loads(data[start:start + n].decode())
            ns, np_, nc = int(head["source"]), int(head["ptx"]), int(head["constants"])
            meta = head["meta"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise bad("malformed header") from None
        payload = data[start + n:]
        if len(payload) != ns + np_ + nc or hashlib.sha256(payload).hexdigest() != head.get("sha256"):
            raise bad("truncated or damaged (checksum mismatch)")
        return GPUArtifact(meta, payload[:ns].decode(), payload[ns + np_:], payload[ns:ns + np_].decode())


def is_gpu_artifact(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def load_gpu(path: str | os.PathLike) -> "GPUModule":
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read '{p}': {e}") from None
    return GPUModule(GPUArtifact.from_bytes(data, f"'{p}'"), p)


def _check_gpu_section(meta: dict, path: Path) -> None:
    """The ``gpu`` section of an artifact's metadata is well formed, else ArtifactError."""
    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"'{path}' has malformed GPU metadata: {why}")

    gpu = meta.get("gpu")
    if not isinstance(gpu, dict) or gpu.get("language") not in LANGUAGES:
        raise bad(f"no 'gpu' section with a language ({', '.join(LANGUAGES)})")
    places = {"input": 2, "output": 2, "arena": 3, "const": 3, "flag": 1}
    try:
        for lau in gpu["launches"]:
            if not (isinstance(lau["kernel"], str) and len(lau["grid"]) == 3 and len(lau["block"]) == 3
                    and all(isinstance(d, int) and d >= 1 for d in lau["grid"] + lau["block"])):
                raise bad(f"launch {lau.get('kernel')!r} has no valid kernel, grid and block")
            for a in lau["args"]:
                if a[0] not in places or len(a) != places[a[0]] or not all(isinstance(x, int) and x >= 0 for x in a[1:]):
                    raise bad(f"launch {lau['kernel']!r} has an invalid argument {a!r}")
        for k, src in gpu["copies"]:
            if not isinstance(k, int) or src[0] not in places:
                raise bad(f"an invalid output copy {src!r}")
        int(meta["arena_bytes"])
    except (KeyError, TypeError, IndexError, ValueError):
        raise bad("a launch, copy or size is missing or malformed") from None


def tensorflow_llvm_clash(driver_files: list, word: str, driver: str, symptom: str, api: str) -> str:
    """Why a software driver that carries LLVM cannot be used in this process, or "": TensorFlow
    (imported in it) has its own copy of LLVM, and the two cannot share a process (pocl for
    OpenCL, lavapipe for Vulkan).  ``driver_files`` are the driver manifests the loader reads; one
    naming ``word`` is that driver."""
    if "tensorflow" not in sys.modules:
        return ""
    for path in driver_files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if word in f.read():
                    return (f"TensorFlow is loaded in this process and {driver} is installed: their two copies "
                            f"of LLVM cannot share a process ({symptom}); run {api} models in a process that "
                            "does not import tensorflow")
        except OSError:
            continue
    return ""


class DeviceRunner:
    """What the device runners share: the artifact's buffers (the arena, the constants, one per
    input and output, the flag), each launch argument resolved to a buffer or a region of one, and
    the outputs no kernel writes.  A runner makes its buffers (``_buffer``), regions
    (``_region``) and runs (``run``, returning the flag's bits)."""

    def __init__(self, artifact):
        meta = artifact.meta
        self.meta = meta
        self.in_meta, self.out_meta = meta["inputs"], meta["outputs"]
        self.copies = meta["gpu"]["copies"]
        self._regions: dict = {}

    def _make_buffers(self, constants: bytes) -> None:
        self.arena = self._buffer(max(int(self.meta["arena_bytes"]), 256))
        self.consts = self._buffer(len(constants) or 256, constants or bytes(256))
        self.flag = self._buffer(4)
        self.outputs = [self._buffer(nbytes(o)) for o in self.out_meta]
        self.inputs = [self._buffer(nbytes(i), writable=False) for i in self.in_meta]

    def _arg(self, a):
        """The buffer (or region) of the launch argument ``a`` (see ``_check_gpu_section``)."""
        kind = a[0]
        if kind == "input":
            return self.inputs[a[1]]
        if kind == "output":
            return self.outputs[a[1]]
        if kind in ("arena", "const"):
            buf = self.arena if kind == "arena" else self.consts
            key = (kind, a[1], a[2])
            if key not in self._regions:
                self._regions[key] = self._region(buf, a[1], max(a[2], 1))
            return self._regions[key]
        if kind == "flag":
            return self.flag
        raise EmberRuntimeError(f"unknown kernel argument {a!r} in the artifact")

    def _copy_outputs(self, arrays: list, outs: list) -> None:
        """The outputs that are an input, a constant or another output."""
        for k, src in self.copies:
            kind = src[0]
            if kind == "input":
                outs[k][...] = arrays[src[1]]
            elif kind == "output":
                outs[k][...] = outs[src[1]]
            else:   # a constant
                raw = np.frombuffer(self._const_bytes(src[1], src[2]), outs[k].dtype)
                outs[k][...] = raw.reshape(outs[k].shape)

    def _copied(self) -> set:
        return {k for k, _ in self.copies}


def nbytes(entry: dict) -> int:
    """The bytes of an input or output of the metadata."""
    n = 1
    for d in entry["shape"]:
        n *= int(d)
    return n * np.dtype(entry["dtype"] if entry["dtype"] != "bool" else "uint8").itemsize


class GPUModule(LoadedModel):
    """A model compiled for a GPU target (see the module's docstring)."""

    _parse_signature = Module._parse_signature
    _check_input = Module._check_input
    _dense = Module._dense
    _checked_inputs = Module._checked_inputs

    def __init__(self, artifact: GPUArtifact, path: str | os.PathLike | None = None):
        self.artifact = artifact
        meta = artifact.meta
        self._path = Path(os.path.abspath(path)) if path else Path(f"{meta.get('name', 'model')}.ember")
        self._metadata = meta
        self._parse_signature(meta)
        _check_gpu_section(meta, self._path)
        if self._symbols:
            raise ArtifactError(f"'{self._path}': a GPU artifact with symbolic dimensions is not supported")
        self._device = None
        self._lock = threading.Lock()

    @property
    def arena_bytes(self) -> int:
        return int(self._metadata.get("arena_bytes", 0))

    @property
    def source(self) -> str:
        """The kernels' source (CUDA C++, OpenCL C or Metal Shading Language)."""
        return self.artifact.source

    @property
    def ptx(self) -> str:
        """The PTX of a CUDA artifact ("" when NVRTC was not installed at compile time)."""
        return self.artifact.ptx

    @property
    def input_defaults(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict()

    def __repr__(self) -> str:
        return f"<ember.GPUModule {self._signature()} for {self._metadata.get('target')}>"

    def _runner(self):
        if self._device is None:
            lang = self.artifact.language
            if lang == "opencl":
                from .opencl import OpenCLRunner

                self._device = OpenCLRunner(self.artifact)
            elif lang == "wgsl":
                from .webgpu import WebGPURunner

                self._device = WebGPURunner(self.artifact)
            elif lang == "metal":
                raise EmberRuntimeError("a Metal artifact runs on an Apple GPU, from a Metal host program "
                                        "(save() writes the bundle it reads); Ember cannot run it")
            else:
                raise EmberRuntimeError(f"running a {lang} artifact is not supported yet (its code is generated "
                                        "and compiled; launching it on a device is not built)")
        return self._device

    def _execute(self, arrays: list) -> "OrderedDict[str, np.ndarray]":
        self._checked_inputs(arrays)
        with self._lock:
            outs = [np.empty(shape, dt) for dt, shape in self._out_np]
            flags = self._runner().run(arrays, outs)
        if flags & FLAG_INDEX:
            raise IndexOutOfRangeError(f"'{self.name}': a kernel met an index out of range (a gather, "
                                       "scatter or slice index outside its axis); the outputs are not valid")
        if flags & FLAG_INT64:
            raise EmberRuntimeError(f"'{self.name}': a kernel read an int64 value outside the 32-bit range "
                                    "that WebGPU computes in; the outputs are not valid")
        return OrderedDict(zip(self._out_names, outs))

    def export_web(self, directory) -> Path:
        """A model compiled for ``webgpu`` as a browser package: its WGSL, metadata, constants and
        a JS loader (:func:`ember.runtime.webgpu.export_web`)."""
        from .webgpu import export_web

        return export_web(self.artifact, directory)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the artifact to ``path``: for Metal, the folder a Metal host program reads
        (``runtime/metal.py``); else one file (or a file in the folder ``path``)."""
        if self.artifact.language == "metal":
            from .metal import write_bundle

            return write_bundle(self.artifact.meta, self.artifact.source, self.artifact.constants, path)
        return super().save(path)

    def _write_artifact(self, f) -> None:
        f.write(self.artifact.to_bytes())

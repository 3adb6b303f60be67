"""Running a WGSL artifact through the ``wgpu`` package (``pip install ember[webgpu]``): WebGPU on
Vulkan, Metal or D3D12; on Linux without a GPU, Mesa's software Vulkan driver (lavapipe, Debian's
``mesa-vulkan-drivers``).

At load: the adapter is requested (``$EMBER_WEBGPU_ADAPTER``: ``cpu`` prefers a software adapter,
``gpu`` a discrete one), then a device with the adapter's own limits on storage buffers (the
kernels' bindings stay within WebGPU's defaults, the arena and constants need big buffers); every
kernel's shader module and compute pipeline is built and its bind group made over the arena, the
constants, the inputs and outputs.  A run writes each input once, records every dispatch in graph
order in one compute pass, and reads each output (and the flag) back once.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from ..errors import EmberRuntimeError
from .gpu import DeviceRunner, tensorflow_llvm_clash

_LIMITS = ("max-storage-buffers-per-shader-stage", "max-storage-buffer-binding-size", "max-buffer-size",
           "max-compute-workgroup-storage-size", "max-compute-invocations-per-workgroup")


def _adapter():
    import wgpu

    pref = {"cpu": "low-power", "gpu": "high-performance"}.get(os.environ.get("EMBER_WEBGPU_ADAPTER", ""),
                                                                "high-performance")
    return wgpu.gpu.request_adapter_sync(power_preference=pref)


def llvm_conflict() -> str:
    """Why WebGPU cannot be used in this process, or "": Mesa's software Vulkan driver (lavapipe)
    compiles shaders with the system's LLVM, which cannot share a process with TensorFlow's (the
    first shader built crashes it).  pocl uses the same system LLVM as lavapipe, so OpenCL and
    WebGPU models run side by side in one process."""
    listed = os.environ.get("VK_DRIVER_FILES") or os.environ.get("VK_ICD_FILENAMES")
    if listed:
        files = listed.split(os.pathsep)
    else:
        files = [f for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
                 for f in glob.glob(os.path.join(d, "*.json"))]
    return tensorflow_llvm_clash(files, "lvp", "Mesa's software Vulkan driver (lavapipe)",
                                 "building a shader crashes it", "WebGPU")


def unavailable() -> str:
    """Why WebGPU cannot run here ("" when it can): TensorFlow's LLVM in this process
    (:func:`llvm_conflict`), wgpu not installed, or no adapter (no Vulkan, Metal or D3D12 driver;
    on Linux, ``apt install mesa-vulkan-drivers`` gives a software one)."""
    conflict = llvm_conflict()
    if conflict:
        return conflict
    try:
        import wgpu  # noqa: F401  (whether it imports)
    except ImportError:
        return "the wgpu package is not installed (pip install wgpu)"
    try:
        if _adapter() is None:
            raise RuntimeError("no adapter")
    except Exception as e:
        return f"wgpu finds no WebGPU adapter ({e}); on Linux apt install mesa-vulkan-drivers gives a software one"
    return ""


def available() -> bool:
    return not unavailable()


class WebGPURunner(DeviceRunner):
    def __init__(self, artifact):
        why = unavailable()
        if why:
            raise EmberRuntimeError(f"running a WebGPU artifact: {why}")
        import wgpu

        from ..codegen.lang_wgsl import split_modules

        super().__init__(artifact)
        self.wgpu = wgpu
        adapter = _adapter()
        self.adapter_name = adapter.info.get("device", "")
        limits = {k: adapter.limits[k] for k in _LIMITS if k in adapter.limits}
        self.device = adapter.request_device_sync(required_limits=limits)
        self._make_buffers(artifact.constants)
        modules = split_modules(artifact.source)
        self.launches = []
        for lau in self.meta["gpu"]["launches"]:
            name = lau["kernel"]
            if name not in modules:
                raise EmberRuntimeError(f"the artifact's WGSL has no shader module for kernel {name}")
            try:
                module = self.device.create_shader_module(code=modules[name], label=name)
                pipe = self.device.create_compute_pipeline(layout="auto", label=name,
                                                           compute={"module": module, "entry_point": name})
                group = self.device.create_bind_group(
                    layout=pipe.get_bind_group_layout(0),
                    entries=[{"binding": k, "resource": self._resource(self._arg(a))}
                             for k, a in enumerate(lau["args"])])
            except Exception as e:      # wgpu raises its own errors (validation, shader compilation)
                raise EmberRuntimeError(f"the WebGPU device ({self.adapter_name}) cannot build kernel {name}: "
                                        f"{e}") from None
            self.launches.append((pipe, group, tuple(lau["grid"])))

    def _buffer(self, size: int, data: bytes | None = None, writable: bool = True):
        usage = self.wgpu.BufferUsage
        size = max((size + 3) // 4 * 4, 4)
        flags = usage.STORAGE | usage.COPY_DST | usage.COPY_SRC
        if data is not None:
            return self.device.create_buffer_with_data(data=bytes(data) + bytes(size - len(data)), usage=flags)
        return self.device.create_buffer(size=size, usage=flags)

    def _region(self, buf, offset: int, size: int):
        return (buf, offset, min((size + 3) // 4 * 4, buf.size - offset))

    @staticmethod
    def _resource(arg) -> dict:
        buf, offset, size = arg if isinstance(arg, tuple) else (arg, 0, arg.size)
        return {"buffer": buf, "offset": offset, "size": size}

    def run(self, arrays: list, outs: list) -> int:
        """Runs the model: ``arrays`` in, ``outs`` (host arrays) filled; returns the flag's bits
        (``runtime.gpu.FLAG_INDEX``, ``FLAG_INT64``)."""
        q = self.device.queue
        q.write_buffer(self.flag, 0, bytes(4))
        for buf, arr in zip(self.inputs, arrays):
            if arr.nbytes:
                data = np.ascontiguousarray(arr).tobytes()
                q.write_buffer(buf, 0, data + bytes(-len(data) % 4))
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        for pipe, group, grid in self.launches:
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, group)
            cp.dispatch_workgroups(*grid)
        cp.end()
        q.submit([enc.finish()])
        copied = self._copied()
        for k, (buf, out) in enumerate(zip(self.outputs, outs)):
            if k not in copied and out.nbytes:
                raw = q.read_buffer(buf)
                out.reshape(-1).view(np.uint8)[...] = np.frombuffer(raw, np.uint8)[:out.nbytes]
        flag = int(np.frombuffer(q.read_buffer(self.flag), np.uint32)[0])
        self._copy_outputs(arrays, outs)
        return flag

    def _const_bytes(self, offset: int, nbytes: int) -> bytes:
        if not nbytes:
            return b""
        raw = self.device.queue.read_buffer(self.consts, offset, (nbytes + 3) // 4 * 4)
        return bytes(raw)[:nbytes]


#: the files of a browser package (:func:`export_web`)
WEB_FILES = ("model.json", "model.wgsl", "constants.bin", "ember_webgpu.js")


def export_web(artifact, directory) -> "os.PathLike":
    """Writes the WGSL artifact as a browser package in ``directory``: ``model.json`` (the
    metadata: signature, launches, copies), ``model.wgsl``, ``constants.bin`` and the loader
    ``ember_webgpu.js`` (``loadModel(baseUrl)`` then ``await model.run({name: typedArray})``).
    Each file is written to a temporary name first, then renamed."""
    import json
    from pathlib import Path

    if artifact.language != "wgsl":
        raise EmberRuntimeError(f"a browser package needs a model compiled for target webgpu, not "
                                f"{artifact.meta.get('target')}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    loader = (Path(__file__).parent / "web" / "ember_webgpu.js").read_bytes()
    contents = dict(zip(WEB_FILES, (json.dumps(artifact.meta, indent=1).encode(), artifact.source.encode(),
                                    artifact.constants, loader)))
    for name, data in contents.items():
        tmp = out / f".{name}.tmp{os.getpid()}"
        tmp.write_bytes(data)
        os.replace(tmp, out / name)
    return out

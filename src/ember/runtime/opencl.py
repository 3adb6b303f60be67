"""Running a GPU artifact on an OpenCL device through ``pyopencl`` (``pip install ember[opencl]``).

At load: the program is built for the first device of ``$EMBER_OPENCL_DEVICE`` (``PLATFORM:DEVICE``
indices, default ``0:0``), the arena and the constants become one device buffer each (the
constants copied once), every buffer of the static memory plan a sub-buffer of the arena, and
every output a device buffer.  A run copies each input to the device once, launches the kernels
in graph order on one in-order queue, and copies each output back once.
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np

from ..errors import EmberRuntimeError


def llvm_conflict() -> str:
    """Why OpenCL cannot be used in this process, or "": pocl (the CPU driver) carries its own
    LLVM, and with TensorFlow's loaded in the same process, enumerating the platforms crashes the
    process and building a program fails.  Checked before any OpenCL call, since the ICD loader
    loads every driver when the platforms are listed."""
    if "tensorflow" not in sys.modules:
        return ""
    vendors = os.environ.get("OCL_ICD_VENDORS", "/etc/OpenCL/vendors")
    icds = glob.glob(os.path.join(vendors, "*.icd")) if os.path.isdir(vendors) else [vendors]
    for icd in icds:
        try:
            with open(icd, encoding="utf-8", errors="replace") as f:
                if "pocl" in f.read():
                    return ("TensorFlow is loaded in this process and the OpenCL driver pocl is installed: "
                            "their two copies of LLVM cannot share a process (listing the OpenCL platforms "
                            "crashes it); run OpenCL models in a process that does not import tensorflow")
        except OSError:
            continue
    return ""


def available() -> bool:
    """Whether pyopencl imports and finds at least one device (and can be used in this process:
    :func:`llvm_conflict`)."""
    if llvm_conflict():
        return False
    try:
        import pyopencl as cl

        return any(p.get_devices() for p in cl.get_platforms())
    except Exception:
        return False


def _device():
    conflict = llvm_conflict()
    if conflict:
        raise EmberRuntimeError(conflict)
    import pyopencl as cl

    spec = os.environ.get("EMBER_OPENCL_DEVICE", "0:0")
    try:
        pi, di = (int(x) for x in spec.split(":"))
        return cl.get_platforms()[pi].get_devices()[di]
    except (ValueError, IndexError, cl.Error) as e:
        raise EmberRuntimeError(f"no OpenCL device {spec!r} ($EMBER_OPENCL_DEVICE, PLATFORM:DEVICE): {e}") from None


class OpenCLRunner:
    def __init__(self, artifact):
        try:
            import pyopencl as cl
        except ImportError:
            raise EmberRuntimeError("running an OpenCL artifact needs pyopencl (pip install ember[opencl]) "
                                    "and an OpenCL driver") from None
        self.cl = cl
        dev = _device()
        self.ctx = cl.Context([dev])
        self.queue = cl.CommandQueue(self.ctx)
        try:
            self.program = cl.Program(self.ctx, artifact.source).build()
        except cl.Error as e:
            raise EmberRuntimeError(f"the OpenCL driver cannot build the model's kernels: {e}") from None
        meta = artifact.meta
        mf = cl.mem_flags
        self.arena = cl.Buffer(self.ctx, mf.READ_WRITE, max(int(meta["arena_bytes"]), 256))
        consts = artifact.constants or bytes(256)
        self.consts = cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.frombuffer(consts, np.uint8))
        self.flag = cl.Buffer(self.ctx, mf.READ_WRITE, 4)
        self.out_meta = meta["outputs"]
        self.outputs = [cl.Buffer(self.ctx, mf.READ_WRITE, max(_nbytes(o), 1)) for o in meta["outputs"]]
        self.in_meta = meta["inputs"]
        self.inputs = [cl.Buffer(self.ctx, mf.READ_ONLY, max(_nbytes(i), 1)) for i in meta["inputs"]]
        self.copies = meta["gpu"]["copies"]
        self._subs: dict = {}
        self.launches = []
        most = dev.max_work_group_size
        for lau in meta["gpu"]["launches"]:
            threads = lau["block"][0] * lau["block"][1] * lau["block"][2]
            if threads > most:
                raise EmberRuntimeError(f"kernel {lau['kernel']} runs {threads} threads per block; the OpenCL "
                                        f"device {dev.name!r} allows {most}")
            kernel = getattr(self.program, lau["kernel"])
            args = [self._arg(a) for a in lau["args"]]
            kernel.set_args(*args)
            block = tuple(lau["block"])
            glob = tuple(g * b for g, b in zip(lau["grid"], block))
            self.launches.append((kernel, glob, block))

    def _sub(self, buf, offset: int, nbytes: int):
        key = (id(buf), offset, nbytes)
        if key not in self._subs:
            self._subs[key] = buf.get_sub_region(offset, max(nbytes, 1))
        return self._subs[key]

    def _arg(self, a):
        kind = a[0]
        if kind == "input":
            return self.inputs[a[1]]
        if kind == "output":
            return self.outputs[a[1]]
        if kind == "arena":
            return self._sub(self.arena, a[1], a[2])
        if kind == "const":
            return self._sub(self.consts, a[1], a[2])
        if kind == "flag":
            return self.flag
        raise EmberRuntimeError(f"unknown kernel argument {a!r} in the artifact")

    def run(self, arrays: list, outs: list) -> bool:
        """Runs the model: ``arrays`` in, ``outs`` (host arrays) filled; True when a kernel's index
        check failed."""
        cl, q = self.cl, self.queue
        zero = np.zeros(1, np.int32)
        cl.enqueue_copy(q, self.flag, zero)
        for buf, arr in zip(self.inputs, arrays):
            if arr.nbytes:
                cl.enqueue_copy(q, buf, arr)
        for kernel, glob, block in self.launches:
            cl.enqueue_nd_range_kernel(q, kernel, glob, block)
        copied = {k for k, _ in self.copies}
        for k, (buf, out) in enumerate(zip(self.outputs, outs)):
            if k not in copied and out.nbytes:
                cl.enqueue_copy(q, out, buf)
        flag = np.zeros(1, np.int32)
        cl.enqueue_copy(q, flag, self.flag)
        q.finish()
        for k, src in self.copies:
            kind = src[0]
            if kind == "input":
                outs[k][...] = arrays[src[1]]
            elif kind == "output":
                outs[k][...] = outs[src[1]]
            else:   # a constant
                raw = np.frombuffer(self._const_bytes(src[1], src[2]), outs[k].dtype)
                outs[k][...] = raw.reshape(outs[k].shape)
        return bool(flag[0])

    def _const_bytes(self, offset: int, nbytes: int) -> bytes:
        host = np.empty(nbytes, np.uint8)
        if nbytes:
            self.cl.enqueue_copy(self.queue, host, self.consts, src_offset=offset)
            self.queue.finish()
        return host.tobytes()


def _nbytes(entry: dict) -> int:
    n = 1
    for d in entry["shape"]:
        n *= int(d)
    return n * np.dtype(entry["dtype"] if entry["dtype"] != "bool" else "uint8").itemsize

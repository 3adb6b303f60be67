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

import numpy as np

from ..errors import EmberRuntimeError
from .gpu import DeviceRunner, tensorflow_llvm_clash


def llvm_conflict() -> str:
    """Why OpenCL cannot be used in this process, or "": pocl (the CPU driver) carries its own
    LLVM, and with TensorFlow's loaded in the same process, enumerating the platforms crashes the
    process and building a program fails.  Checked before any OpenCL call, since the ICD loader
    loads every driver when the platforms are listed."""
    vendors = os.environ.get("OCL_ICD_VENDORS", "/etc/OpenCL/vendors")
    icds = glob.glob(os.path.join(vendors, "*.icd")) if os.path.isdir(vendors) else [vendors]
    return tensorflow_llvm_clash(icds, "pocl", "the OpenCL driver pocl", "listing the OpenCL platforms crashes it",
                                 "OpenCL")


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


class OpenCLRunner(DeviceRunner):
    def __init__(self, artifact):
        try:
            import pyopencl as cl
        except ImportError:
            raise EmberRuntimeError("running an OpenCL artifact needs pyopencl (pip install ember[opencl]) "
                                    "and an OpenCL driver") from None
        super().__init__(artifact)
        self.cl = cl
        dev = _device()
        self.ctx = cl.Context([dev])
        self.queue = cl.CommandQueue(self.ctx)
        try:
            self.program = cl.Program(self.ctx, artifact.source).build()
        except cl.Error as e:
            raise EmberRuntimeError(f"the OpenCL driver cannot build the model's kernels: {e}") from None
        self._make_buffers(artifact.constants)
        self.launches = []
        most = dev.max_work_group_size
        for lau in self.meta["gpu"]["launches"]:
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

    def _buffer(self, size: int, data: bytes | None = None, writable: bool = True):
        mf = self.cl.mem_flags
        if data is not None:
            return self.cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.frombuffer(data, np.uint8))
        return self.cl.Buffer(self.ctx, mf.READ_WRITE if writable else mf.READ_ONLY, max(size, 1))

    def _region(self, buf, offset: int, size: int):
        return buf.get_sub_region(offset, size)

    def run(self, arrays: list, outs: list) -> int:
        """Runs the model: ``arrays`` in, ``outs`` (host arrays) filled; returns the flag's bits
        (``runtime.gpu.FLAG_INDEX``: a kernel's index check failed)."""
        cl, q = self.cl, self.queue
        zero = np.zeros(1, np.int32)
        cl.enqueue_copy(q, self.flag, zero)
        for buf, arr in zip(self.inputs, arrays):
            if arr.nbytes:
                cl.enqueue_copy(q, buf, arr)
        for kernel, glob, block in self.launches:
            cl.enqueue_nd_range_kernel(q, kernel, glob, block)
        copied = self._copied()
        for k, (buf, out) in enumerate(zip(self.outputs, outs)):
            if k not in copied and out.nbytes:
                cl.enqueue_copy(q, out, buf)
        flag = np.zeros(1, np.int32)
        cl.enqueue_copy(q, flag, self.flag)
        q.finish()
        self._copy_outputs(arrays, outs)
        return int(flag[0])

    def _const_bytes(self, offset: int, nbytes: int) -> bytes:
        host = np.empty(nbytes, np.uint8)
        if nbytes:
            self.cl.enqueue_copy(self.queue, host, self.consts, src_offset=offset)
            self.queue.finish()
        return host.tobytes()

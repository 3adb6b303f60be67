"""NVRTC: CUDA C++ to PTX in this process, with no GPU and no nvcc.

The library comes from the ``nvidia-cuda-nvrtc-cu12`` package (``pip install ember[cuda]``) or
from a CUDA installation on the library path; it is loaded with ctypes on first use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from ..errors import ToolchainError

_LIB = None


def _candidates() -> list[str]:
    out = []
    try:
        import nvidia.cuda_nvrtc as pkg       # the pip package's namespace

        for root in getattr(pkg, "__path__", []):
            out += sorted(str(p) for p in Path(root, "lib").glob("libnvrtc.so*") if ".alt." not in p.name)
    except ImportError:
        pass
    found = ctypes.util.find_library("nvrtc")
    if found:
        out.append(found)
    out += ["libnvrtc.so.12", "libnvrtc.so"]
    return out


def fp16_include() -> str | None:
    """The folder holding ``cuda_fp16.h`` (which NVRTC does not ship): the
    ``nvidia-cuda-runtime-cu12`` package's ``include``, else ``$CUDA_HOME/include``; None when
    neither has it."""
    roots = []
    try:
        import nvidia.cuda_runtime as pkg       # the pip package's namespace

        roots += [Path(r, "include") for r in getattr(pkg, "__path__", [])]
    except ImportError:
        pass
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var], "include"))
    for root in roots:
        if (root / "cuda_fp16.h").is_file():
            return str(root)
    return None


def library():
    """The loaded libnvrtc; :class:`~ember.errors.ToolchainError` when it is not installed."""
    global _LIB
    if _LIB is not None:
        return _LIB
    errors = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        _LIB = lib
        return lib
    raise ToolchainError("NVRTC is not installed: `pip install nvidia-cuda-nvrtc-cu12` (or ember[cuda]) "
                         "compiles CUDA without a GPU")


def available() -> bool:
    try:
        library()
        return True
    except ToolchainError:
        return False


def version() -> tuple[int, int]:
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _ok(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _ok(lib, status: int, what: str, log: str = "") -> None:
    if status != 0:
        msg = lib.nvrtcGetErrorString(status).decode()
        raise ToolchainError(f"NVRTC {what} failed: {msg}" + (f"\n{log}" if log else ""))


def compile_ptx(source: str, arch: str = "sm_80", name: str = "model.cu", fmad: bool = True) -> str:
    """PTX of the CUDA C++ ``source`` for ``arch`` (``sm_80``: PTX for ``compute_80``).  A
    compile error raises :class:`~ember.errors.ToolchainError` with NVRTC's log."""
    lib = library()
    if not arch.startswith("sm_"):
        raise ToolchainError(f"not a CUDA architecture: {arch!r} (sm_XX)")
    prog = ctypes.c_void_p()
    _ok(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), os.path.basename(name).encode(),
                                    0, None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture=compute_{arch[3:]}", "--std=c++17", f"--fmad={'true' if fmad else 'false'}"]
        if "#include <cuda_fp16.h>" in source:
            inc = fp16_include()
            if inc is None:
                raise ToolchainError("CUDA float16 kernels need cuda_fp16.h: `pip install nvidia-cuda-runtime-cu12` "
                                     "(or ember[cuda]), or set CUDA_HOME to a CUDA installation")
            opts.append(f"--include-path={inc}")
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        _ok(lib, status, "compilation", buf.value.decode(errors="replace"))
        _ok(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        _ok(lib, lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))

"""Metal Shading Language checked and run as C++ on a machine without Metal.

No Metal compiler or MSL front end installs on Linux, and MSL is C++14 with address spaces,
attributes and its own standard library.  So Ember's Metal kernels are checked by a C++ compiler
against ``msl/metal_stdlib``, a header of ours declaring the Metal types and functions the
kernels use (Metal's names and signatures: float math only, no ``double``, no ``erf``), and run
on the CPU with ``msl/fibers.cpp``: each threadgroup's threads as fibers stepped from barrier to
barrier.  This checks syntax, names and types and lets tests compare the kernels' results with
the reference; it does not check what only Metal's compiler knows (address-space rules, the
attributes' meaning, Metal's limits on C++), and the CPU's float math is not the GPU's.

:func:`check` compiles a source without running it; :class:`Library` builds it with a launcher
per kernel; :func:`run_bundle` runs a Metal bundle (``runtime/metal.py``) as a Metal host
program would: its kernels in order over its buffers.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..errors import EmberRuntimeError, IndexOutOfRangeError, InputError, ToolchainError

SHIM_DIR = Path(__file__).resolve().parent / "msl"

#: C++14 (MSL's base), Metal's signed char, every warning an error except the attributes
#: (``[[buffer(0)]]``: C++ compilers do not know Metal's) and ``#pragma unroll``
FLAGS = ["-std=c++14", "-fsigned-char", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused",
         "-Wno-attributes", "-Wno-unknown-attributes", "-Wno-unknown-warning-option"]

_KERNEL = re.compile(r"^kernel void (\w+)\((.*?)\) \{$", re.M | re.S)
_PARAM = re.compile(r"^device (const )?\w+\* \w+ \[\[buffer\((\d+)\)\]\]$")
_POSITIONS = ["uint3 ember_group [[threadgroup_position_in_grid]]",
              "uint3 ember_thread [[thread_position_in_threadgroup]]"]


def compiler() -> list[str]:
    """The C++ compiler: ``$CXX``, else c++, g++ or clang++ on PATH (ToolchainError if none)."""
    env = os.environ.get("CXX", "").strip()
    if env:
        return env.split()
    found = next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if found is None:
        raise ToolchainError("no C++ compiler to check Metal source with: install g++ or clang, or set $CXX")
    return [found]


def kernels(source: str) -> list[str]:
    """The kernels of ``source`` in order, after checking each signature's form: buffers at
    ``[[buffer(0)]]``, ``[[buffer(1)]]``, ... then the threadgroup's and the thread's place."""
    names = []
    for m in _KERNEL.finditer(source):
        params = [p.strip() for p in m.group(2).split(",")]
        if params[-2:] != _POSITIONS:
            raise ToolchainError(f"Metal kernel {m.group(1)}: the last parameters are not the positions")
        for i, p in enumerate(params[:-2]):
            pm = _PARAM.match(p)
            if not pm or int(pm.group(2)) != i:
                raise ToolchainError(f"Metal kernel {m.group(1)}: parameter {p!r} is not a device buffer at "
                                     f"[[buffer({i})]]")
        names.append(m.group(1))
    return names


def _compile(args: list[str], what: str, cwd: Path) -> None:
    try:
        r = subprocess.run(compiler() + FLAGS + ["-I", str(SHIM_DIR)] + args, cwd=cwd, capture_output=True,
                           text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot run the C++ compiler for {what}: {e}") from None
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise ToolchainError(f"{what} does not compile as C++ against Ember's Metal shim:\n"
                             + "\n".join(lines[:40]))


def check(source: str) -> list[str]:
    """Compiles ``source`` (syntax and types only, see the module's docstring); returns its kernels."""
    names = kernels(source)
    with tempfile.TemporaryDirectory(prefix="ember-msl-") as d:
        (Path(d) / "model.metal").write_text(source)
        _compile(["-fsyntax-only", "-x", "c++", "model.metal"], "the Metal source", Path(d))
    return names


_LAUNCHER = """
namespace ember_msl {
template <unsigned... I> struct seq {};
template <unsigned N, unsigned... I> struct make : make<N - 1, N - 1, I...> {};
template <unsigned... I> struct make<0, I...> { typedef seq<I...> type; };
template <class T> struct arg {      // the last two parameters: the threadgroup's, the thread's place
  static T get(void **, unsigned i, unsigned n, uint3 g, uint3 t) { return i == n - 2 ? g : t; }
};
template <class T> struct arg<T *> {
  static T *get(void **a, unsigned i, unsigned, uint3, uint3) { return static_cast<T *>(a[i]); }
};
template <class... A> struct launch {
  void (*k)(A...);
  void **args;
  uint3 grid, block;
  template <unsigned... I> void call(uint3 g, uint3 t, seq<I...>) {
    k(arg<A>::get(args, I, sizeof...(A), g, t)...);
  }
  static void body(void *p, unsigned g, unsigned t) {
    launch *l = static_cast<launch *>(p);
    uint3 gi = {g % l->grid.x, g / l->grid.x % l->grid.y, g / (l->grid.x * l->grid.y)};
    uint3 ti = {t % l->block.x, t / l->block.x % l->block.y, t / (l->block.x * l->block.y)};
    l->call(gi, ti, typename make<sizeof...(A)>::type());
  }
};
template <class... A> int run(void (*k)(A...), void **args, const unsigned *d, int no_barriers) {
  launch<A...> l = {k, args, {d[0], d[1], d[2]}, {d[3], d[4], d[5]}};
  return ember_msl_run(launch<A...>::body, &l, d[0] * d[1] * d[2], d[3] * d[4] * d[5], no_barriers);
}
}  // namespace ember_msl
"""


class Library:
    """``source`` built as C++ with a launcher per kernel, loaded: ``launch(name, pointers, grid,
    block)`` runs one kernel over its grid on the CPU (one launch at a time: the fibers and the
    threadgroup arrays are the library's globals)."""

    def __init__(self, source: str):
        self.kernels = kernels(source)
        # the kernels with a barrier run as fibers, the others as plain calls
        bodies = re.split(r"^kernel void ", source, flags=re.M)[1:]
        self.barriers = {k: "threadgroup_barrier(" in b for k, b in zip(self.kernels, bodies)}
        self._dir = tempfile.TemporaryDirectory(prefix="ember-msl-")
        d = Path(self._dir.name)
        (d / "model.metal").write_text(source)
        tu = ['#include "model.metal"',
              'extern "C" int ember_msl_run(void (*)(void *, unsigned, unsigned), void *, unsigned, unsigned, int);',
              _LAUNCHER]
        tu += [f'extern "C" int ember_launch_{k}(void **a, const unsigned *d) {{ return ember_msl::run({k}, a, d, '
               f'{0 if self.barriers[k] else 1}); }}' for k in self.kernels]
        (d / "launch.cpp").write_text("\n".join(tu) + "\n")
        _compile(["-O1", "-U_FORTIFY_SOURCE", "-fPIC", "-shared", "-o", "model.so", "launch.cpp",
                  str(SHIM_DIR / "fibers.cpp")],
                 "the Metal source", d)
        self._lib = ctypes.CDLL(str(d / "model.so"))
        self._lock = threading.Lock()

    def launch(self, name: str, pointers: list[int], grid, block) -> None:
        fn = getattr(self._lib, f"ember_launch_{name}")
        fn.restype = ctypes.c_int
        args = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        dims = (ctypes.c_uint * 6)(*grid, *block)
        with self._lock:
            status = fn(args, dims)
        if status == 1:
            raise EmberRuntimeError(f"Metal shim: out of memory running kernel {name}")
        if status == 2:
            raise EmberRuntimeError(f"Metal shim: the threads of a threadgroup of kernel {name} disagree on "
                                    "a barrier (some wait at it, others returned)")
        if status == 3:
            raise EmberRuntimeError(f"Metal shim: kernel {name} met a barrier its source does not show")


def run_bundle(path: str | os.PathLike, inputs: dict) -> dict:
    """Runs the Metal bundle at ``path`` on the CPU as its launch plan says (inputs by name, each
    of the plan's dtype and shape); returns the outputs by name.  Intermediate memory starts as
    NaN bytes, so a kernel that reads what no kernel wrote shows."""
    from ..runtime.metal import read_bundle

    plan, source, constants = read_bundle(path)
    lib = Library(source)
    def poisoned(dtype, shape) -> np.ndarray:
        a = np.empty(shape, dtype)
        a.reshape(-1).view(np.uint8).fill(0xFF)
        return a

    missing = [v["name"] for v in plan["inputs"] if v["name"] not in inputs]
    if missing:
        raise InputError(f"the Metal bundle '{path}' needs the inputs {missing}")
    ins = [np.ascontiguousarray(inputs[v["name"]], v["dtype"]).reshape(v["shape"]) for v in plan["inputs"]]
    outs = [poisoned(v["dtype"], v["shape"]) for v in plan["outputs"]]
    arena = poisoned(np.uint8, max(int(plan["arena_bytes"]), 1))
    consts = np.frombuffer(bytearray(constants) or bytearray(1), np.uint8)
    flag = np.zeros(1, np.int32)

    def pointer(buf: dict) -> int:
        if "input" in buf:
            return ins[buf["input"]].ctypes.data
        if "output" in buf:
            return outs[buf["output"]].ctypes.data
        if "arena" in buf:
            return arena.ctypes.data + buf["arena"]
        if "constants" in buf:
            return consts.ctypes.data + buf["constants"]
        return flag.ctypes.data

    for k in plan["kernels"]:
        lib.launch(k["kernel"], [pointer(b) for b in k["buffers"]], k["threadgroups"], k["threads"])
    for k, buf in plan["copies"]:
        src = pointer(buf)
        ctypes.memmove(outs[k].ctypes.data, src, outs[k].nbytes)
    if flag[0]:
        raise IndexOutOfRangeError("a Metal kernel met an index out of range; the outputs are not valid")
    return {v["name"]: o for v, o in zip(plan["outputs"], outs)}

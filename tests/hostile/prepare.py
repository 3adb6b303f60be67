"""Artifacts several cases share, built once per run: by :func:`build_all` before the cases
run, else by the first case that needs one (under a file lock, before its memory limit
applies): compiled seed models, a program with a host step, and the crafted artifacts of the
``artifacts`` kind.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

from . import models as M
from .case import Ctx, Skip

#: Features ``runtime.c``'s ember_cpu_check knows, with the gcc flag that enables each.
CPU_FEATURES = (("avx512fp16", "-mavx512fp16"), ("avx512bf16", "-mavx512bf16"),
                ("avx512vnni", "-mavx512vnni"), ("avx512vbmi", "-mavx512vbmi"),
                ("avx512cd", "-mavx512cd"), ("avx512dq", "-mavx512dq"), ("avx512bw", "-mavx512bw"),
                ("avx512vl", "-mavx512vl"), ("avx512f", "-mavx512f"), ("fma", "-mfma"),
                ("avx2", "-mavx2"), ("avx", "-mavx"))


def strings_model():
    """A program: y = lower(s) on the host, z = relu(x) in a compiled segment."""
    return M.model([h.make_node("StringNormalizer", ["s"], ["y"], name="lower", case_change_action="LOWER"),
                    h.make_node("Relu", ["x"], ["z"], name="relu")],
                   [M.vi("s", T.STRING, [3]), M.vi("x", shape=[2, 3])],
                   [M.vi("y", T.STRING, [3]), M.vi("z", shape=[2, 3])])


def image_model():
    return M.model([h.make_node("ImageDecoder", ["b"], ["y"], name="decode", pixel_format="RGB")],
                   [M.vi("b", T.UINT8, ["n"])], [M.vi("y", T.UINT8, ["h", "w", 3])], opset=20, ir=9)


def dyn_model():
    r = M.rng(3)
    return M.model([h.make_node("Add", ["x", "y"], ["s"], name="add"),
                    h.make_node("MatMul", ["s", "w"], ["z"], name="mm")],
                   [M.vi("x", shape=["n", 4]), M.vi("y", shape=["n", 4])], [M.vi("z", shape=["n", 3])],
                   [M.const("w", r.standard_normal((4, 3)).astype(np.float32))])


def _compile_to(dest: Path, m, **kw) -> None:
    src = dest.parent / (dest.name.removeprefix("tmp-") + ".onnx")   # kept: the --ort comparison reads it
    src.write_bytes(m.SerializeToString())
    M.compile_path(src, **kw).save(dest)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _missing_feature(dest: Path) -> None:
    """An artifact compiled for a CPU feature this machine lacks."""
    have = {f.replace("_", "") for f in _cpu_flags()}
    for feat, flag in CPU_FEATURES:
        if feat.replace("_", "") not in have:
            break
    else:
        raise Skip("this machine has every CPU feature ember_cpu_check knows")
    import importlib

    from ember.target import host

    bc = importlib.import_module("ember.driver.compile")   # the package exports a function of that name

    graph = bc.to_graph(M.add_model())
    lib = bc._build_library(graph, host(), 1, None, lambda msg: None, False, (*M.CFLAGS, flag))
    shutil.copyfile(lib, dest)


def elf_offset(data: bytes, symbol: str) -> int:
    """File offset of a dynamic symbol's code in an ELF64 little-endian shared library."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    for sh in sections:
        if sh[1] == 11:   # SHT_DYNSYM
            strtab = sections[sh[6]]
            for k in range(sh[5] // 24):
                st_name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, sh[4] + k * 24)
                end = data.index(b"\0", strtab[4] + st_name)
                if data[strtab[4] + st_name:end].decode() == symbol:
                    for s in sections:
                        if s[1] == 1 and s[3] <= value < s[3] + s[5]:   # PROGBITS holding it
                            return s[4] + value - s[3]
    raise LookupError(symbol)


def _other_abi(dest: Path) -> None:
    """The add artifact with ember_abi_version patched to return 99, resealed."""
    from ember.runtime import seal_artifact
    from ember.runtime.module import TRAILER_SIZE

    data = bytearray(get(dest.parent, "add.so").read_bytes()[:-TRAILER_SIZE])
    off = elf_offset(bytes(data), "ember_abi_version")
    # mov eax, imm32 (b8 xx xx xx xx) then ret: the usual code of `return CONSTANT;`
    at = data.index(b"\xb8", off)
    if at - off > 8:
        raise RuntimeError("ember_abi_version does not start with mov eax, imm32")
    data[at + 1:at + 5] = struct.pack("<i", 99)
    dest.write_bytes(bytes(data))
    seal_artifact(dest)


def _foreign(dest: Path) -> None:
    """A shared library that is not Ember's, with a valid Ember trailer."""
    from ember.runtime import seal_artifact

    src = dest.with_suffix(".c")
    src.write_text("int answer(void) { return 42; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(dest), str(src)], check=True)
    seal_artifact(dest)


BUILDERS = {
    "add.so": lambda d: _compile_to(d, M.add_model()),
    "gather.so": lambda d: _compile_to(d, M.gather_model()),
    "dyn.so": lambda d: _compile_to(d, dyn_model(), bounds={"n": 8}),
    "strings.ember": lambda d: _compile_to(d, strings_model()),
    "image.ember": lambda d: _compile_to(d, image_model(), bounds={"n": 1 << 23}),
    "cpu_missing.so": _missing_feature,
    "abi99.so": _other_abi,
    "foreign.so": _foreign,
}


#: The prepared artifacts each kind's cases use.
USED_BY = {"inputs": ("add.so", "gather.so", "dyn.so", "strings.ember", "image.ember"),
           "bombs": ("image.ember",),
           "artifacts": ("add.so", "strings.ember", "abi99.so", "cpu_missing.so", "foreign.so")}


def build_all(run_dir: str, cache_dir: str, names: list[str]) -> None:
    """Builds the prepared artifacts ``names`` (in a child of the suite, before the cases, so
    that no case's time limit pays for them); a failure here shows again in the cases."""
    from .child import redirect_output, set_env

    os.setpgid(0, 0)
    folder = Path(run_dir) / "prepared"
    folder.mkdir(parents=True, exist_ok=True)
    redirect_output(folder / "build.log")
    set_env(cache_dir)
    code = 0
    for name in names:
        try:
            get(folder, name)
        except Skip:
            pass
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    os._exit(code)


def get(folder: Path, name: str) -> Path:
    """The prepared artifact ``name`` in ``folder``, built on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    skip = folder / (name + ".skip")
    with open(folder / (name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if skip.exists():
            raise Skip(skip.read_text())
        if not dest.exists():
            tmp = folder / ("tmp-" + name)
            try:
                BUILDERS[name](tmp)
            except Skip as e:
                skip.write_text(str(e))
                raise
            os.replace(tmp, dest)
    return dest


def prepared(ctx: Ctx, name: str) -> Path:
    return get(ctx.run_dir / "prepared", name)


def prepared_onnx(ctx: Ctx, name: str) -> Path:
    """The ONNX model a prepared artifact was compiled from."""
    prepared(ctx, name)
    return ctx.run_dir / "prepared" / (name + ".onnx")


def copy_prepared(ctx: Ctx, name: str, as_name: str | None = None) -> Path:
    """A private copy of a prepared artifact in the case's folder."""
    dest = ctx.dir / (as_name or name)
    shutil.copyfile(prepared(ctx, name), dest)
    return dest

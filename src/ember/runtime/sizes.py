"""How an artifact's bytes divide: the weights, the machine code, and the rest (the runtime's
data, the metadata, the container's tables).

``runtime bytes`` = the artifact less its weights (the constants blob) and trailer: what a
device holds besides the model's parameters, the runtime and the kernels together.  The
machine code is read from the container: the executable sections of an ELF shared library, the
code section of a WebAssembly module.  ``ember info ARTIFACT`` and ``benchmarks/cross.py``
print them (docs/design.md records them per target).
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import ArtifactError
from .artifact import TRAILER_SIZE

SHF_EXECINSTR = 0x4
SHT_NOBITS = 8
WASM_CODE_SECTION = 10


def elf_code_bytes(data: bytes) -> int:
    """The bytes of the executable sections of the ELF file ``data`` (32- or 64-bit)."""
    wide = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    if wide:
        (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3A)
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2E)
    total = 0
    for k in range(shnum):
        at = shoff + k * shentsize
        if at + shentsize > len(data):
            raise ArtifactError("the ELF section table lies beyond the file")
        (kind,) = struct.unpack_from(order + "I", data, at + 4)
        if wide:
            (flags,) = struct.unpack_from(order + "Q", data, at + 8)
            (size,) = struct.unpack_from(order + "Q", data, at + 0x20)
        else:
            (flags,) = struct.unpack_from(order + "I", data, at + 8)
            (size,) = struct.unpack_from(order + "I", data, at + 0x14)
        if flags & SHF_EXECINSTR and kind != SHT_NOBITS:
            total += size
    return total


def wasm_code_bytes(data: bytes) -> int:
    """The size of the code section of the WebAssembly module ``data``."""
    at, total = 8, 0
    while at < len(data):
        section = data[at]
        at += 1
        size = shift = 0
        while True:                       # the section's length: unsigned LEB128
            byte = data[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if section == WASM_CODE_SECTION:
            total += size
        at += size
    return total


def artifact_sizes(path: str | Path, metadata: dict) -> dict:
    """``{"artifact", "weights", "runtime", "code"}`` in bytes for the sealed artifact at ``path``
    (``metadata``: its model metadata, for the weights' size)."""
    data = Path(path).read_bytes()[:-TRAILER_SIZE]
    weights = int(metadata.get("constants_bytes", 0))
    try:
        if data[:4] == b"\0asm":
            code = wasm_code_bytes(data)
        elif data[:4] == b"\x7fELF":
            code = elf_code_bytes(data)
        else:
            code = 0
    except (IndexError, struct.error):
        raise ArtifactError(f"'{path}' is damaged: its container's tables do not fit the file") from None
    return {"artifact": len(data) + TRAILER_SIZE, "weights": weights, "runtime": len(data) - weights, "code": code}

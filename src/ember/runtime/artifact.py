"""The artifact file format: a shared library (or a program) sealed with an integrity trailer.

An artifact is a payload followed by a trailer that ELF loaders ignore::

    payload  |  b"EMBERART"  |  payload length (u64, little-endian)  |  sha256(payload)

The trailer's digest is also the artifact's identity: the runtime loads one library per digest
(``library.py``).  Everything here raises :class:`~ember.errors.ArtifactError` for a file that is
missing, truncated or damaged, so nothing broken ever reaches ``dlopen``.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import stat
import struct
import threading
from pathlib import Path

from ..errors import ArtifactError

TRAILER_MAGIC = b"EMBERART"
TRAILER_SIZE = len(TRAILER_MAGIC) + 8 + 32


def seal_artifact(path: str | os.PathLike) -> None:
    """Appends the integrity trailer to the library at ``path`` (in place)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        digest = sha256_of_fd(f.fileno(), size)
        f.seek(size)
        f.write(TRAILER_MAGIC + struct.pack("<Q", size) + digest)


def trailer_ok(path: str | os.PathLike) -> bool:
    """A cheap check (no hashing): the file ends with a trailer whose length matches."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < TRAILER_SIZE:
                return False
            f.seek(size - TRAILER_SIZE)
            tail = f.read(TRAILER_SIZE)
    except OSError:
        return False
    return tail[:8] == TRAILER_MAGIC and struct.unpack("<Q", tail[8:16])[0] == size - TRAILER_SIZE


def parse_trailer(tail: bytes, size: int, where: str) -> bytes:
    """The digest the trailer ``tail`` (the last bytes of an artifact of ``size`` bytes) records;
    ArtifactError unless it is a trailer and its length matches."""
    if size < TRAILER_SIZE or len(tail) != TRAILER_SIZE:
        raise ArtifactError(f"{where} is not an Ember artifact or is truncated ({size} bytes, no trailer)")
    if tail[:8] != TRAILER_MAGIC:
        raise ArtifactError(f"{where} is not an Ember artifact or is truncated (its trailer is missing)")
    (length,) = struct.unpack("<Q", tail[8:16])
    if length != size - TRAILER_SIZE:
        raise ArtifactError(f"{where} is truncated or damaged: the trailer records {length} bytes of "
                            f"library but the file holds {size - TRAILER_SIZE}")
    return tail[16:]


def corrupt(where: str) -> ArtifactError:
    return ArtifactError(f"{where} is corrupt: its contents do not match its checksum")


def artifact_path(path) -> Path:
    """``path`` as a Path to a regular file, else ArtifactError: not a path (None, a number, which
    ``open`` would take for a file descriptor), a NUL in it, nothing there, or a FIFO, device or
    folder (opening a FIFO would block)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ArtifactError(f"an artifact path must be a str or os.PathLike, not {type(path).__name__}")
    text = os.fspath(path)
    if "\0" in text:
        raise ArtifactError(f"the artifact path {text!r} holds a NUL character")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise ArtifactError(f"no artifact at '{text}'") from None
    except OSError as e:
        raise ArtifactError(f"cannot read the artifact '{text}': {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"'{text}' is not a regular file")
    return Path(text)


def open_artifact(path: Path):
    """``(file, stat, digest the trailer records)`` for the artifact at ``path`` (no hashing);
    the caller closes the file."""
    path = artifact_path(path)
    try:
        f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0)))
    except FileNotFoundError:
        raise ArtifactError(f"no artifact at '{path}'") from None
    except IsADirectoryError:
        raise ArtifactError(f"'{path}' is not a file") from None
    except OSError as e:
        raise ArtifactError(f"cannot read the artifact '{path}': {e.strerror or e}") from None
    with undone_on_error(f.close, f"cannot read the artifact '{path}'"):
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"'{path}' is not a file")
        tail = os.pread(f.fileno(), TRAILER_SIZE, max(st.st_size - TRAILER_SIZE, 0))
        return f, st, parse_trailer(tail, st.st_size, f"'{path}'")


def trailer_digest(path) -> bytes:
    """The digest the trailer of the artifact at ``path`` records (its identity), without hashing
    the payload; ArtifactError for a file that is no artifact."""
    f, _, digest = open_artifact(path)
    f.close()
    return digest


@contextlib.contextmanager
def undone_on_error(undo, what: str):
    """Runs ``undo()`` if the block fails; an OSError becomes ``ArtifactError("<what>: <why>")``."""
    try:
        yield
    except OSError as e:
        undo()
        raise ArtifactError(f"{what}: {e.strerror or e}") from None
    except BaseException:
        undo()
        raise


#: files whose payload was hashed: (device, inode, size, mtime, ctime, recorded digest).  Any
#: write changes the ctime, and a trailer that records another digest is checked again.  The
#: most recent VERIFIED_KEPT are kept (a process that loads new files for ever stays flat; a
#: file forgotten is only hashed again)
_verified: dict[tuple, None] = {}
VERIFIED_KEPT = 4096
_verified_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _verified_lock
    _verified_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def file_identity(st: os.stat_result, digest: bytes) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)


def was_verified(identity: tuple) -> bool:
    with _verified_lock:
        if identity in _verified:
            _verified[identity] = _verified.pop(identity)     # the most recently used last
            return True
        return False


def mark_verified(identity: tuple) -> None:
    with _verified_lock:
        _verified[identity] = None
        while len(_verified) > VERIFIED_KEPT:
            del _verified[next(iter(_verified))]


def verify_artifact(path: str | os.PathLike) -> bytes:
    """Raises :class:`ArtifactError` unless ``path`` is a whole, undamaged artifact; returns the
    payload's sha256 (the artifact's identity).  A file is hashed once per process while it is
    unchanged."""
    path = Path(path)
    f, st, digest = open_artifact(path)
    with f:
        ident = file_identity(st, digest)
        if was_verified(ident):
            return digest
        try:
            ok = sha256_of_fd(f.fileno(), st.st_size - TRAILER_SIZE) == digest
        except OSError as e:
            raise ArtifactError(f"cannot read the artifact '{path}': {e.strerror or e}") from None
    if not ok:
        raise corrupt(f"'{path}'")
    mark_verified(ident)
    return digest


def verify_bytes(data: bytes | memoryview, where: str) -> bytes:
    """The digest of the artifact held in ``data``; ArtifactError unless it is whole."""
    digest = parse_trailer(bytes(data[-TRAILER_SIZE:]), len(data), where)
    if hashlib.sha256(memoryview(data)[:len(data) - TRAILER_SIZE]).digest() != digest:
        raise corrupt(where)
    return digest


def sha256_of_fd(fd: int, length: int) -> bytes:
    """sha256 of the first ``length`` bytes of the open file ``fd`` (through mmap: no copies)."""
    if length == 0:
        return hashlib.sha256().digest()
    try:
        mm = mmap.mmap(fd, length, access=mmap.ACCESS_READ)
    except (OSError, ValueError):   # a file system without mmap: read it in pieces
        h = hashlib.sha256()
        done = 0
        while done < length:
            piece = os.pread(fd, min(length - done, 1 << 24), done)
            if not piece:
                break
            h.update(piece)
            done += len(piece)
        return h.digest()
    with mm:
        view = memoryview(mm)
        try:
            return hashlib.sha256(view).digest()
        finally:
            view.release()


#: ELF e_machine values -> the architecture's name (as ``platform.machine()`` says it)
ELF_MACHINES = {0x3E: "x86_64", 0x03: "i386", 0xB7: "aarch64", 0x28: "arm", 0xF3: "riscv64"}
_HOST_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "arm", "armv8l": "arm", "i686": "i386"}


def artifact_machine(path: str | os.PathLike) -> str:
    """The architecture the artifact's code is for, from its first bytes: ``"wasm32"`` for a
    WebAssembly module, the ELF machine's name (:data:`ELF_MACHINES`) for a shared library,
    ``""`` for anything else (left to the loader to refuse)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return ""
    if head[:4] == b"\0asm":
        return "wasm32"
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return ""
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack(order + "H", head[18:20])
    name = ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")
    return name if name != "riscv64" or head[4] == 2 else "riscv32"


def host_machine() -> str:
    import platform

    m = platform.machine().lower()
    return _HOST_ALIASES.get(m, m)


def check_machine(path: str | os.PathLike) -> None:
    """ArtifactError naming the target when the artifact at ``path`` is for another kind of
    processor than this one (a cross build): it cannot be loaded here."""
    machine = artifact_machine(path)
    if not machine or machine == host_machine():
        return
    verify_artifact(path)       # a truncated or damaged file says so first
    how = ("`ember run` runs it here under Node.js" if machine == "wasm32" else
           f"run it on that machine, or here under qemu-{machine} with `ember run`")
    target = machine
    try:
        from .cross import read_metadata

        named = str(read_metadata(Path(path)).get("target", machine))
        target = named if named == machine else f"{named} ({machine})"
    except (ArtifactError, OSError):
        pass        # not an Ember artifact's metadata: the machine alone names it
    raise ArtifactError(f"'{path}' is a cross-compiled artifact for {target}, not for this {host_machine()} "
                        f"machine: it cannot be loaded here; {how}")

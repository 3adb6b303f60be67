"""Reading ONNX model files and their external data without trusting the model.

Only regular files are read: a path is ``stat``-ed before it is opened (a FIFO would block an
``open``, ``/dev/zero`` never ends), opened non-blocking, and checked again on the open file
descriptor, so that a path swapped between the two looks is still caught.  Sizes are checked
before reading: a model file holds one protobuf message, which cannot exceed 2 GiB.

A tensor whose data lives in an external file names that file relative to the model's folder.
Its reference is checked before any file is touched: only the keys ONNX defines, a relative
location with no ``..`` component, a decimal offset and length; then the file's resolved path
must stay inside the model's (resolved) folder, so a symlink leading out is refused too, and
the offset and length must lie within the file.  A data file is read only through
:func:`read_external_data`, never by onnx's own loader.
"""

from __future__ import annotations

import os
import re
import stat

from .. import limits
from ..errors import ExternalDataError, ModelFileError, ModelLoadError

__all__ = ["MAX_MODEL_BYTES", "read_model_file", "check_external_reference", "read_external_data",
           "hash_model_files", "file_stamp"]

# protobuf refuses to parse (and serialize) a message of 2 GiB or more
MAX_MODEL_BYTES = 2**31 - 1

# the keys of TensorProto.external_data that ONNX defines
EXTERNAL_DATA_KEYS = ("location", "offset", "length", "checksum", "basepath")

_READ_CHUNK = 1 << 26


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _open_regular(path: str, what: str, error: type, nofollow: bool = False) -> tuple[int, os.stat_result]:
    """An fd open for reading on ``path``, which must be a regular file (checked before opening
    and on the open descriptor), with its fstat; with ``nofollow``, a path whose last component
    has become a symbolic link since it was resolved is refused."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"no such {what}: '{path}'") from None
    except OSError as e:
        raise error(f"cannot read {what} '{path}': {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{what} '{path}' is {_kind(st.st_mode)}; Ember reads regular files only")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise error(f"cannot open {what} '{path}': {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{what} '{path}' is {_kind(st.st_mode)}; Ember reads regular files only")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_at(fd: int, offset: int, length: int, what: str, path: str) -> bytes:
    """Exactly ``length`` bytes at ``offset`` (the file was checked to hold them; a file that
    shrank meanwhile is reported as truncated).  A regular file gives them in one read, up to
    the kernel's limit on one read (about 2 GiB)."""
    chunks = []
    got = 0
    try:
        while got < length:
            chunk = os.pread(fd, length - got, offset + got)
            if not chunk:
                raise ModelLoadError(f"{what} '{path}' ended after {got} of {length} bytes "
                                     f"(truncated while being read?)")
            chunks.append(chunk)
            got += len(chunk)
    except OSError as e:
        raise ModelLoadError(f"cannot read {what} '{path}': {e.strerror or e}") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_model_file(path: str) -> bytes:
    """The bytes of the model file at ``path``: a regular file below protobuf's size limit."""
    return _read_model_file(path)[0]


def _read_model_file(path: str) -> tuple[bytes, os.stat_result]:
    """The bytes of the model file at ``path`` and its ``fstat`` from before they were read."""
    fd, st = _open_regular(path, "model file", ModelLoadError)
    try:
        if st.st_size == 0:
            raise ModelFileError(f"model file '{path}' is empty, not an ONNX model")
        if st.st_size > MAX_MODEL_BYTES:
            raise ModelFileError(f"model file '{path}' has {st.st_size} bytes; an ONNX model file holds one "
                                 f"protobuf message of at most {MAX_MODEL_BYTES} bytes (keep big weights "
                                 f"in external data files)")
        return _read_at(fd, 0, st.st_size, "model file", path), st
    finally:
        os.close(fd)


def _text(x) -> str:
    return x.decode("utf-8", "backslashreplace") if isinstance(x, (bytes, bytearray)) else str(x)


def check_external_reference(t, what: str) -> tuple[str, int, int | None]:
    """The (location, offset, length) of tensor ``t``'s external data, after checking the
    reference alone (no file is touched): known keys given once, a relative location that
    does not climb out of its folder, decimal non-negative offset and length."""
    name = _text(t.name)
    entries: dict[str, str] = {}
    for e in t.external_data:
        key, value = _text(e.key), e.value
        if key not in EXTERNAL_DATA_KEYS:
            raise ExternalDataError(f"{what} '{name}' has the external-data key {key!r}; ONNX defines "
                                    f"{', '.join(EXTERNAL_DATA_KEYS)}")
        if key in entries:
            raise ExternalDataError(f"{what} '{name}' gives the external-data key '{key}' twice")
        if not isinstance(value, str):
            raise ExternalDataError(f"{what} '{name}': external-data {key} {_text(value)!r} is not valid UTF-8")
        entries[key] = value
    loc = entries.get("location", "")
    if not loc:
        raise ExternalDataError(f"{what} '{name}' keeps its data externally but names no location")
    if "\0" in loc:
        raise ExternalDataError(f"{what} '{name}': external-data location {loc!r} holds a NUL byte")
    parts = [p for p in re.split(r"[\\/]", loc)]
    if (os.path.isabs(loc) or loc.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", loc)
            or ".." in parts):
        raise ExternalDataError(f"{what} '{name}': external-data location {loc!r} must be a path relative "
                                f"to the model's folder and inside it (no absolute path, no '..')")
    nums: list[int | None] = []
    for key in ("offset", "length"):
        v = entries.get(key)
        if v is None:
            nums.append(None)
            continue
        if not re.fullmatch(r"[0-9]{1,20}", v.strip()):
            raise ExternalDataError(f"{what} '{name}': external-data {key} {v!r} is not a non-negative integer")
        nums.append(int(v))
    return loc, nums[0] or 0, nums[1]


def read_external_data(t, base_dir: str, nbytes: int, what: str) -> bytes:
    """The ``nbytes`` bytes of tensor ``t``'s external data, read from a regular file inside
    ``base_dir`` (the model's folder) after checking the reference and the file's bounds."""
    loc, offset, length = check_external_reference(t, what)
    name = _text(t.name)
    if length is not None and length != nbytes:
        raise ExternalDataError(f"{what} '{name}': external-data length {length} does not match its type "
                                f"and dims, which take {nbytes} bytes")
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, loc))
    if os.path.commonpath([base, path]) != base:
        raise ExternalDataError(f"{what} '{name}': external-data location {loc!r} leads outside the "
                                f"model's folder (through a symbolic link) to '{path}'")
    fd, st = _open_regular(path, f"external data file of {what} '{name}'", ExternalDataError, nofollow=True)
    try:
        if offset > st.st_size or nbytes > st.st_size - offset:
            raise ExternalDataError(f"{what} '{name}' needs {nbytes} bytes at offset {offset} of '{loc}', "
                                    f"which has {st.st_size} bytes")
        if length is None and st.st_size - offset != nbytes:
            # without a length the data runs to the end of the file (as onnx reads it)
            raise ExternalDataError(f"{what} '{name}': its external data runs from offset {offset} to the end of "
                                    f"'{loc}', {st.st_size - offset} bytes, but its type and dims take {nbytes}")
        return _read_at(fd, offset, nbytes, "external data file", loc)
    finally:
        os.close(fd)


def _tensors(g):
    """The TensorProtos of graph ``g`` and of the graphs its nodes hold."""
    from .onnx_proto import A

    yield from g.initializer
    for n in g.node:
        for a in n.attribute:
            if a.type == A.TENSOR:
                yield a.t
            elif a.type == A.TENSORS:
                yield from a.tensors
            elif a.type == A.GRAPH:
                yield from _tensors(a.g)
            elif a.type == A.GRAPHS:
                for sub in a.graphs:
                    yield from _tensors(sub)


def file_stamp(st: os.stat_result) -> tuple:
    """What identifies a file's content without reading it: the file (device, inode), its size
    and its modification and change times (a write sets the change time to the clock's now)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def hash_model_files(path: str, h, stamps: list | None = None) -> None:
    """Feed hash ``h`` the model file at ``path`` and every external data file it refers to,
    read as :func:`from_onnx` would read them (so a cache keyed on it sees new weights saved
    beside an unchanged model file).  Raises the errors those reads raise.  ``stamps``, if
    given, receives ``(path, file_stamp)`` of every file read, as it was opened."""
    data, st = _read_model_file(path)
    if stamps is not None:
        stamps.append((path, file_stamp(st)))
    h.update(data)
    if b"location" not in data:
        return                          # no external-data reference can be in there
    from .onnx_proto import T, parse_model

    mp = parse_model(data, f"'{path}'")
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    locations = set()
    for t in _tensors(mp.graph):
        if t.data_location == T.EXTERNAL:
            locations.add(check_external_reference(t, "tensor")[0])
    for loc in sorted(locations):
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([base, full]) != base:
            raise ExternalDataError(f"external-data location {loc!r} leads outside the model's folder")
        fd, st = _open_regular(full, "external data file", ExternalDataError, nofollow=True)
        try:
            most = limits.current().memory_bytes
            if st.st_size > most:
                raise ExternalDataError(f"external data file '{loc}' holds {st.st_size:,} bytes, more than the "
                                        f"{most:,} bytes a model may take (the memory_bytes limit)")
            h.update(f"\0{loc}\0{st.st_size}\0".encode())
            if stamps is not None:
                stamps.append((full, file_stamp(st)))
            for offset in range(0, st.st_size, _READ_CHUNK):
                h.update(_read_at(fd, offset, min(_READ_CHUNK, st.st_size - offset), "external data file", loc))
        finally:
            os.close(fd)

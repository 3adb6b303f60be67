"""Artifact libraries: loaded by content, shared by content, released when the last user goes.

``dlopen`` looks a library up by its path name first: opening a path again after another
artifact was saved there hands back the library already loaded from the old file.  So an
artifact is never opened where it lies.  Its bytes are copied into a private file, checked there
against the trailer's sha256 (what runs is exactly what was checked, whatever happens to the
original afterwards), and the private copy is opened:

* an anonymous memory file (``memfd_create``), opened as ``/proc/self/fd/N``.  Nothing is written
  to disk and the kernel frees it when the process ends, however it ends.  The descriptor stays
  open while the library is loaded, so no other library of the process can have that name;
* where memory files cannot hold code (no ``memfd_create`` or ``/proc``, ``vm.memfd_noexec``): a
  file named by the content's digest in a private folder of this process in the temporary
  folder, unlinked as soon as it is open (the folder of a process that was killed is removed by
  the next process that makes one).  A name that is still loaded holds the same content.

The artifact's own folder may be read-only; the original is read once.  A compile that loads
what it built seals it through its private copy (:func:`seal_loadable`): the copy is hashed
once, for the trailer, and the load opens it.  The private copy stays
open (a descriptor) while its library is loaded, and ``Module.save`` writes it out.

Every load of the same content (digest) in a process shares one :class:`Library`.  When the last
:class:`~ember.runtime.Module` using a library is gone, its model instances are destroyed, its
thread pool's workers are stopped and joined (``ember_stop_workers``), and it is ``dlclose``'d.
Output arrays are numpy's own memory and stay valid.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import mmap
import os
import shutil
import struct
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import _ctypes

import numpy as np

from ..errors import ArtifactError, EmberError
from .artifact import (TRAILER_MAGIC, TRAILER_SIZE, corrupt, file_identity, mark_verified, open_artifact, sha256_of_fd,
                       undone_on_error, verify_bytes, was_verified)

#: The ABI version of ``ember_runtime.h`` this runtime speaks.
ABI_VERSION = 5

_VOIDP_P = ctypes.POINTER(ctypes.c_void_p)

#: The runtime's exported functions and their C types.
_PROTOS = {
    "ember_cpu_check": (ctypes.c_int, []),
    "ember_metadata": (ctypes.c_char_p, []),
    "ember_arena_bytes": (ctypes.c_ulonglong, []),
    "ember_num_inputs": (ctypes.c_int, []),
    "ember_num_outputs": (ctypes.c_int, []),
    "ember_model_create": (ctypes.c_void_p, []),
    "ember_model_run": (ctypes.c_int, [ctypes.c_void_p, _VOIDP_P, _VOIDP_P]),
    "ember_model_destroy": (None, [ctypes.c_void_p]),
    "ember_last_error": (ctypes.c_char_p, []),
    "ember_set_num_threads": (None, [ctypes.c_int]),
    "ember_get_num_threads": (ctypes.c_int, []),
    "ember_share_workers": (None, [ctypes.POINTER(ctypes.c_int)]),
    "ember_add_worker_slots": (None, [ctypes.POINTER(ctypes.c_int), ctypes.c_int]),
    "ember_stop_workers": (None, []),
    "ember_num_symbols": (ctypes.c_int, []),
    "ember_model_run_dynamic": (ctypes.c_int, [ctypes.c_void_p, _VOIDP_P, _VOIDP_P, _VOIDP_P]),
    "ember_input_default": (ctypes.c_void_p, [ctypes.c_int, ctypes.POINTER(ctypes.POINTER(ctypes.c_int64))]),
    "ember_model_output_shape": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64)]),
    "ember_model_output": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int]),
    "ember_model_set_tensor_limit": (None, [ctypes.c_void_p, ctypes.c_int64]),
}

_lock = threading.RLock()          # the registry, loading and releasing (re-entrant: __del__)
_live: "dict[bytes, weakref.ref[Library]]" = {}
_memfd_works: bool | None = None   # decided by the first load of the process
_kept_fds: list[int] = []          # names of libraries that did not unload stay reserved


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()      # another thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- threads shared by every artifact of the process ------------------------------------------

def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: Worker slots of the whole process, handed to every library's thread pool
#: (``ember_share_workers``): models run at once from several host threads together use at
#: most this many workers besides the host threads (the CPUs less one by default).
_WORKER_SLOTS = ctypes.c_int(max(_cpus() - 1, 0))
_worker_total = _WORKER_SLOTS.value


def process_threads() -> int:
    """The most threads all Modules of this process use at once (host thread included)."""
    return _worker_total + 1


def set_process_threads(n: int) -> None:
    """Let all Modules of this process together use up to ``n`` threads at once (each still at
    most its own ``num_threads``); by default the CPUs this process may run on."""
    global _worker_total
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EmberError(f"the process thread count must be a positive integer, not {n!r}")
    with _lock:     # no library can be loaded or released meanwhile
        delta = int(n) - 1 - _worker_total
        lib = next((r() for r in _live.values() if r() is not None), None)
        if lib is not None:     # regions may be running: change the counter atomically
            lib.fns["ember_add_worker_slots"](ctypes.byref(_WORKER_SLOTS), delta)
        else:                   # no library loaded, so no region runs
            _WORKER_SLOTS.value += delta
        _worker_total = int(n) - 1


# ---- loaded libraries ---------------------------------------------------------------------------

class Library:
    """One loaded artifact library (get one with :func:`load_file` or :func:`load_bytes`).

    ``fns`` holds its typed functions; model instances are made and destroyed through
    :meth:`new_instance` and :meth:`free_instance`, so that the library is released only once
    the last instance is destroyed and nothing references it."""

    def __init__(self, digest: bytes, cdll: ctypes.CDLL, fns: dict, fd: int, name: str):
        self.digest = digest
        self.fns = fns
        self._cdll = cdll
        self._fd = fd              # the private copy (whole artifact, trailer included)
        self._name = name          # the name it was opened by
        self._instances = 0
        self._ran = False          # an instance was made (the processor check passed)
        self._dropped = False
        self._released = False

    @property
    def id(self) -> str:
        return self.digest.hex()

    def symbol(self, name: str):
        """An exported function of the library beyond ``fns`` (AttributeError if absent)."""
        return getattr(self._cdll, name)

    def new_instance(self) -> int | None:
        with _lock:
            model = self.fns["ember_model_create"]()
            if model:
                self._instances += 1
                self._ran = True
            return model

    def free_instance(self, model: int) -> None:
        with _lock:
            if self._released:
                return
            self.fns["ember_model_destroy"](model)
            self._instances -= 1
            if self._instances == 0 and self._dropped:
                self._release()

    def write_to(self, fileobj) -> None:
        """Writes the artifact this library was loaded from (the private copy) to ``fileobj``."""
        size = os.fstat(self._fd).st_size
        done = 0
        while done < size:
            piece = os.pread(self._fd, min(size - done, 1 << 24), done)
            if not piece:
                raise ArtifactError(f"the private copy of artifact {self.id[:16]} is shorter than it was")
            fileobj.write(piece)
            done += len(piece)

    def __del__(self) -> None:
        if sys.is_finalizing():       # the process is ending: exit unloads everything
            return
        try:
            with _lock:
                self._dropped = True
                if self._instances == 0:
                    self._release()
        except Exception:
            pass

    def _release(self) -> None:
        """Stops the pool's workers, unloads the library, closes the private copy (under _lock)."""
        if self._released or sys.is_finalizing():
            return
        self._released = True
        ref = _live.get(self.digest)
        if ref is not None and ref() in (None, self):
            del _live[self.digest]
        fns, self.fns = self.fns, {}
        if self._ran:
            fns["ember_stop_workers"]()
        _ctypes.dlclose(self._cdll._handle)
        _close_private(self._fd, self._name)

    def __repr__(self) -> str:
        return f"<ember library {self.id[:16]} at {self._name}{' (released)' if self._released else ''}>"


def live_libraries() -> list[Library]:
    """The libraries loaded now (for tests and diagnostics)."""
    with _lock:
        return [lib for lib in (r() for r in _live.values()) if lib is not None]


def _shared(digest: bytes) -> Library | None:
    ref = _live.get(digest)
    lib = ref() if ref is not None else None
    return lib if lib is not None and not lib._released else None


def load_file(path: Path) -> Library:
    """The library of the artifact at ``path`` (checked for integrity): one already loaded
    with the same content, else the private copy :func:`seal_loadable` kept of that content,
    else a new private copy, loaded."""
    f, st, digest = open_artifact(path)
    where = f"'{path}'"
    with f:
        ident = file_identity(st, digest)
        if was_verified(ident):
            with _lock:
                lib = _shared(digest)
            if lib is not None:
                return lib
        kept = _take_kept(digest)
        if kept is not None:        # hashed when it was sealed: what runs is what was hashed
            return _open(kept, digest, where)
        copy = _private_copy(lambda out: _copy_hashed(f.fileno(), out, st.st_size, st.st_size - TRAILER_SIZE),
                             digest, where)
    mark_verified(ident)
    return _open(copy, digest, where)


#: ``(digest, private copy)`` that :func:`seal_loadable` made last, until a load takes it
_kept: "tuple[bytes, _Copy] | None" = None


def seal_loadable(path: str | os.PathLike) -> bytes:
    """Seals the library at ``path`` as ``artifact.seal_artifact`` does, through a private copy:
    the library is copied into a private file (as :func:`load_file` copies an artifact), the
    copy is hashed, and the trailer is appended to the copy and to the file.  The copy is kept
    for the next :func:`load_file` of that digest, which opens it without copying or hashing
    again (one pass over the bytes fewer: a compile loads what it built).  One copy is kept at
    most, the last one made.  (Its memory file is named ``ember-sealing``, not by the digest,
    which is known only once the copy is made.)  Returns the digest."""
    global _kept
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        copy = _new_copy("sealing")
        with undone_on_error(copy.discard, f"cannot seal the artifact '{path}'"):
            digest = _copy_hashed(f.fileno(), copy.fd, size, size)
            if os.fstat(copy.fd).st_size != size or len(digest) != 32:
                raise ArtifactError(f"cannot seal the artifact '{path}': it changed while it was copied")
            trailer = TRAILER_MAGIC + struct.pack("<Q", size) + digest
            _pwrite_all(copy.fd, trailer, size)
            _pwrite_all(f.fileno(), trailer, size)
    with _lock:
        old, _kept = _kept, (digest, copy)
    if old is not None:
        old[1].discard()
    return digest


def _take_kept(digest: bytes) -> "_Copy | None":
    global _kept
    with _lock:
        if _kept is None or _kept[0] != digest:
            return None
        copy, _kept = _kept[1], None
        return copy


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def load_bytes(data: bytes | memoryview, where: str) -> Library:
    """The library of the artifact held in ``data`` (checked for integrity); ``where`` names it
    in errors."""
    digest = verify_bytes(data, where)
    with _lock:
        lib = _shared(digest)
    if lib is not None:
        return lib
    return _open(_private_copy(lambda out: _write_all(out, data), digest, where, check=False), digest, where)


def _private_copy(fill, digest: bytes, where: str, check: bool = True) -> "_Copy":
    """A private file holding the artifact (``fill(fd)`` writes it and may return the sha256
    of the copy's payload, hashed as it was written), checked against ``digest`` unless
    ``check`` is False (the caller checked what it writes)."""
    copy = _new_copy(digest.hex()[:16])
    with undone_on_error(copy.discard, f"cannot copy the artifact {where} to load it"):
        got = fill(copy.fd)
        size = os.fstat(copy.fd).st_size
        if check:
            if got is None and size >= TRAILER_SIZE:
                got = sha256_of_fd(copy.fd, size - TRAILER_SIZE)
            if size < TRAILER_SIZE or got != digest:
                raise corrupt(where)
    return copy


def _new_copy(name: str) -> "_Copy":
    """An empty private file: a memory file where they may hold code, else a named one."""
    if _memfd_works is not False and _memfd_possible():
        try:
            return _Copy(os.memfd_create(f"ember-{name}", getattr(os, "MFD_CLOEXEC", 0)), None)
        except OSError:
            pass
    return _Copy.named()


class _Copy:
    """A private copy of an artifact: a memory file (``path`` None) or a file in the private
    folder (``path``: its temporary name until it is opened)."""

    def __init__(self, fd: int, path: Path | None):
        self.fd = fd
        self.path = path

    @classmethod
    def named(cls) -> "_Copy":
        fd, name = tempfile.mkstemp(prefix=".copy-", suffix=".tmp", dir=_private_folder())
        return cls(fd, Path(name))

    def discard(self) -> None:
        os.close(self.fd)
        if self.path is not None:
            _unlink(self.path)

    def dlopen(self, digest: bytes) -> tuple[ctypes.CDLL, str]:
        """Opens the copy: ``(library, the name it was opened by)``."""
        if self.path is None:
            held = []
            name = f"/proc/self/fd/{self.fd}"
            try:
                while _is_loaded(name):     # some other code's library, opened by this name and kept
                    held.append(self.fd)
                    self.fd = os.dup(self.fd)
                    name = f"/proc/self/fd/{self.fd}"
                return ctypes.CDLL(name, mode=os.RTLD_LOCAL), name
            finally:
                for fd in held:
                    os.close(fd)
        # named by the digest: if that name is still loaded, it holds the same content
        name = str(self.path.parent / f"{digest.hex()}.so")
        try:
            os.replace(self.path, name)
            return ctypes.CDLL(name, mode=os.RTLD_LOCAL), name
        finally:
            _unlink(self.path)
            _unlink(Path(name))
            self.path = None

    def to_file(self) -> "_Copy":
        """The same content in the private folder (when memory files cannot hold code)."""
        named = _Copy.named()
        try:
            _copy_fd(self.fd, named.fd, os.fstat(self.fd).st_size)
        except BaseException:
            named.discard()
            raise
        self.discard()
        return named


def _open(copy: _Copy, digest: bytes, where: str) -> Library:
    global _memfd_works
    with _lock:
        lib = _shared(digest)        # loaded meanwhile by another thread
        if lib is not None:
            copy.discard()
            return lib
        memfd = copy.path is None
        try:
            try:
                cdll, name = copy.dlopen(digest)
            except OSError as e:
                if not memfd or _memfd_works:
                    raise ArtifactError(f"cannot load the artifact {where}: {e}") from None
                # memory files may not hold code here: try a file; if that fails too, the artifact is bad
                copy = copy.to_file()
                try:
                    cdll, name = copy.dlopen(digest)
                except OSError as e2:
                    raise ArtifactError(f"cannot load the artifact {where}: {e2}") from None
                _memfd_works = False
            else:
                _memfd_works = _memfd_works or memfd
        except BaseException:
            copy.discard()
            raise
        try:
            fns = _bind(cdll, where)
        except BaseException:
            _ctypes.dlclose(cdll._handle)
            _close_private(copy.fd, name)
            raise
        fns["ember_share_workers"](ctypes.byref(_WORKER_SLOTS))
        lib = Library(digest, cdll, fns, copy.fd, name)
        _live[digest] = weakref.ref(lib)
        return lib


def _bind(cdll: ctypes.CDLL, where: str) -> dict[str, Any]:
    """Checks the ABI and looks up and types the runtime's exported functions."""
    def lookup(name: str):
        try:
            return getattr(cdll, name)
        except AttributeError:
            raise ArtifactError(f"{where} is not an Ember artifact of this version: it lacks '{name}'") from None

    abi_fn = lookup("ember_abi_version")
    abi_fn.restype, abi_fn.argtypes = ctypes.c_int, []
    abi = abi_fn()
    if abi != ABI_VERSION:
        raise ArtifactError(f"{where} was built for runtime ABI {abi}; this Ember reads ABI {ABI_VERSION}")
    fns = {"ember_abi_version": abi_fn}
    for name, (restype, argtypes) in _PROTOS.items():
        fn = lookup(name)
        fn.restype = restype
        fn.argtypes = argtypes
        fns[name] = fn
    return fns


# ---- private copies ---------------------------------------------------------------------------

def _memfd_possible() -> bool:
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


#: a copy at least this large is hashed while it is being made (see _copy_hashed)
PIPELINE_BYTES = 32 << 20
_PIECE = 16 << 20


def _copy_hashed(src: int, dst: int, size: int, length: int) -> bytes:
    """Copies the ``size`` bytes of ``src`` into the empty private file ``dst`` and returns the
    sha256 of the copy's first ``length`` bytes (read back from the copy: what runs is what
    was hashed); ``b""`` when ``src`` held fewer bytes.  A large copy is made by a thread, in
    pieces, while this one hashes the pieces it has finished (the kernel's copy and the hash
    on two processors: 0.45 -> 0.3 s of wall time for 437 MB); a small one, or where the
    pieces cannot be copied so, one after the other."""
    if size < PIPELINE_BYTES:
        _copy_fd(src, dst, size)
        return sha256_of_fd(dst, length) if os.fstat(dst).st_size >= size else b""
    os.ftruncate(dst, size)
    try:
        mm = mmap.mmap(dst, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError):       # a file system without mmap: one after the other
        os.ftruncate(dst, 0)
        _copy_fd(src, dst, size)
        return sha256_of_fd(dst, length) if os.fstat(dst).st_size >= size else b""
    state = {"done": 0, "error": None}
    cond = threading.Condition()

    def copier() -> None:
        done = 0
        try:
            while done < size:
                n = os.sendfile(dst, src, done, min(_PIECE, size - done))
                if n == 0:
                    break
                done += n
                with cond:
                    state["done"] = done
                    cond.notify()
        except BaseException as e:      # no sendfile between these files: copied below instead
            state["error"] = e
        with cond:
            state["finished"] = done
            cond.notify()

    worker = threading.Thread(target=copier, name="ember-copy", daemon=True)
    worker.start()
    h = hashlib.sha256()
    hashed = 0
    try:
        with mm:
            view = memoryview(mm)
            try:
                while hashed < length:
                    with cond:
                        while state["done"] <= hashed and "finished" not in state:
                            cond.wait()
                        upto = min(state["done"], length)
                    if upto <= hashed:
                        break           # the copy ended early
                    h.update(view[hashed:upto])
                    hashed = upto
            finally:
                view.release()
    finally:
        worker.join()
    if state["error"] is not None:      # start again without the thread (read and write)
        os.ftruncate(dst, 0)
        os.lseek(dst, 0, os.SEEK_SET)
        _copy_fd(src, dst, size)
        return sha256_of_fd(dst, length) if os.fstat(dst).st_size >= size else b""
    return h.digest() if state["finished"] == size and hashed == length else b""


def _copy_fd(src: int, dst: int, size: int) -> None:
    done = 0
    try:
        while done < size:
            n = os.sendfile(dst, src, done, size - done)
            if n == 0:
                break
            done += n
    except OSError:             # no sendfile between these files: read and write
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        done = 0
        while done < size:
            piece = os.pread(src, min(size - done, 1 << 24), done)
            if not piece:
                break
            _write_all(dst, piece)
            done += len(piece)


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _is_loaded(name: str) -> bool:
    try:
        probe = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
    except OSError:
        return False
    _ctypes.dlclose(probe._handle)
    return True


def _close_private(fd: int, name: str) -> None:
    """Closes a released library's private copy; a memory file whose library is somehow still
    loaded stays open, so that no other library can have its name."""
    if name.startswith("/proc/self/fd/") and _is_loaded(name):
        _kept_fds.append(fd)
        return
    os.close(fd)


_folder: Path | None = None
_folder_pid = 0
_FOLDER_PREFIX = f"ember-libs-{os.getuid() if hasattr(os, 'getuid') else 0}-"


def _private_folder() -> Path:
    """This process's folder for private copies (mode 0700), made on first use; folders of
    processes that no longer exist are removed on the way."""
    global _folder, _folder_pid
    with _lock:
        if _folder is not None and _folder_pid == os.getpid() and _folder.is_dir():
            return _folder
        base = Path(tempfile.gettempdir())
        _sweep(base)
        try:
            _folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-", dir=base))
        except OSError as e:
            raise ArtifactError(f"cannot make a private folder in {base} to load artifacts from "
                                f"({e.strerror or e}); set $TMPDIR to a writable folder") from None
        _folder_pid = os.getpid()
        atexit.register(_remove_folder, _folder, _folder_pid)
        return _folder


def _remove_folder(folder: Path, pid: int) -> None:
    if os.getpid() == pid:       # not from a forked child that exits normally
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(base: Path) -> None:
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(_FOLDER_PREFIX)]
    except OSError:
        return
    for e in entries:
        try:
            pid = int(e.name[len(_FOLDER_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(e.path, ignore_errors=True)
        except (ValueError, OSError):
            pass

"""A content-addressed file cache on disk.

Entries are files named by a key (a hex digest, usually) in one folder.  Writes go to a
temporary name in the same folder, are flushed to disk and renamed into place with
``os.replace``, so a reader sees either no entry or a whole one, concurrent writers of the same
key are harmless, and a crash (of the process or the machine) never leaves a half-written entry.
A key is a file name of letters, digits, ``_``, ``.`` and ``-`` (anything else, e.g. ``..`` or
``/``, is refused with :class:`~ember.errors.ToolchainError`); the caller makes it cover
everything the entry depends on.

The cache lives at ``$EMBER_CACHE_DIR``, else ``$XDG_CACHE_HOME/ember``, else
``~/.cache/ember``.  It is bounded: when its entries (all kinds together, a file linked under two
keys counted once) pass ``$EMBER_CACHE_MAX`` (bytes, or with a K/M/G suffix; default 10G; ``0`` or
``unlimited``: no bound), the least recently used entries are removed until it is back under 80%
of the bound.  A hit counts as a use (its time stamp is renewed).  A full disk is a
:class:`~ember.errors.ToolchainError` that says so, never a half-written entry.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path

from ..errors import ToolchainError

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
DEFAULT_MAX_BYTES = 10 << 30
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def cache_dir() -> Path:
    """The root of Ember's on-disk cache (not created by this call)."""
    env = os.environ.get("EMBER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ember"
    return Path.home() / ".cache" / "ember"


def cache_limit() -> int | None:
    """The cache's bound in bytes (``$EMBER_CACHE_MAX``), or None for no bound."""
    raw = os.environ.get("EMBER_CACHE_MAX", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if raw.lower() in ("0", "unlimited", "none"):
        return None
    m = _SIZE.match(raw)
    if not m:
        raise ToolchainError(f"EMBER_CACHE_MAX={raw!r} is not a size: give bytes, or a number with K, M, G or T "
                             "(e.g. 20G), or 'unlimited'")
    scale = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[(m.group(2) or "")[:1].lower()]
    return int(float(m.group(1)) * scale)


def no_space(e: OSError) -> bool:
    """Whether ``e`` says the disk (or the user's quota) is full."""
    return isinstance(e, OSError) and e.errno in _NO_SPACE


def full_disk_error(where: Path, e: OSError) -> ToolchainError:
    return ToolchainError(f"no space left on the disk of Ember's cache ({where}): {e.strerror or e}. Free space, "
                          "lower the cache's bound (EMBER_CACHE_MAX, now "
                          f"{_human(cache_limit())}), remove it with `ember cache --clear`, or point "
                          "EMBER_CACHE_DIR at a larger disk")


def _human(n: int | None) -> str:
    if n is None:
        return "unlimited"
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n}B"


def entries(root: Path | None = None) -> list[tuple[Path, os.stat_result]]:
    """Every entry of every kind under the cache's root (temporaries and builds in progress not
    counted), with its ``stat``."""
    root = root or cache_dir()
    found = []
    try:
        kinds = [k for k in os.scandir(root) if k.is_dir(follow_symlinks=False) and not k.name.startswith(".")]
    except OSError:
        return found
    for kind in kinds:
        try:
            files = list(os.scandir(kind.path))
        except OSError:
            continue
        for f in files:
            if f.name.startswith("."):
                continue
            try:
                st = f.stat(follow_symlinks=False)
            except OSError:
                continue
            if not os.path.isdir(f.path):
                found.append((Path(f.path), st))
    return found


def _files(root: Path | None) -> list[tuple[list[Path], int, float]]:
    """The cache's files, a file under several names once: (its names, bytes on disk, when its
    most recently used name was last used)."""
    by_inode: dict = {}
    for path, st in entries(root):
        by_inode.setdefault((st.st_dev, st.st_ino), []).append((path, st))
    return [([p for p, _ in names], getattr(names[0][1], "st_blocks", 0) * 512 or names[0][1].st_size,
             max(st.st_mtime for _, st in names)) for names in by_inode.values()]


def usage(root: Path | None = None) -> int:
    """Bytes the cache's entries take (a file under two names counted once)."""
    return sum(size for _, size, _ in _files(root))


def clear(root: Path | None = None) -> int:
    """Removes every entry; returns the bytes freed."""
    files = _files(root)
    for names, _, _ in files:
        for p in names:
            _unlink_quietly(p)
    return sum(size for _, size, _ in files)


def trim(limit: int | None = None, *, root: Path | None = None, keep: Path | None = None) -> int:
    """Removes the least recently used entries until the cache is under 80% of ``limit`` (default:
    ``cache_limit()``) when it is over ``limit``; never ``keep``.  Returns the bytes freed."""
    limit = cache_limit() if limit is None else limit
    if limit is None:
        return 0
    files = sorted(_files(root), key=lambda f: f[2])
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return 0
    freed = 0
    for names, size, _ in files:
        if total - freed <= limit * 0.8:
            break
        if keep is not None and keep in names:
            continue
        for p in names:
            _unlink_quietly(p)
        freed += size
    return freed


class _Trimmer:
    """Trims the cache after writes, at most once per second and per 64 MB written in a process
    (a compile writes hundreds of small objects)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = 0.0
        self.written = 0

    def after_write(self, path: Path, nbytes: int, bounded: bool = True) -> None:
        if not bounded:
            return
        with self.lock:
            self.written += nbytes
            now = time.monotonic()
            if now - self.last < 1.0 and self.written < (64 << 20):
                return
            self.last, self.written = now, 0
        try:
            trim(root=path.parent.parent, keep=path)
        except OSError:
            pass


_trimmer = _Trimmer()


def _clear_foreign(dest: Path) -> None:
    """Removes a folder (or anything else that is not a file or a link) standing at an entry's
    name, which ``os.replace`` could not replace: it is no entry of this cache, and ``get``
    already treats the name as a miss."""
    try:
        st = os.lstat(dest)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(dest, ignore_errors=True)
    elif not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        _unlink_quietly(dest)


class Cache:
    """Files stored under keys in one folder: ``<root>/<key><suffix>``.

    ``root`` defaults to ``cache_dir() / kind``; ``suffix`` (e.g. ``".so"``) is appended to every
    entry's file name.
    """

    def __init__(self, kind: str = "files", *, root: str | os.PathLike | None = None, suffix: str = ""):
        self.root = Path(root) if root is not None else cache_dir() / kind
        self.suffix = suffix
        self._bounded = root is None        # a folder of the caller's own is not trimmed

    def beside(self, suffix: str) -> "Cache":
        """The entries of the same folder with another suffix (a record kept beside each entry)."""
        other = Cache(suffix=suffix, root=self.root)
        other._bounded = self._bounded
        return other

    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ToolchainError(f"invalid cache key {key!r}: use letters, digits, '_', '.' and '-' "
                                 "(at most 200, starting with a letter or digit)")
        return self.root / f"{key}{self.suffix}"

    def get(self, key: str) -> Path | None:
        """The entry's path, or ``None`` when there is none; a hit is marked as used now."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return path

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, src: str | os.PathLike, *, move: bool = False, link: bool = False) -> Path:
        """Stores a copy of file ``src`` (or moves it, with ``move=True``; or, with ``link=True``,
        a second name of the same file where the file system allows: ``src`` must then never be
        written in place) under ``key``.  A full disk raises ToolchainError."""
        dest = self.path_for(key)
        self._mkdir()
        _clear_foreign(dest)
        size = os.stat(src).st_size
        if move or link:
            try:
                _sync(src)
                if move:
                    os.replace(src, dest)
                else:
                    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
                    os.link(src, tmp)
                    try:
                        os.replace(tmp, dest)
                    except BaseException:
                        _unlink_quietly(tmp)
                        raise
                _trimmer.after_write(dest, 0 if link else size, self._bounded)
                return dest
            except OSError:
                pass  # another file system: copy below
        tmp = self._temp_name(dest)
        try:
            shutil.copyfile(src, tmp)
            shutil.copymode(src, tmp)  # mkstemp made it private
            _sync(tmp)
            os.replace(tmp, dest)
        except OSError as e:
            _unlink_quietly(tmp)
            if no_space(e):
                raise full_disk_error(self.root, e) from e
            raise
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if move:
            _unlink_quietly(Path(src))
        _trimmer.after_write(dest, size, self._bounded)
        return dest

    def put_bytes(self, key: str, data: bytes) -> Path:
        """Stores ``data`` under ``key``.  A full disk raises ToolchainError."""
        dest = self.path_for(key)
        self._mkdir()
        _clear_foreign(dest)
        tmp = self._temp_name(dest)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp made it private
            os.replace(tmp, dest)
        except OSError as e:
            _unlink_quietly(tmp)
            if no_space(e):
                raise full_disk_error(self.root, e) from e
            raise
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _trimmer.after_write(dest, len(data), self._bounded)
        return dest

    def remove(self, key: str) -> None:
        _unlink_quietly(self.path_for(key))

    def scratch_dir(self, prefix: str = "build-") -> Path:
        """A new private folder on the cache's file system (for building an entry, then ``put``
        with ``move=True``); the caller removes it.  Leftovers of crashed builds older than a day
        are removed on the way."""
        tmp_root = self.root / ".building"
        self._mkdir(tmp_root)
        self._sweep(tmp_root)
        self._sweep(self.root, temporaries_only=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp_root))

    # ---- internals ------------------------------------------------------------------------

    def _mkdir(self, path: Path | None = None) -> None:
        path = path or self.root
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ToolchainError(f"cannot create the cache folder {path}: {e.strerror or e}") from e

    @staticmethod
    def _temp_name(dest: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        return Path(name)

    @staticmethod
    def _sweep(tmp_root: Path, max_age_s: float = 86400.0, temporaries_only: bool = False) -> None:
        now = time.time()
        try:
            entries = list(os.scandir(tmp_root))
        except OSError:
            return
        for entry in entries:
            if temporaries_only and not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > max_age_s:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
            except OSError:
                pass


def _sync(path: str | os.PathLike) -> None:
    """Flushes the file at ``path`` to disk (before it is renamed into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

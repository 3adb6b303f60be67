"""A content-addressed file cache on disk.

Entries are files named by a key (a hex digest, usually) in one folder.  Writes go to a
temporary name in the same folder, are flushed to disk and renamed into place with
``os.replace``, so a reader sees either no entry or a whole one, concurrent writers of the same
key are harmless, and a crash (of the process or the machine) never leaves a half-written entry.
A key is a file name of letters, digits, ``_``, ``.`` and ``-`` (anything else, e.g. ``..`` or
``/``, is refused with :class:`~ember.errors.ToolchainError`); the caller makes it cover
everything the entry depends on.

The cache lives at ``$EMBER_CACHE_DIR``, else ``$XDG_CACHE_HOME/ember``, else
``~/.cache/ember``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import ToolchainError

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def cache_dir() -> Path:
    """The root of Ember's on-disk cache (not created by this call)."""
    env = os.environ.get("EMBER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ember"
    return Path.home() / ".cache" / "ember"


class Cache:
    """Files stored under keys in one folder: ``<root>/<key><suffix>``.

    ``root`` defaults to ``cache_dir() / kind``; ``suffix`` (e.g. ``".so"``) is appended to every
    entry's file name.
    """

    def __init__(self, kind: str = "files", *, root: str | os.PathLike | None = None, suffix: str = ""):
        self.root = Path(root) if root is not None else cache_dir() / kind
        self.suffix = suffix

    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.match(key):
            raise ToolchainError(f"invalid cache key {key!r}: use letters, digits, '_', '.' and '-' "
                                 "(at most 200, starting with a letter or digit)")
        return self.root / f"{key}{self.suffix}"

    def get(self, key: str) -> Path | None:
        """The entry's path, or ``None`` when there is none."""
        path = self.path_for(key)
        return path if path.is_file() else None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, src: str | os.PathLike, *, move: bool = False) -> Path:
        """Stores a copy of file ``src`` (or moves it, with ``move=True``) under ``key``."""
        dest = self.path_for(key)
        self._mkdir()
        if move:
            try:
                _sync(src)
                os.replace(src, dest)
                return dest
            except OSError:
                pass  # another file system: copy below
        tmp = self._temp_name(dest)
        try:
            shutil.copyfile(src, tmp)
            shutil.copymode(src, tmp)  # mkstemp made it private
            _sync(tmp)
            os.replace(tmp, dest)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if move:
            _unlink_quietly(Path(src))
        return dest

    def put_bytes(self, key: str, data: bytes) -> Path:
        """Stores ``data`` under ``key``."""
        dest = self.path_for(key)
        self._mkdir()
        tmp = self._temp_name(dest)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp made it private
            os.replace(tmp, dest)
        except BaseException:
            _unlink_quietly(tmp)
            raise
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

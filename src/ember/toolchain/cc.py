"""The C toolchain: generated sources and constant blobs in, one sealed shared library out.

:func:`build_shared` compiles every C source (the model's and the runtime's, ``runtime/c``),
writes every constants blob's object (on ELF64 hosts; else assembles it with ``.incbin``: the
bytes never go through a C parser), runs
the independent compiles in parallel, links one shared library, appends the artifact trailer
(see :mod:`ember.runtime.module`) and stores the result in a content-addressed cache.

For a cross target (``Target.cross``: ``aarch64-linux``, ``armv7-linux``, ``riscv64-linux``,
``wasm32``) the compiler is ``zig cc`` of the ``ziglang`` package (pip), which carries the C
library of every one of them, so no sysroot is needed: :func:`cross_compiler` runs it as
``python -m ziglang cc -target TRIPLE`` with the target's flags (``-mcpu=...``) in place of
``-march=native``.  Linux targets give an ELF shared library like the host's; ``wasm32`` gives
a WASI reactor module (``.wasm``) that exports the same C API plus ``malloc`` and ``free``, its
threads pool reduced to the calling thread.  Both are sealed with the same trailer.

The library's cache key is a sha256 over the compiler's identity (its path and ``--version``;
with a ``native`` flag also what the compiler makes of it on this machine), the flags, every
source and blob (name and bytes) and the runtime's C files.  A hit returns at once without
running the compiler.  Otherwise each C file's object comes from the object cache when a build
with the same compiler, flags and headers compiled the same content before (a kernel's content
is its canonical code, given by the caller: ``object_keys``), and the rest are compiled in
parallel, with the shared header precompiled once (``pch``); cached objects carry their sha256,
so a damaged one is compiled again, never linked.  The runtime's objects and the precompiled
header depend on the target, not the model: they are kept in the runtime store of the
installation (:class:`RuntimeStore`, filled by :func:`prebuild_runtime` or the first build),
so a build with an empty cache does not compile them.  Builds happen in a private folder and the result is renamed into the cache, so
concurrent builds of the same thing (threads or processes) are safe and a crash leaves no
half-written entry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import ArtifactError, EmberError, ToolchainError
from ..runtime.artifact import seal_artifact, verify_artifact
from ..timings import timed
from . import cpu_features
from .cache import Cache, full_disk_error, no_space, trim

#: Flags every compile gets; ``flags`` given to :func:`build_shared` come after them (and so
#: override them where the compiler lets a later flag win, e.g. ``-O2``).
DEFAULT_CFLAGS: tuple[str, ...] = (
    "-O3", "-march=native", "-fPIC", "-fvisibility=hidden", "-std=gnu11", "-fwrapv",
    "-ffp-contract=fast", "-fno-math-errno", "-pthread",
)
#: Flags after :data:`DEFAULT_CFLAGS` where the compiler is GCC: -O3's loop passes that the
#: generated kernels, already tiled, unrolled and vectorized, do not gain from.  Unroll-and-jam
#: and predictive commoning took a third of GCC's time on them (60% of a Winograd transform's);
#: loop distribution (with its memset/memcpy patterns), unswitching, splitting, peeling,
#: versioning for strides, interchange, partial PRE, path splitting, GCSE after reload and
#: IPA-CP cloning took another 8% (ResNet-50) to 12% (the demo CNN).  The kernels ran as fast
#: without them, with the same results.
GCC_CFLAGS: tuple[str, ...] = (
    "-fno-loop-unroll-and-jam", "-fno-predictive-commoning", "-fno-tree-loop-distribution",
    "-fno-tree-loop-distribute-patterns", "-fno-unswitch-loops", "-fno-split-loops", "-fno-peel-loops",
    "-fno-version-loops-for-strides", "-fno-loop-interchange", "-fno-tree-partial-pre", "-fno-split-paths",
    "-fno-gcse-after-reload", "-fno-ipa-cp-clone")
#: Flags of the link step (before the caller's flags); the libraries come last.  No build ID:
#: the artifact has its own sha256 (its trailer), and the linker's hash of a model's weights
#: took 0.56 s of CPU for 400 MB.
LINK_FLAGS: tuple[str, ...] = ("-shared", "-pthread", "-Wl,-Bsymbolic", "-Wl,-z,noexecstack", "-Wl,--build-id=none")
LINK_LIBS: tuple[str, ...] = ("-lm",)
#: The flags of a cross build in place of ``-march=native`` (the target's own come after them);
#: zig cc writes debug information unless told not to (the host's builds have none)
CROSS_CFLAGS: tuple[str, ...] = tuple(f for f in DEFAULT_CFLAGS if f != "-march=native") + ("-g0",)
#: WebAssembly (WASI): no position-independent code or threads; the runtime's arena mapping
#: uses wasi-libc's emulation of anonymous mmap
WASM_CFLAGS: tuple[str, ...] = tuple(f for f in CROSS_CFLAGS if f not in ("-fPIC", "-pthread")) + (
    "-D_WASI_EMULATED_MMAN",)
WASM_LINK_FLAGS: tuple[str, ...] = ("-mexec-model=reactor", "-Wl,--export-dynamic", "-Wl,--export=malloc",
                                    "-Wl,--export=free", "-Wl,--strip-debug")
#: zig's own C library and compiler-rt objects carry debug information: the link drops it
CROSS_LINK_FLAGS: tuple[str, ...] = (*LINK_FLAGS, "-Wl,--strip-debug")
WASM_LINK_LIBS: tuple[str, ...] = ("-lwasi-emulated-mman",)
#: Bumped whenever the way artifacts are built changes, so old cache entries are not reused.
BUILD_FORMAT = 2

ProgressFn = Callable[[str, int, int], None]

_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.(c|h|s|S)$")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RUNTIME_SUBDIR = "ember_rt"
#: a temporary file the compiler driver names in ``-###`` output (gcc: /tmp/ccXXXXXX.s)
_TEMP_NAME = re.compile(r"\S*/cc[A-Za-z0-9]{6}\.[A-Za-z]+")
#: the runtime header generated per build (see :mod:`ember.toolchain.cpu_features`)
CPU_FEATURES_HEADER = "ember_cpu_features.h"


def runtime_dir() -> Path:
    """The folder of the runtime's C files (package data of ``ember.runtime``)."""
    from .. import runtime

    return Path(runtime.__file__).resolve().parent / "c"


def runtime_files() -> dict[str, bytes]:
    """The runtime's C sources and headers, by file name."""
    d = runtime_dir()
    files = {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.suffix in (".c", ".h")}
    if not any(name.endswith(".c") for name in files):
        raise ToolchainError(f"the Ember runtime's C files are missing from {d}; reinstall Ember")
    return files


# ---- the compiler -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiler:
    """A C compiler command (``$CC`` or the first of cc, gcc, clang) and what identifies it."""

    command: tuple[str, ...]
    identity: str


_compilers: dict[tuple[str, ...], Compiler] = {}
_native: dict[tuple, str] = {}
_memo_lock = threading.Lock()


def find_compiler() -> Compiler:
    """The C compiler to use: ``$CC`` (may include arguments), else cc, gcc or clang on PATH.

    Its identity (resolved path and ``--version`` output) is computed once per process."""
    env = os.environ.get("CC", "").strip()
    if env:
        command = tuple(shlex.split(env))
    else:
        found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
        if found is None:
            raise ToolchainError("no C compiler found: install gcc or clang, or set $CC")
        command = (found,)
    with _memo_lock:
        hit = _compilers.get(command)
    if hit is not None:
        return hit
    exe = shutil.which(command[0])
    if exe is None:
        raise ToolchainError(f"the C compiler '{command[0]}' (from $CC) was not found on PATH"
                             if env else f"the C compiler '{command[0]}' was not found")
    try:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot run the C compiler '{' '.join(command)}': {e}") from None
    if proc.returncode != 0:
        raise ToolchainError(f"the C compiler '{' '.join(command)}' does not run: "
                             f"{_trim(proc.stderr or proc.stdout)}")
    identity = "\n".join([os.path.realpath(exe), *command[1:], proc.stdout.strip()])
    compiler = Compiler(command, identity)
    with _memo_lock:
        _compilers[command] = compiler
    return compiler


def cross_compiler(target) -> Compiler:
    """The C compiler for the cross target ``target``: ``zig cc -target TRIPLE`` of the
    ``ziglang`` package.  Its identity names the zig and clang versions and the triple."""
    command = (sys.executable, "-m", "ziglang", "cc", "-target", target.triple)
    with _memo_lock:
        hit = _compilers.get(command)
    if hit is not None:
        return hit
    try:
        import ziglang
    except ImportError:
        raise ToolchainError(f"building for {target.spec} needs the cross compiler of the 'ziglang' package: "
                             "pip install ziglang (or `make cross-deps`)") from None
    try:
        version = subprocess.run([sys.executable, "-m", "ziglang", "version"], capture_output=True, text=True,
                                 timeout=120)
        clang = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolchainError(f"cannot run zig cc for {target.spec}: {e}") from None
    if version.returncode != 0 or clang.returncode != 0:
        raise ToolchainError(f"zig cc does not run for {target.spec}: "
                             f"{_trim(clang.stderr or clang.stdout or version.stderr)}")
    identity = "\n".join([os.path.realpath(ziglang.__file__), "zig " + version.stdout.strip(), *command[3:],
                          clang.stdout.strip()])
    compiler = Compiler(command, identity)
    with _memo_lock:
        _compilers[command] = compiler
    return compiler


def target_flags(target) -> tuple[list[str], tuple[str, ...], tuple[str, ...]]:
    """``(compile flags, link flags, link libraries)`` for ``target`` (None: this machine)."""
    if target is None or not target.cross:
        return list(DEFAULT_CFLAGS), LINK_FLAGS, LINK_LIBS
    if target.triple.startswith("wasm"):
        return [*WASM_CFLAGS, *target.cflags], WASM_LINK_FLAGS, WASM_LINK_LIBS
    return [*CROSS_CFLAGS, *target.cflags], CROSS_LINK_FLAGS, LINK_LIBS


_float16: dict[tuple, bool] = {}


def has_float16(flags: Sequence[str] = (), target=None) -> bool:
    """Whether the C compiler for ``target`` (None: this machine) with ``flags`` has the
    ``_Float16`` type that float16 kernels compute in: it predefines ``__FLT16_MANT_DIG__`` where
    it does (GCC before 12 on x86, and clang for wasm32, do not).  Asked once per process and
    compiler; True when the compiler cannot be asked (its own error is then the one to see)."""
    compiler = cross_compiler(target) if target is not None and target.cross else find_compiler()
    cflags = (*target_flags(target)[0], *flags)
    key = (compiler.command, cflags)
    with _memo_lock:
        hit = _float16.get(key)
    if hit is None:
        try:
            macros = cpu_features.predefined_macros(compiler.command, cflags)
        except (OSError, subprocess.TimeoutExpired):
            macros = {}
        hit = not macros or "__FLT16_MANT_DIG__" in macros
        with _memo_lock:
            _float16[key] = hit
    return hit


def _native_identity(compiler: Compiler, flags: Sequence[str]) -> str:
    """With ``-march=native`` and the like, the key must also name this machine's processor:
    what the compiler expands the flags to (``-###`` runs nothing)."""
    if not any("native" in f for f in flags):
        return ""
    memo = (compiler.command, tuple(flags))
    with _memo_lock:
        hit = _native.get(memo)
    if hit is not None:
        return hit
    try:
        proc = subprocess.run([*compiler.command, *flags, "-###", "-x", "c", "-c", os.devnull,
                               "-o", os.devnull], capture_output=True, text=True, timeout=60)
        text = proc.stderr + proc.stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    # Keep the lines that carry the expanded options (cc1's names the processor), less the
    # names of the temporary files, which differ from run to run.
    lines = [_TEMP_NAME.sub("", ln) for ln in text.splitlines() if "-m" in ln]
    ident = "\n".join(lines) or _cpu_fallback_identity()
    with _memo_lock:
        _native[memo] = ident
    return ident


def compiler_identity(flags: Sequence[str] = (), target=None) -> str:
    """What identifies the output of compiling with ``flags`` (after :data:`DEFAULT_CFLAGS`) for
    ``target`` (None: this machine): the compiler and what it makes of the flags on this machine
    ("" without a compiler)."""
    try:
        if target is not None and target.cross:
            return cross_compiler(target).identity + "\n" + " ".join(target_flags(target)[0] + list(flags))
        compiler = find_compiler()
    except ToolchainError:
        return ""
    return compiler.identity + "\n" + _native_identity(compiler, [*DEFAULT_CFLAGS, *flags])


def _cpu_fallback_identity() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return "\n".join(sorted({ln.strip() for ln in f if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return os.uname().machine


# ---- building -----------------------------------------------------------------------------------

def default_jobs() -> int:
    """How many compiles run at once: the processors this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def build_shared(sources: Mapping[str, str], blobs: Mapping[str, bytes] | None = None, *,
                 flags: Sequence[str] | None = None, name: str = "model", jobs: int | None = None,
                 progress: ProgressFn | None = None, target=None, object_keys: Mapping[str, str] | None = None,
                 pch: str | None = None, timings=None, blob_keys: Mapping[str, str] | None = None,
                 loading: bool = False, store_at: str | os.PathLike | None = None) -> Path:
    """Builds (or finds in the cache) the artifact for ``sources`` and ``blobs``.

    ``sources`` maps file names (``*.c``, ``*.h``, ``*.s``, ``*.S``) to their text; C files
    include ``"ember_kernel.h"``.  ``blobs`` maps symbol names to bytes, each assembled into a
    64-byte aligned, read-only, hidden symbol of that name.  ``flags`` are added to
    :data:`DEFAULT_CFLAGS` (compile and link).  ``jobs`` compiles run at once (default: one per
    processor, :func:`default_jobs`).  ``progress``, if given, is called as
    ``progress(step, done, total)``: first with how many objects the cache holds already, then
    after each step (``"compile x.c"``, ``"link"``).  ``target`` (an :class:`ember.Target`; None
    or the host: this machine) picks the compiler and its flags (:func:`target_flags`).

    Every C file's object is cached by its content (see :func:`_object_key`): a file compiled
    before, in any build with the same compiler, flags and headers, is not compiled again.
    ``object_keys`` may give a file's content for that purpose in place of its text: the caller
    promises that two files with the same key compile to interchangeable objects (a kernel whose
    readable names differ from model to model, keyed by its canonical code).  ``pch`` names a
    header of ``sources`` that the C files of ``sources`` include first: it is precompiled
    once (and cached) where the compiler can, so the files do not each parse it again; a file
    whose first directive is not that ``#include`` (one that defines a macro the header tests
    before it) parses the header itself.
    ``blob_keys`` may give a blob's sha256 (hex), computed by the caller, for the library's key
    in place of its bytes (which are then not hashed again).
    ``timings`` (an :class:`ember.timings.Timings`) receives the time of each step: the key,
    the compiles (how many files were compiled, how many came from the cache), the link, the
    seal and the store.  ``loading`` says that the caller loads the library next (a host
    build): it is sealed through the private copy the load then opens
    (``runtime.library.seal_loadable``), so the load neither copies nor hashes it again.

    ``store_at`` puts the library at that path, the caller's to remove, instead of into the
    cache (a cache hit is linked or copied there): for a library used once, as a tuning trial's
    candidate is, which must neither fill the cache nor be removed from it under another process
    that found the same entry.

    Returns the path of the sealed library (in the cache, or ``store_at``); raises
    :class:`ToolchainError` if a compiler step fails.
    """
    if not sources:
        raise ToolchainError("build_shared needs at least one source file")
    blobs = dict(blobs or {})
    user_flags = [str(f) for f in (flags or ())]
    rt = runtime_files()
    for fname in sources:
        if not isinstance(fname, str) or not _SOURCE_NAME.match(fname):
            raise ToolchainError(f"invalid source file name {fname!r}: use a plain file name ending "
                                 "in .c, .h, .s or .S")
        if fname in rt or fname == CPU_FEATURES_HEADER:
            raise ToolchainError(f"source file name {fname!r} is taken by the Ember runtime")
    for sym in blobs:
        if not isinstance(sym, str) or not _SYMBOL.match(sym):
            raise ToolchainError(f"invalid blob name {sym!r}: it becomes a symbol, so it must be a "
                                 "C identifier")
    if pch is not None and (pch not in sources or not pch.endswith(".h")):
        raise ToolchainError(f"the header to precompile, {pch!r}, is not a header of the sources")
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-")[:48] or "model"

    compiler, cflags, rt, (link_flags, link_libs) = _setup(user_flags, target, rt)
    wasm = target is not None and target.cross and target.triple.startswith("wasm")
    with timed(timings, "C: build key (hash the sources and constants)"):
        key = _build_key(compiler, cflags, sources, blobs, rt, (*link_flags, *link_libs), blob_keys)
        libs = Cache("lib", suffix=".wasm" if wasm else ".so")
        entry = f"{safe_name}-{key}"
        hit = libs.get(entry)
        if hit is not None:
            try:
                verify_artifact(hit)       # hashed once per process; a damaged entry is built again
            except ArtifactError:
                libs.remove(entry)
            else:
                return hit if store_at is None else second_name(hit, Path(store_at))

    work = libs.scratch_dir(prefix=f"{safe_name}-")
    try:
        cross = target is not None and target.cross
        lib = _build(work, compiler, cflags, user_flags, sources, blobs, rt, safe_name,
                     default_jobs() if jobs is None else max(1, int(jobs)), progress,
                     (link_flags, link_libs, wasm), dict(object_keys or {}), pch, timings,
                     None if cross else _host_elf_machine(cflags))
        with timed(timings, "C: seal the artifact"):
            if loading and not cross:
                from ..runtime.library import seal_loadable

                seal_loadable(lib)
            else:
                seal_artifact(lib)
        if store_at is not None:
            return second_name(lib, Path(store_at))
        with timed(timings, "cache store"):
            return libs.put(entry, lib, move=True)
    except OSError as e:
        if no_space(e):
            raise full_disk_error(libs.root, e) from e
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def second_name(entry: Path, dest: Path) -> Path:
    """``dest`` as a second name of ``entry`` (a copy where the file system cannot link), put in
    place by a rename: removing either name leaves the other where it is."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(entry, tmp)
    except OSError:
        shutil.copyfile(entry, tmp)
    os.replace(tmp, dest)
    return dest


def _setup(user_flags: list[str], target, rt: Mapping[str, bytes]):
    """``(compiler, compile flags, runtime files, (link flags, link libraries))`` of a build
    for ``target`` with ``user_flags``; the runtime files gain the processor check's header."""
    cross = target is not None and target.cross
    compiler = cross_compiler(target) if cross else find_compiler()
    base_flags, link_flags, link_libs = target_flags(target)
    if not cross:
        link_flags = (*link_flags, *_fast_linker(compiler))
    cflags = [*base_flags, *(GCC_CFLAGS if _pch_kind(compiler) == "gcc" else ()), *user_flags]
    # what the load-time processor check tests: the extensions these flags enable
    rt = {**rt, CPU_FEATURES_HEADER: cpu_features.header(compiler.command, cflags).encode()}
    return compiler, cflags, rt, (link_flags, link_libs)


_linkers: dict[tuple[str, ...], tuple[str, ...]] = {}


def _fast_linker(compiler: Compiler) -> tuple[str, ...]:
    """The flags that link with gold where the compiler is GCC and gold is installed, else
    ``()``: gold links a model's constants in under half the time of the default linker, BFD ld
    (437 MB: 0.13 against 0.29 s of CPU, 0.19 against 0.45 s of wall; 100 MB: 0.05 against
    0.08 s of CPU).  ``--rosegment`` keeps the read-only data (the constants) out of the
    executable segment, as BFD ld's ``-z separate-code`` does.  Asked once per process and
    compiler."""
    if _pch_kind(compiler) != "gcc":
        return ()
    with _memo_lock:
        hit = _linkers.get(compiler.command)
    if hit is not None:
        return hit
    flags: tuple[str, ...] = ()
    if shutil.which("ld.gold") is not None:
        try:
            wanted = ("-fuse-ld=gold", "-Wl,--rosegment")
            proc = subprocess.run([*compiler.command, *wanted, "-Wl,--version"], capture_output=True, text=True,
                                  timeout=60)
            if proc.returncode == 0 and "gold" in proc.stdout.lower():
                flags = wanted
        except (OSError, subprocess.TimeoutExpired):
            pass
    with _memo_lock:
        _linkers[compiler.command] = flags
    return flags


def _headers_blob(rt: Mapping[str, bytes], sources: Mapping[str, str]) -> bytes:
    """Every header of a build, for the object keys (:func:`_object_key`)."""
    headers = b"".join(f"{n}:{len(d)}:".encode() + d for n, d in sorted(rt.items()) if n.endswith(".h"))
    return headers + b"".join(f"{n}:{len(t)}:".encode() + t.encode() for n, t in sorted(sources.items())
                              if n.endswith(".h"))


class Prebuild:
    """C compiles started before the build that needs them (:func:`prebuild`): the runtime's
    files and the precompiled header at once, and each C file given to :meth:`submit` as soon as
    it is made, in a background thread that runs the compiler while Python goes on, into the
    object cache, where :func:`build_shared` finds them.  :meth:`wait` before the build."""

    def __init__(self, headers: Mapping[str, str], pch: str | None, user_flags: list[str], target):
        self.compiled: list[str] = []      # what it compiled (and stored in the object cache)
        self.failed: list[str] = []        # what did not compile (left to the build, which reports it)
        self.seconds = 0.0                 # how long the compiler ran for it
        self._headers = {n: t for n, t in headers.items() if n.endswith(".h") and _SOURCE_NAME.match(n)}
        self._pch = pch
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ready = threading.Event()    # set once the work folder and the precompiled header are there
        self._setup: tuple | None = None   # (compiler, cflags, object cache, headers blob, pch flags), once known
        self._work: Path | None = None
        self._threads = [threading.Thread(target=self._first, args=(user_flags, target), name="ember-prebuild",
                                          daemon=True)]
        self._threads[0].start()

    def submit(self, fname: str, text: str, key: str | None = None) -> None:
        """Compiles C file ``fname`` of the coming build (``text``; ``key``: what its object is
        cached by, as ``build_shared``'s ``object_keys``) in the background."""
        if _SOURCE_NAME.match(fname) and fname.endswith(".c"):
            self._queue.put((fname, text, text if key is None else key))

    def wait(self, jobs: int | None = None) -> str:
        """Compiles what is left, ``jobs`` at once (default: one per processor), waits until
        every compile is done; says what it did (for :class:`ember.timings.Timings`)."""
        jobs = default_jobs() if jobs is None else max(1, int(jobs))
        for _ in range(jobs - 1):
            t = threading.Thread(target=self._worker, name="ember-prebuild", daemon=True)
            t.start()
            self._threads.append(t)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None
        if not self.compiled and not self.failed:
            return "nothing compiled in the background"
        runtime = sum(n.startswith(_RUNTIME_SUBDIR + "/") for n in self.compiled)
        header = sum(n == self._pch for n in self.compiled)
        parts = [f"{len(self.compiled) - runtime - header} C files"]
        parts += [f"the runtime's {runtime}"] if runtime else []
        parts += ["the precompiled header"] if header else []
        text = f"{', '.join(parts)} compiled in the background ({self.seconds:.2f} s of compiles"
        return text + (f"; {len(self.failed)} failed, compiled again by the build)" if self.failed else ")")

    def close(self) -> None:
        """Stops the background compiles without waiting for them (what is queued is dropped;
        a compile under way finishes), and removes their folder once they stopped."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        threads = [t for t in self._threads if t.is_alive()]
        if not threads:
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)
                self._work = None
            return
        for _ in threads:
            self._queue.put(None)

        def tidy() -> None:
            for t in threads:
                t.join()
            if self._work is not None:
                shutil.rmtree(self._work, ignore_errors=True)

        threading.Thread(target=tidy, name="ember-prebuild-tidy", daemon=True).start()

    def _first(self, user_flags: list[str], target) -> None:
        """The first thread: the setup, the precompiled header, the runtime, then the queue."""
        try:
            compiler, cflags, rt, _ = _setup(user_flags, target, runtime_files())
            objs = Cache("obj", suffix=".obj")
            blob = _headers_blob(rt, self._headers)
            self._work = work = objs.scratch_dir(prefix="prebuild-")
            (work / _RUNTIME_SUBDIR).mkdir()
            for n, data in rt.items():
                (work / _RUNTIME_SUBDIR / n).write_bytes(data)
            for n, text in self._headers.items():
                (work / n).write_text(text, encoding="utf-8")
            store = RuntimeStore()
            pch_flags: list[str] = []
            kind = _pch_kind(compiler) if self._pch in self._headers else None
            if kind is not None:
                out = f"{self._pch}.gch" if kind == "gcc" else f"{self._pch}.pch"
                pkey = _object_key(compiler, cflags, blob, f"pch:{kind}:{self._pch}", b"")
                if store.fetch(pkey, work / out) or self._compile(
                        compiler, [*cflags, "-I", _RUNTIME_SUBDIR, "-x", "c-header"], self._pch, out, store.put, pkey):
                    pch_flags = ["-include-pch", out] if kind == "clang" else []
            self._setup = (compiler, cflags, objs, blob, pch_flags)
            for n, key in _runtime_units(compiler, cflags, rt):
                if key not in store:        # (a damaged entry: the build's fetch finds it)
                    self._compile(compiler, [*cflags, "-I", _RUNTIME_SUBDIR, "-c"], f"{_RUNTIME_SUBDIR}/{n}",
                                  f"ember_rt_{Path(n).stem}.o", store.put, key)
        except (EmberError, OSError):
            self._setup = None      # the build does it all (and reports what fails)
        finally:
            self._ready.set()
        self._worker()

    def _worker(self) -> None:
        self._ready.wait()
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._setup is None:
                continue
            fname, text, content = item
            compiler, cflags, objs, blob, pch_flags = self._setup
            key = _object_key(compiler, cflags, blob, fname, content.encode())
            if objs.get(key) is not None:
                continue
            try:
                (self._work / fname).write_text(text, encoding="utf-8")
            except OSError:
                continue
            uses_pch = self._pch is not None and _includes_first(text, self._pch)
            self._compile(compiler, [*cflags, "-I", _RUNTIME_SUBDIR, *(pch_flags if uses_pch else []), "-c"],
                          fname, f"{fname}.o", functools.partial(_store_object, objs), key)

    def _compile(self, compiler: Compiler, flags: list[str], src: str, out: str,
                 put: Callable[[str, Path], None], key: str) -> bool:
        """Compiles ``src`` to ``out`` and stores it under ``key`` with ``put`` (the object
        cache's or the runtime store's)."""
        t0 = time.perf_counter()
        try:
            _run([*compiler.command, *flags, src, "-o", out], self._work, f"compile {src}")
            ok = True
            put(key, self._work / out)
        except ToolchainError:
            ok = False      # stored nothing: the build compiles it again and reports it
        with self._lock:
            (self.compiled if ok else self.failed).append(src)
            self.seconds += time.perf_counter() - t0
        return ok


def prebuild(headers: Mapping[str, str], *, pch: str | None = None, flags: Sequence[str] | None = None,
             target=None) -> Prebuild:
    """Starts compiling, in the background, what a later :func:`build_shared` with the same
    header files (``headers``: name -> text, every ``.h`` of its ``sources``), ``pch``,
    ``flags`` and ``target`` will need whatever its C files are: the runtime's C files and the
    precompiled header ``pch``; :meth:`Prebuild.submit` adds the build's C files as they are
    made.  The compiles run while Python goes on (generating the kernels), on the processors
    it leaves; :meth:`Prebuild.wait` before the build, which then finds the objects in the
    object cache.  What fails here stores nothing and is left to the build, which compiles it
    again and reports it as it always does."""
    return Prebuild(headers, pch, [str(f) for f in (flags or ())], target)


def _build_key(compiler: Compiler, cflags: list[str], sources: Mapping[str, str],
               blobs: Mapping[str, bytes], rt: Mapping[str, bytes], link: Sequence[str] = (*LINK_FLAGS, *LINK_LIBS),
               blob_keys: Mapping[str, str] | None = None) -> str:
    h = hashlib.sha256()

    def put(tag: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    put("format", str(BUILD_FORMAT))
    put("platform", sys.platform)
    put("compiler", compiler.identity)
    put("native", _native_identity(compiler, cflags))
    put("cflags", "\0".join(cflags))
    put("link", "\0".join(link))
    for fname in sorted(rt):
        put("runtime " + fname, rt[fname])
    for fname in sorted(sources):
        put("source " + fname, sources[fname])
    for sym in sorted(blobs):
        if blob_keys and sym in blob_keys:
            put(f"blob {sym} {len(memoryview(blobs[sym]).cast('B'))} sha256", blob_keys[sym])
        else:
            put("blob " + sym, memoryview(blobs[sym]).cast("B"))
    return h.hexdigest()


# ---- the object cache ----------------------------------------------------------------------------
#
# An entry of Cache("obj") is an object file (or a precompiled header) followed by the sha256 of
# its bytes and a magic string, so a damaged entry (truncated, overwritten, bit-flipped) is found
# when it is read, dropped and compiled again: it never reaches the linker.

_OBJECT_MAGIC = b"EMBER-OBJECT-1\n"


def _object_key(compiler: Compiler, cflags: Sequence[str], headers: bytes, fname: str, content: bytes) -> str:
    """The cache key of the object of C file ``fname``: the compiler, what it makes of the flags
    on this machine, the flags, every header a build has (``headers``) and the file's content
    (its text, or the key the caller gave it)."""
    h = hashlib.sha256()
    for part in (str(BUILD_FORMAT).encode(), compiler.identity.encode(),
                 _native_identity(compiler, cflags).encode(), "\0".join(cflags).encode(), headers,
                 fname.encode(), content):
        h.update(f"{len(part)}:".encode())
        h.update(part)
    return h.hexdigest()


def _read_object(objs: Cache, key: str) -> memoryview | None:
    """The object cached under ``key``; None when there is none or it is damaged (then it is
    removed)."""
    path = objs.get(key)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    n = len(data) - 32 - len(_OBJECT_MAGIC)
    if n < 0 or not data.endswith(_OBJECT_MAGIC) or hashlib.sha256(memoryview(data)[:n]).digest() != data[n:n + 32]:
        try:
            objs.remove(key)
        except OSError:
            pass
        return None
    return memoryview(data)[:n]


def _fetch_object(objs: Cache, key: str, dest: Path) -> bool:
    """Writes the object cached under ``key`` to ``dest``; False when there is none or it is
    damaged (then it is removed)."""
    data = _read_object(objs, key)
    if data is None:
        return False
    dest.write_bytes(data)
    return True


def _object_entry(src: Path) -> bytes:
    """The cache entry of the object file ``src``: its bytes, their sha256 and the magic."""
    data = src.read_bytes()
    return data + hashlib.sha256(data).digest() + _OBJECT_MAGIC


def _store_object(objs: Cache, key: str, src: Path) -> None:
    try:
        objs.put_bytes(key, _object_entry(src))
    except (OSError, ToolchainError):
        pass  # the object cache is only an optimization


# ---- the runtime store ----------------------------------------------------------------------------
#
# The runtime's objects and the precompiled preamble depend on the target, the compiler and the
# flags, never on the model: they are kept apart from the caches of models and kernels, in a
# folder of the installation, built once per target (`ember prebuild-runtime`, which `make venv`
# runs for this machine) or by the first build that needs them.  Entries as the object cache's.

#: the runtime store's bound in bytes: past it, its least recently used entries go (down to 80%)
RUNTIME_STORE_MAX = 256 << 20


def runtime_store_dir() -> Path:
    """The runtime store's folder (not created by this call): ``$EMBER_RUNTIME_DIR``, else
    ``lib/ember/runtime`` under the installation's prefix (``sys.prefix``: the virtual
    environment Ember is installed in)."""
    env = os.environ.get("EMBER_RUNTIME_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(sys.prefix) / "lib" / "ember" / "runtime"


class RuntimeStore:
    """The runtime's objects and precompiled headers, by :func:`_object_key` (the compiler's
    identity, what the flags mean on this machine, the flags, the headers and the file: the
    runtime's sources and the processor check's header, for a precompiled header its text), in
    :func:`runtime_store_dir`; where that folder cannot be written, in the cache's kind
    ``runtime``.  An entry is the object, its sha256 and a magic line (as in ``Cache("obj")``),
    written to a temporary file and renamed: a damaged one is removed and built again, and
    processes filling the store at once are safe."""

    _unwritable: set[Path] = set()      # folders found not writable (once per process)

    def __init__(self):
        self.root = runtime_store_dir()
        self.home = Cache(root=self.root / "obj", suffix=".obj")
        self.spare = Cache("runtime", suffix=".obj")

    def read(self, key: str) -> memoryview | None:
        """The object stored under ``key`` (checked), or None."""
        data = _read_object(self.home, key)
        return _read_object(self.spare, key) if data is None else data

    def valid(self, key: str) -> bool:
        """Whether a whole object is stored under ``key`` (read and checked)."""
        return self.read(key) is not None

    def __contains__(self, key: str) -> bool:
        """Whether anything is stored under ``key`` (not read: :meth:`read` checks it)."""
        return self.home.get(key) is not None or self.spare.get(key) is not None

    def fetch(self, key: str, dest: Path) -> bool:
        """Writes the object stored under ``key`` to ``dest``; False when there is none (or
        it was damaged)."""
        data = self.read(key)
        if data is None:
            return False
        dest.write_bytes(data)
        return True

    def put(self, key: str, src: Path) -> None:
        """Stores the object file ``src`` under ``key`` (in the cache where the store's folder
        cannot be written; nowhere if neither can: the store is only an optimization)."""
        try:
            entry = _object_entry(src)
        except OSError:
            return
        if self.root not in RuntimeStore._unwritable:
            try:
                dest = self.home.put_bytes(key, entry)
            except (OSError, ToolchainError):
                RuntimeStore._unwritable.add(self.root)
            else:
                trim(RUNTIME_STORE_MAX, root=self.root, keep=dest)    # the least recently used go
                return
        try:
            self.spare.put_bytes(key, entry)
        except (OSError, ToolchainError):
            pass


def _runtime_units(compiler: Compiler, cflags: Sequence[str], rt: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """``(file name, key in the runtime store)`` of each of the runtime's C files: the key
    covers the compiler, the flags and the runtime's headers, never a model's."""
    headers = _headers_blob(rt, {})
    return [(n, _object_key(compiler, cflags, headers, n, rt[n])) for n in sorted(rt) if n.endswith(".c")]


def prebuild_runtime(headers: Mapping[str, str] | None = None, *, pch: str | None = None,
                     flags: Sequence[str] | None = None, target=None) -> list[str]:
    """Builds into the runtime store (:class:`RuntimeStore`) what every build for ``target``
    (None: this machine) with ``flags`` takes whatever the model: the runtime's objects and the
    precompiled header ``pch`` of ``headers`` (name -> text, as :func:`prebuild`'s).  What the
    store holds already (whole) is kept.  Returns one line per file saying what was done;
    raises :class:`ToolchainError` when a runtime file does not compile (a compiler that refuses
    the precompiled header is reported in the lines: builds parse the header instead)."""
    headers = {n: t for n, t in (headers or {}).items() if n.endswith(".h") and _SOURCE_NAME.match(n)}
    if pch is not None and pch not in headers:
        raise ToolchainError(f"the header to precompile, {pch!r}, is not one of the headers given")
    compiler, cflags, rt, _ = _setup([str(f) for f in (flags or ())], target, runtime_files())
    store = RuntimeStore()
    said: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ember-runtime-") as tmp:
        work = Path(tmp)
        (work / _RUNTIME_SUBDIR).mkdir()
        for n, data in rt.items():
            (work / _RUNTIME_SUBDIR / n).write_bytes(data)
        for n, text in headers.items():
            (work / n).write_text(text, encoding="utf-8")
        jobs: list[tuple[str, list[str], str, str]] = []     # (what, command, output, key)
        for n, key in _runtime_units(compiler, cflags, rt):
            out = f"ember_rt_{Path(n).stem}.o"
            jobs.append((n, [*compiler.command, *cflags, "-I", _RUNTIME_SUBDIR, "-c", f"{_RUNTIME_SUBDIR}/{n}",
                             "-o", out], out, key))
        kind = _pch_kind(compiler) if pch is not None else None
        if kind is not None:
            out = f"{pch}.gch" if kind == "gcc" else f"{pch}.pch"
            key = _object_key(compiler, cflags, _headers_blob(rt, headers), f"pch:{kind}:{pch}", b"")
            jobs.append((f"{pch} (precompiled)", [*compiler.command, *cflags, "-I", _RUNTIME_SUBDIR, "-x",
                                                  "c-header", pch, "-o", out], out, key))
        elif pch is not None:
            said.append(f"{pch}: not precompiled (this compiler takes no precompiled header Ember knows)")
        for what, cmd, out, key in jobs:
            if store.valid(key):
                said.append(f"{what}: in the store already")
                continue
            t0 = time.perf_counter()
            try:
                _run(cmd, work, f"compile {what}")
            except ToolchainError as e:
                if what in rt:      # a runtime file: the builds would fail the same way
                    raise
                said.append(f"{what}: refused by the compiler, builds parse the header ({str(e).splitlines()[0]})")
                continue
            store.put(key, work / out)
            said.append(f"{what}: compiled ({time.perf_counter() - t0:.2f} s)")
    return said


#: units to compile from which a header is precompiled when the cache holds none
PCH_MIN_UNITS = 3


def _pch_kind(compiler: Compiler) -> str | None:
    """How the compiler takes a precompiled header: "gcc" (``x.h.gch`` beside ``x.h``, used by
    its ``#include``), "clang" (``-include-pch``), or None (unknown: none is made)."""
    ident = compiler.identity.lower()
    if "clang" in ident:
        return "clang"
    if "free software foundation" in ident or re.search(r"\bg(cc|\+\+)\b", ident):
        return "gcc"
    return None


def _build(work: Path, compiler: Compiler, cflags: list[str], user_flags: list[str],
           sources: Mapping[str, str], blobs: Mapping[str, bytes], rt: Mapping[str, bytes],
           name: str, jobs: int, progress: ProgressFn | None,
           link: tuple = (LINK_FLAGS, LINK_LIBS, False), object_keys: Mapping[str, str] | None = None,
           pch: str | None = None, timings=None, elf_machine: int | None = None) -> Path:
    link_flags, link_libs, wasm = link
    with timed(timings, "C: compile (and assemble the constants)"):
        total, objects = _compile_units(work, compiler, cflags, sources, blobs, rt, jobs, progress, wasm,
                                        object_keys or {}, pch, timings, elf_machine)
    out = f"{name}.wasm" if wasm else f"{name}.so"
    with timed(timings, "C: link"):
        _run([*compiler.command, *cflags, *link_flags, *user_flags, "-o", out, *objects, *link_libs], work, "link")
    if progress is not None:
        progress("link", total, total)
    return work / out


def _compile_units(work: Path, compiler: Compiler, cflags: list[str], sources: Mapping[str, str],
                   blobs: Mapping[str, bytes], rt: Mapping[str, bytes], jobs: int, progress: ProgressFn | None,
                   wasm: bool, object_keys: Mapping[str, str], pch: str | None, timings,
                   elf_machine: int | None = None) -> tuple[int, list[str]]:
    """Writes the sources, fetches the objects the cache holds and compiles the others (and
    the blobs) in parallel; returns how many steps there are with the link, and the objects to
    link, in order.  With ``elf_machine`` (:func:`_host_elf_machine`) a blob's object is
    written here (:func:`_write_blob_object`), else assembled from ``.incbin``."""
    arm32 = any(c.startswith("arm-") for c in compiler.command)
    asm_kind = "wasm" if wasm else "elf-arm" if arm32 else "elf"
    rt_dir = work / _RUNTIME_SUBDIR
    (work / "obj").mkdir()
    (work / "blobs").mkdir()
    rt_dir.mkdir()
    for fname, data in rt.items():
        (rt_dir / fname).write_bytes(data)
    for fname, text in sources.items():
        if not fname.endswith(".c"):
            (work / fname).write_text(text, encoding="utf-8")

    include = ["-I", _RUNTIME_SUBDIR]
    objs = Cache("obj", suffix=".obj")
    store = RuntimeStore()
    headers = _headers_blob(rt, sources)
    objects: list[str] = []
    units: list[tuple[str, str, str, bool]] = []    # (file, object, cache key, one of the sources)
    for fname, key in _runtime_units(compiler, cflags, rt):
        units.append((f"{_RUNTIME_SUBDIR}/{fname}", f"obj/ember_rt_{Path(fname).stem}.o", key, False))
    for fname in sorted(sources):
        if fname.endswith(".c"):
            content = object_keys.get(fname, sources[fname]).encode()
            units.append((fname, f"obj/{fname}.o", _object_key(compiler, cflags, headers, fname, content), True))
    runtime_keys = {u[2] for u in units if not u[3]}
    todo = []
    for u in units:
        objects.append(u[1])
        if not (_fetch_object(objs, u[2], work / u[1]) if u[3] else store.fetch(u[2], work / u[1])):
            todo.append(u)
    if progress is not None:
        keyed = [u for u in units if u[0] in object_keys]
        found = sum(u not in todo for u in keyed)
        plain = [u for u in units if u[3] and u[0] not in object_keys]
        found_plain = sum(u not in todo for u in plain)
        parts = [f"{found} of {len(keyed)} kernels"] if keyed else []
        parts += [f"{found_plain} of {len(plain)} other C files"] if plain else []
        if parts:
            progress(f"found compiled in the cache: {', '.join(parts)}; "
                     f"{sum(u[3] for u in todo)} to compile ({jobs} at once)", 0, 0)

    # the precompiled header: from the cache, else made first when enough files need it
    pch_flags: list[str] = []
    pch_step = None
    kind = _pch_kind(compiler) if pch is not None else None
    if kind is not None and any(u[3] for u in todo):
        out = f"{pch}.gch" if kind == "gcc" else f"{pch}.pch"
        pkey = _object_key(compiler, cflags, headers, f"pch:{kind}:{pch}", b"")
        if store.fetch(pkey, work / out):
            pch_step = None
        elif sum(u[3] and _includes_first(sources[u[0]], pch) for u in todo) >= PCH_MIN_UNITS:
            pch_step = (out, pkey, [*compiler.command, *cflags, *include, "-x", "c-header", pch, "-o", out])
        else:
            kind = None
        if kind == "clang":
            pch_flags = ["-include-pch", out]
    if timings is not None:
        own = [u for u in units if u[3]]
        compiled = sum(u[3] for u in todo)
        timings.note("C: compile (and assemble the constants)",
                     f"{compiled} of {len(own)} C files compiled, {len(own) - compiled} from the cache; "
                     f"runtime {sum(not u[3] for u in todo)} compiled; {jobs} at once"
                     + ("; header precompiled" if pch_step is not None else ""))

    steps: list[tuple[str, list[str], str, str | None, bool]] = []  # (what, command, object, key, needs the pch)
    size = {u[0]: len(sources[u[0]]) if u[3] else len(rt[Path(u[0]).name]) for u in todo}
    for fname, obj, okey, own in sorted(todo, key=lambda u: -size[u[0]]):   # the longest first
        # a file that defines macros before it includes the header parses the header itself
        # (GCC finds that out on its own; Clang's -include-pch would read it before the macros)
        uses_pch = own and pch is not None and _includes_first(sources[fname], pch)
        steps.append((f"compile {Path(fname).name}",
                      [*compiler.command, *cflags, *include, *(pch_flags if uses_pch else []), "-c", fname, "-o", obj],
                      obj, okey, uses_pch))
    for sym in sorted(blobs):
        data = blobs[sym]
        obj = f"obj/blob_{sym}.o"
        objects.append(obj)
        what = f"assemble blob {sym} ({len(memoryview(data).cast('B'))} bytes)"
        if elf_machine is not None:     # the object written directly: the bytes are copied once, not three times
            cmd = (lambda sym=sym, data=data, obj=obj: _write_blob_object(work / obj, sym, data, elf_machine))
        else:
            (work / "blobs" / f"{sym}.bin").write_bytes(data)
            (work / "blobs" / f"{sym}.s").write_text(_incbin_asm(sym, f"blobs/{sym}.bin", asm_kind))
            cmd = [*compiler.command, *cflags, "-c", f"blobs/{sym}.s", "-o", obj]
        steps.insert(0, (what, cmd, obj, None, False))   # before the compiles that wait for the precompiled header
    for fname in sorted(sources):
        if fname.endswith(".c") and any(u[0] == fname for u in todo):
            (work / fname).write_text(sources[fname], encoding="utf-8")
    steps.sort(key=lambda st: st[4])   # (stable) what needs no precompiled header first

    total = len(steps) + 1
    done = 0
    done_lock = threading.Lock()
    pch_ready = threading.Event()
    pch_failed = False

    def make_pch() -> None:
        nonlocal pch_failed
        out, pkey, cmd = pch_step
        try:
            _run(cmd, work, f"precompile {pch}")
            store.put(pkey, work / out)
        except ToolchainError:
            pch_failed = True       # the files parse the header themselves
            try:
                (work / out).unlink()
            except OSError:
                pass
        finally:
            pch_ready.set()

    def run_step(step) -> None:
        nonlocal done
        what, cmd, obj, okey, needs_pch = step
        if needs_pch and pch_step is not None:
            pch_ready.wait()
            if pch_failed and pch_flags:
                cmd = [c for c in cmd if c not in pch_flags]
        if callable(cmd):
            cmd()
        else:
            try:
                _run(cmd, work, what)
            except ToolchainError:
                if not (needs_pch and pch_flags and pch_flags[0] in cmd):
                    raise
                # a precompiled header the compiler refuses after all: the file parses the header
                _run([c for c in cmd if c not in pch_flags], work, what)
        if okey is not None:
            if okey in runtime_keys:
                store.put(okey, work / obj)
            else:
                _store_object(objs, okey, work / obj)
        if progress is not None:
            with done_lock:
                done += 1
                n = done
            progress(what, n, total)

    if pch_step is None:
        pch_ready.set()
    if jobs == 1 or len(steps) <= 1:
        if pch_step is not None:
            make_pch()
        for step in steps:
            run_step(step)
    else:
        with ThreadPoolExecutor(max_workers=min(jobs, len(steps) + (pch_step is not None))) as pool:
            futures = [pool.submit(make_pch)] if pch_step is not None else []
            futures += [pool.submit(run_step, s) for s in steps]
            errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
    return total, objects


#: ELF machine numbers of the hosts whose blobs are written as ELF64 objects directly
_ELF_MACHINES = {"x86_64": 62, "aarch64": 183}


def _host_elf_machine(cflags: Sequence[str]) -> int | None:
    """The ELF machine number of this host's 64-bit little-endian Linux objects where the
    flags keep that format (no ``-m32``, ``-mx32``); None elsewhere (the blob is assembled)."""
    if not sys.platform.startswith("linux") or sys.byteorder != "little":
        return None
    if any(f in ("-m32", "-mx32", "-mabi=ilp32") for f in cflags):
        return None
    return _ELF_MACHINES.get(os.uname().machine)


def _write_blob_object(path: Path, symbol: str, data, machine: int) -> None:
    """Writes an ELF64 relocatable object whose ``.rodata`` is ``data`` (64-byte aligned) under
    the global, hidden object ``symbol``, with the note that asks for no executable stack: what
    :func:`_incbin_asm` assembles to, without the assembler reading and writing the bytes again."""
    import struct

    body = memoryview(data).cast("B")
    shstr = b"\0.rodata\0.note.GNU-stack\0.symtab\0.strtab\0.shstrtab\0"
    name_at = {n: shstr.index(n.encode() + b"\0") for n in (".rodata", ".note.GNU-stack", ".symtab", ".strtab",
                                                            ".shstrtab")}
    strtab = b"\0" + symbol.encode() + b"\0"
    # symbols: the null one, then the blob (global: the first non-local is 1)
    symtab = bytes(24) + struct.pack("<IBBHQQ", 1, (1 << 4) | 1, 2, 1, 0, len(body))   # GLOBAL OBJECT, HIDDEN, in .rodata
    data_at = 64
    tail_at = data_at + len(body)
    symtab_at = (tail_at + 7) // 8 * 8
    strtab_at = symtab_at + len(symtab)
    shstr_at = strtab_at + len(strtab)
    sh_at = (shstr_at + len(shstr) + 7) // 8 * 8

    def section(name, kind, flags, offset, size, link=0, info=0, align=1, entsize=0) -> bytes:
        return struct.pack("<IIQQQQIIQQ", name, kind, flags, 0, offset, size, link, info, align, entsize)

    sections = [bytes(64),
                section(name_at[".rodata"], 1, 2, data_at, len(body), align=64),           # PROGBITS, ALLOC
                section(name_at[".note.GNU-stack"], 1, 0, tail_at, 0),
                section(name_at[".symtab"], 2, 0, symtab_at, len(symtab), link=4, info=1, align=8, entsize=24),
                section(name_at[".strtab"], 3, 0, strtab_at, len(strtab)),
                section(name_at[".shstrtab"], 3, 0, shstr_at, len(shstr))]
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIQQQIHHHHHH", 1, machine, 1, 0, 0, sh_at, 0, 64, 0, 0, 64, len(sections), 5))
    with open(path, "wb") as f:
        f.write(header)
        f.write(body)
        f.write(bytes(symtab_at - tail_at))
        f.write(symtab)
        f.write(strtab)
        f.write(shstr)
        f.write(bytes(sh_at - shstr_at - len(shstr)))
        f.write(b"".join(sections))


def _includes_first(text: str, header: str) -> bool:
    """Whether the first preprocessor directive of C ``text`` is ``#include "header"``."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            return line.replace(" ", "") == f'#include"{header}"'
    return False


def _incbin_asm(symbol: str, path: str, kind: str = "elf") -> str:
    """Assembly that makes ``symbol`` the bytes of the file ``path``; ``kind``: "elf", "elf-arm"
    (where "@" starts a comment, so types are written "%object") or "wasm"."""
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    if kind == "elf-arm":
        return _incbin_asm(symbol, path).replace("@object", "%object").replace("@progbits", "%progbits")
    if kind == "wasm":     # a data segment of its own; WebAssembly objects have no ELF notes
        return (f"    .section .rodata.{symbol},\"\",@\n    .globl {symbol}\n    .hidden {symbol}\n"
                f"    .type {symbol}, @object\n    .p2align 6\n{symbol}:\n    .incbin \"{quoted}\"\n"
                f"    .size {symbol}, . - {symbol}\n")
    return (
        "    .section .rodata\n"
        f"    .globl {symbol}\n"
        f"    .hidden {symbol}\n"
        f"    .type {symbol}, @object\n"
        "    .balign 64\n"
        f"{symbol}:\n"
        f"    .incbin \"{quoted}\"\n"
        f"    .size {symbol}, . - {symbol}\n"
        "    .section .note.GNU-stack,\"\",@progbits\n"
    )


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise ToolchainError(f"cannot run the C compiler '{cmd[0]}': {e}") from None
    if proc.returncode != 0:
        output = (proc.stderr or "") + (proc.stdout or "")
        hint = ""
        if what == "link" and "ember_model_" in output and ("undefined" in output or "not defined" in output):
            hint = ("\nhint: the generated code must define ember_model_metadata, "
                    "ember_model_arena_bytes and ember_model_entry (see ember_kernel.h)")
        err = ToolchainError(f"{what} failed (exit status {proc.returncode}):\n{_trim(output)}{hint}")
        err.command = cmd
        err.stderr = output
        raise err


def _trim(text: str, max_lines: int = 40, max_width: int = 300) -> str:
    """The compiler's report cut to something readable: errors first, with their context."""
    lines = [ln if len(ln) <= max_width else ln[:max_width] + " ..." for ln in text.strip().splitlines()]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    first_error = next((i for i, ln in enumerate(lines) if "error" in ln.lower()), 0)
    start = max(0, first_error - 2)
    kept = lines[start:start + max_lines]
    more = len(lines) - len(kept)
    return "\n".join(kept) + f"\n... ({more} more lines)"

"""Kind ``artifacts``: compiled artifacts and programs that are truncated, flipped, resealed
over damage, from another ABI or another CPU, not artifacts at all, or not regular files; and
compile caches damaged between two compiles of the same model (the second compile must still
give a correct module)."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import numpy as np

from .. import models as M
from ..case import EITHER, REFUSE, RUN, Case, Ran
from ..prepare import copy_prepared, strings_model

X = M.rng(11).standard_normal((2, 3)).astype(np.float32)
Y = M.rng(12).standard_normal((2, 3)).astype(np.float32)
S = np.array(["AbC", "DeF", "gHI"], dtype=object)

TRAILER = 8 + 8 + 32     # b"EMBERART", payload length, sha256 (runtime/module.py)


def _load_and_run(path):
    import ember

    m = ember.load(path.value if isinstance(path, Literal) else path)
    if "s" in m.input_names:
        return Ran(dict(m.run({"s": S, "x": X})), expected={
            "y": np.array([v.lower() for v in S], dtype=object), "z": np.maximum(X, 0)})
    return Ran(dict(m.run({"x": X, "y": Y})), expected={"z": X + Y})


def _reseal(path: Path, payload: bytes) -> None:
    from ember.runtime import seal_artifact

    path.write_bytes(payload)
    seal_artifact(path)


def _case(slug, expect, base, damage, timeout=20.0):
    """``damage(path)`` damages a private copy of the prepared artifact ``base`` (None: the
    case's own file, which ``damage(ctx.dir / 'artifact')`` creates) and returns the path to load."""
    def setup(ctx):
        path = copy_prepared(ctx, base) if base else ctx.dir / "artifact"
        out = damage(path)
        return out if isinstance(out, (Path, str, Literal)) else path

    def act(ctx, path):
        return _load_and_run(path)

    return Case(f"artifacts/{slug}", expect, act, setup, timeout=timeout)


# ---- damage ----------------------------------------------------------------------------------

def truncate_to(n_of_size):
    def damage(p: Path):
        data = p.read_bytes()
        p.write_bytes(data[:max(0, n_of_size(len(data)))])
    return damage


def flip_at(pos_of_size, count=1, seed=None):
    def damage(p: Path):
        b = bytearray(p.read_bytes())
        r = random.Random(seed)
        for k in range(count):
            i = pos_of_size(len(b)) if seed is None else r.randrange(len(b))
            b[i] ^= 0x5A
        p.write_bytes(bytes(b))
    return damage


def edit_payload(fn):
    """Changes the payload (the library) with ``fn(bytearray)`` and reseals it."""
    def damage(p: Path):
        b = bytearray(p.read_bytes()[:-TRAILER])
        fn(b)
        _reseal(p, bytes(b))
    return damage


def replace_once(old: bytes, new: bytes):
    assert len(old) == len(new)

    def fn(b: bytearray):
        i = b.index(old)
        b[i:i + len(old)] = new
    return fn


def set_trailer(length=None, magic=None):
    def damage(p: Path):
        b = bytearray(p.read_bytes())
        if magic is not None:
            b[-TRAILER:-TRAILER + 8] = magic
        if length is not None:
            b[-TRAILER + 8:-TRAILER + 16] = struct.pack("<Q", length(len(b)))
        p.write_bytes(bytes(b))
    return damage


def program_parts(p: Path):
    data = p.read_bytes()[:-TRAILER]
    n, = struct.unpack_from("<Q", data, 8)
    return data[:8], json.loads(data[16:16 + n]), data[16 + n:]


def edit_program(fn=None, raw_header=None, length=None, blob_fn=None):
    """Rewrites a program's header (``fn(header)`` edits the dict; ``raw_header(bytes)`` the
    text; ``length(n)`` the recorded header length) or its segment blob, and reseals it."""
    def damage(p: Path):
        magic, head, blob = program_parts(p)
        if fn:
            fn(head)
        text = json.dumps(head, separators=(",", ":")).encode()
        if raw_header:
            text = raw_header(text)
        if blob_fn:
            blob = blob_fn(bytearray(blob))
        n = length(len(text)) if length else len(text)
        _reseal(p, magic + struct.pack("<Q", n) + text + bytes(blob))
    return damage


def write(content: bytes):
    def damage(p: Path):
        p.write_bytes(content)
    return damage


def special(make):
    """The path to load is something ``make(case_dir)`` returns (a folder, a FIFO, a device...)."""
    def damage(p: Path):
        return make(p.parent)
    return damage


def _fifo(d: Path):
    os.mkfifo(d / "fifo.so")
    return d / "fifo.so"


def _sparse_with_trailer(d: Path):
    """64 GB of (sparse) zeros with a trailer that claims them: checking it means hashing them all."""
    p = d / "sparse.so"
    size = 1 << 36
    with open(p, "wb") as f:
        f.truncate(size)
        f.seek(size)
        f.write(b"EMBERART" + struct.pack("<Q", size) + bytes(32))
    return p


def _symlink_to_add(d: Path):
    os.symlink(d / "add.so", d / "link.so")
    return d / "link.so"


def _folder(d: Path):
    (d / "folder.so").mkdir()
    return d / "folder.so"


def _elf_header_zeroed(b: bytearray):
    b[:64] = bytes(64)


def _zero_segment(blob: bytearray):
    return bytes(len(blob))


def _flip_in_segment(blob: bytearray):
    blob[len(blob) // 2] ^= 0xFF
    return blob


def _bad_step(head):
    for s in head["steps"]:
        if s["kind"] == "host":
            s["kernel"] = "os.system"


def _segment_past_end(head):
    head["segments"][0]["offset"] = 1 << 40


def _segment_negative(head):
    head["segments"][0]["size"] = -5


def _slot_out_of_range(head):
    head["steps"][0]["inputs"] = [999]


def _input_dtype(head):
    head["inputs"][0]["dtype"] = "evil"


def _const_bogus(head):
    head["constants"] = [{"slot": 0, "dtype": "float32", "shape": [1 << 40], "data": [1.0]}]


def _step_segment_index(head):
    for s in head["steps"]:
        if s["kind"] != "host":
            s["segment"] = 7


def artifact_cases():
    yield _case("so-empty", REFUSE, "add.so", truncate_to(lambda n: 0))
    yield _case("so-truncated-1", REFUSE, "add.so", truncate_to(lambda n: 1))
    yield _case("so-truncated-100", REFUSE, "add.so", truncate_to(lambda n: 100))
    yield _case("so-truncated-half", REFUSE, "add.so", truncate_to(lambda n: n // 2))
    yield _case("so-truncated-last-byte", REFUSE, "add.so", truncate_to(lambda n: n - 1))
    yield _case("so-trailer-removed", REFUSE, "add.so", truncate_to(lambda n: n - TRAILER))
    yield _case("so-trailer-half-removed", REFUSE, "add.so", truncate_to(lambda n: n - TRAILER // 2))
    yield _case("so-flip-elf-magic", REFUSE, "add.so", flip_at(lambda n: 1))
    yield _case("so-flip-middle", REFUSE, "add.so", flip_at(lambda n: n // 2))
    yield _case("so-flip-end-of-payload", REFUSE, "add.so", flip_at(lambda n: n - TRAILER - 1))
    yield _case("so-flip-trailer-magic", REFUSE, "add.so", flip_at(lambda n: n - TRAILER))
    yield _case("so-flip-trailer-length", REFUSE, "add.so", flip_at(lambda n: n - TRAILER + 9))
    yield _case("so-flip-trailer-sha", REFUSE, "add.so", flip_at(lambda n: n - 1))
    for seed in range(4):
        yield _case(f"so-flip-random-{seed}", REFUSE, "add.so", flip_at(None, 5, seed))
    yield _case("so-garbage-appended", REFUSE, "add.so", lambda p: p.write_bytes(p.read_bytes() + b"garbage!"))
    yield _case("so-garbage-prepended", REFUSE, "add.so", lambda p: p.write_bytes(b"garbage!" + p.read_bytes()))
    yield _case("so-trailer-length-huge", REFUSE, "add.so", set_trailer(length=lambda n: 1 << 62))
    yield _case("so-trailer-length-zero", REFUSE, "add.so", set_trailer(length=lambda n: 0))
    yield _case("so-trailer-wrong-magic", REFUSE, "add.so", set_trailer(magic=b"EMBERPRG"))
    yield _case("so-sealed-twice", EITHER, "add.so", lambda p: _reseal(p, p.read_bytes()))
    yield _case("so-resealed-elf-header-zeroed", REFUSE, "add.so", edit_payload(_elf_header_zeroed))
    yield _case("so-resealed-metadata-format-7", REFUSE, "add.so", edit_payload(replace_once(b'"format":1', b'"format":7')))
    yield _case("so-resealed-metadata-not-json", REFUSE, "add.so", edit_payload(replace_once(b'{"format"', b'!"format"')))
    yield _case("so-resealed-metadata-no-inputs", REFUSE, "add.so", edit_payload(replace_once(b'"inputs":[', b'"inputz":[')))
    yield _case("so-resealed-metadata-duplicate-names", REFUSE, "add.so",
                edit_payload(replace_once(b'{"name":"y"', b'{"name":"x"')))
    yield _case("so-resealed-metadata-dtype-float64", REFUSE, "add.so", edit_payload(replace_once(b'"float32"', b'"float64"')))
    yield _case("so-resealed-metadata-shape-9x9", REFUSE, "add.so", edit_payload(replace_once(b'[2,3]', b'[9,9]')))
    yield _case("so-resealed-metadata-dtype-unknown", REFUSE, "add.so", edit_payload(replace_once(b'"float32"', b'"floatXY"')))
    yield _case("so-other-abi", REFUSE, "abi99.so", lambda p: None)
    yield _case("so-cpu-feature-missing", REFUSE, "cpu_missing.so", lambda p: None)
    yield _case("so-foreign-library", REFUSE, "foreign.so", lambda p: None)
    yield _case("so-symlink-to-artifact", EITHER, "add.so", special(_symlink_to_add))
    yield _case("not-artifact-onnx-model", REFUSE, None, write(M.add_model().SerializeToString()))
    yield _case("not-artifact-text", REFUSE, None, write(b"hello, this is not an artifact\n" * 10))
    yield _case("not-artifact-trailer-only", REFUSE, None, write(b"EMBERART" + struct.pack("<Q", 0) + bytes(32)))
    yield _case("not-artifact-program-magic-only", REFUSE, None, write(b"EMBERPRG"))
    yield _case("not-artifact-folder", REFUSE, None, special(_folder))
    yield _case("not-artifact-missing", REFUSE, None, special(lambda d: d / "nowhere.so"))
    yield _case("not-artifact-dev-null", REFUSE, None, special(lambda d: Path("/dev/null")))
    yield _case("not-artifact-dev-zero", REFUSE, None, special(lambda d: Path("/dev/zero")))
    yield _case("not-artifact-fifo", REFUSE, None, special(_fifo))
    yield _case("not-artifact-sparse-64gb-trailer", REFUSE, None, special(_sparse_with_trailer), timeout=30)
    yield _case("load-path-with-nul", REFUSE, None, special(lambda d: str(d / "a\0b.so")))
    yield _case("load-none", REFUSE, None, lambda p: Literal(None))
    yield _case("load-int", REFUSE, None, lambda p: Literal(3))


class Literal:
    """What to hand ember.load instead of a path (None, a number)."""

    def __init__(self, value):
        self.value = value


def program_cases():
    P = "strings.ember"
    yield _case("program-valid", RUN, P, lambda p: None)
    yield _case("program-truncated-half", REFUSE, P, truncate_to(lambda n: n // 2))
    yield _case("program-truncated-last-byte", REFUSE, P, truncate_to(lambda n: n - 1))
    yield _case("program-magic-and-length-only", REFUSE, P, truncate_to(lambda n: 16))
    yield _case("program-flip-header", REFUSE, P, flip_at(lambda n: 20))
    yield _case("program-resealed-header-not-json", REFUSE, P, edit_program(raw_header=lambda t: b"[" + t[1:]))
    yield _case("program-resealed-header-not-utf8", REFUSE, P, edit_program(raw_header=lambda t: b"\xff" + t[1:]))
    yield _case("program-resealed-header-a-list", REFUSE, P, edit_program(raw_header=lambda t: b"[1,2,3]"))
    yield _case("program-resealed-header-nested-deep", REFUSE, P,
                edit_program(raw_header=lambda t: b"[" * 100000 + b"]" * 100000))
    yield _case("program-resealed-header-length-huge", REFUSE, P, edit_program(length=lambda n: 1 << 62))
    yield _case("program-resealed-header-length-zero", REFUSE, P, edit_program(length=lambda n: 0))
    yield _case("program-resealed-header-length-past-end", REFUSE, P, edit_program(length=lambda n: n + 100000))
    yield _case("program-resealed-format-999", REFUSE, P, edit_program(lambda h: h.update(format=999)))
    yield _case("program-resealed-no-steps", REFUSE, P, edit_program(lambda h: h.pop("steps")))
    yield _case("program-resealed-steps-not-list", REFUSE, P, edit_program(lambda h: h.update(steps=5)))
    yield _case("program-resealed-unknown-kernel", REFUSE, P, edit_program(_bad_step))
    yield _case("program-resealed-segment-past-end", REFUSE, P, edit_program(_segment_past_end))
    yield _case("program-resealed-segment-size-negative", REFUSE, P, edit_program(_segment_negative))
    yield _case("program-resealed-step-segment-7", REFUSE, P, edit_program(_step_segment_index))
    yield _case("program-resealed-slot-999", REFUSE, P, edit_program(_slot_out_of_range))
    yield _case("program-resealed-input-dtype-evil", REFUSE, P, edit_program(_input_dtype))
    yield _case("program-resealed-constant-2e40", REFUSE, P, edit_program(_const_bogus))
    yield _case("program-resealed-segment-zeroed", REFUSE, P, edit_program(blob_fn=_zero_segment))
    yield _case("program-resealed-segment-flipped", REFUSE, P, edit_program(blob_fn=_flip_in_segment))


# ---- caches damaged between two compiles -----------------------------------------------------

#: The limits of both compiles of a cache case.  They are part of a compile's cache key, and
#: Ember's defaults come from the memory the process may use: the first compile (in setup,
#: before the case's memory limit applies) and the second (under it) would otherwise have
#: different keys, and the second would never read the damaged entry.
CACHE_CASE_LIMITS = {"tensor_bytes": "1G", "memory_bytes": "1G"}


def _cache_case(slug, damage, model=M.add_model, program=False, known=""):
    """Compiles a model into a private cache and damages the cache with ``damage(cache_dir)``
    (in a process of its own, so that the case's process has loaded nothing), then compiles
    the same model again (the same cache key: it finds the damaged entry): that module must run
    correctly."""
    def setup(ctx):
        path = M.write_model(ctx, (strings_model if program else model)())
        cache = ctx.dir / "cache"
        os.environ["EMBER_CACHE_DIR"] = str(cache)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                M.compile_path(path, limits=CACHE_CASE_LIMITS)
                damage(cache)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"compiling and damaging the cache failed (status {status})")
        return path

    def act(ctx, path):
        m = M.compile_path(path, limits=CACHE_CASE_LIMITS)
        if program:
            return Ran(dict(m.run({"s": S, "x": X})), expected={
                "y": np.array([v.lower() for v in S], dtype=object), "z": np.maximum(X, 0)})
        return Ran(dict(m.run({"x": X, "y": Y})), expected={"z": X + Y})

    return Case(f"artifacts/{slug}", RUN, act, setup, timeout=60, known=known)


def _each(pattern, fn):
    def damage(cache: Path):
        for p in sorted(cache.glob(pattern)):
            if p.is_file():
                fn(p)
    return damage


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def _to_folder(p: Path):
    p.unlink()
    p.mkdir()


def _stale(cache: Path):
    """The add model's cache entry replaced by another model's (whole, valid) artifact."""
    entry = next(cache.glob("models/*.so"))
    other = cache.parent / "other.onnx"
    other.write_bytes(M.mlp_model().SerializeToString())
    saved = os.environ["EMBER_CACHE_DIR"]
    os.environ["EMBER_CACHE_DIR"] = str(cache.parent / "other-cache")
    try:
        M.compile_path(other, limits=CACHE_CASE_LIMITS).save(entry)
    finally:
        os.environ["EMBER_CACHE_DIR"] = saved


def cache_cases():
    yield _cache_case("cache-model-truncated", _each("models/*.so", _truncate))
    yield _cache_case("cache-model-flipped", _each("models/*.so", _flip))
    yield _cache_case("cache-model-emptied", _each("models/*.so", lambda p: p.write_bytes(b"")))
    yield _cache_case("cache-model-folder", _each("models/*.so", _to_folder))
    yield _cache_case("cache-model-stale-other-model", _stale)
    yield _cache_case("cache-everything-truncated", _each("**/*", _truncate))
    yield _cache_case("cache-objects-garbage", lambda c: (_each("obj/*", lambda p: p.write_bytes(b"garbage"))(c),
                                                         _each("models/*", lambda p: p.unlink())(c),
                                                         _each("lib/*", lambda p: p.unlink())(c)))
    yield _cache_case("cache-program-truncated", _each("programs/*.ember", _truncate), program=True)
    yield _cache_case("cache-program-flipped", _each("programs/*.ember", _flip), program=True)


def cases():
    yield from artifact_cases()
    yield from program_cases()
    yield from cache_cases()

"""Kind ``external``: initializers kept in external data files that are not where they may be
(path traversal, absolute paths, symlinks out of the model's folder), not there at all, not
regular files (a directory, a FIFO, a device) or shorter than the header says."""

from __future__ import annotations

import os

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

from .. import models as M
from ..case import EITHER, REFUSE, RUN, Case

DATA = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5


def _model(entries: dict | None, raw: bytes | None = None, location_external=True):
    """y = x + c, c [2, 3] float whose data lies where ``entries`` (external_data keys) say."""
    c = T()
    c.name = "c"
    c.data_type = T.FLOAT
    c.dims.extend([2, 3])
    if location_external:
        c.data_location = T.EXTERNAL
    for k, v in (entries or {}).items():
        e = c.external_data.add()
        e.key, e.value = k, v
    if raw is not None:
        c.raw_data = raw
    return M.model([h.make_node("Add", ["x", "c"], ["y"], name="add")], [M.vi("x", shape=[2, 3])],
                   [M.vi("y", shape=[2, 3])], [c])


def _case(slug, expect, entries, prepare=None, raw=None, location_external=True, timeout=20.0):
    """``prepare(model_dir)`` lays out files; ``entries`` may be a callable of the model dir."""
    def setup(ctx):
        d = ctx.dir / "model"
        d.mkdir()
        (ctx.dir / "outside.bin").write_bytes(DATA.tobytes())   # what a traversal would reach
        (d / "data.bin").write_bytes(DATA.tobytes())
        if prepare:
            prepare(d)
        ent = entries(d) if callable(entries) else entries
        path = d / "model.onnx"
        path.write_bytes(_model(ent, raw, location_external).SerializeToString())
        return path

    def act(ctx, path):
        x = M.rng(0).standard_normal((2, 3)).astype(np.float32)
        return M.compile_and_run(path, {"x": x}, {"y": x + DATA})

    def ort(ctx, path):
        x = M.rng(0).standard_normal((2, 3)).astype(np.float32)
        return M.ort_run(path, {"x": x}, {"y": x + DATA})

    return Case(f"external/{slug}", expect, act, setup, timeout=timeout, ort=ort)


def _symlink(target, name="link.bin"):
    def prepare(d):
        os.symlink(target(d) if callable(target) else target, d / name)
    return prepare


def _padded(d):
    (d / "padded.bin").write_bytes(b"\xff" * 16 + DATA.tobytes() + b"\xff" * 8)


def _fifo(d):
    os.mkfifo(d / "fifo.bin")


def _sparse_huge(d):
    with open(d / "huge.bin", "wb") as f:
        f.truncate(1 << 36)


def _subdir(d):
    (d / "sub").mkdir()


def cases():
    L = "location"
    yield _case("valid", RUN, {L: "data.bin"})
    yield _case("valid-offset-length", RUN, {L: "padded.bin", "offset": "16", "length": "24"}, _padded)
    yield _case("valid-subfolder-dotdot", EITHER, {L: "sub/../data.bin"}, _subdir)
    yield _case("traversal-parent", REFUSE, {L: "../outside.bin"})
    yield _case("traversal-deep", REFUSE, {L: "../../../../../../../../etc/passwd", "length": "24"})
    yield _case("traversal-via-subfolder", REFUSE, {L: "sub/../../outside.bin"}, _subdir)
    yield _case("absolute-path-outside", REFUSE, lambda d: {L: str(d.parent / "outside.bin")})
    yield _case("absolute-etc-passwd", REFUSE, {L: "/etc/passwd", "length": "24"})
    yield _case("symlink-file-outside", REFUSE, {L: "link.bin"}, _symlink(lambda d: d.parent / "outside.bin"))
    yield _case("symlink-dir-outside", REFUSE, {L: "linkdir/outside.bin"},
                _symlink(lambda d: d.parent, "linkdir"))
    yield _case("symlink-dev-zero", REFUSE, {L: "link.bin"}, _symlink("/dev/zero"))
    yield _case("symlink-dev-zero-length", REFUSE, {L: "link.bin", "length": "24"}, _symlink("/dev/zero"))
    yield _case("symlink-dangling", REFUSE, {L: "link.bin"}, _symlink("/nonexistent/nowhere.bin"))
    yield _case("symlink-loop", REFUSE, {L: "link.bin"}, _symlink("link.bin"))
    yield _case("dev-zero-absolute", REFUSE, {L: "/dev/zero", "length": "24"})
    yield _case("dev-zero-absolute-no-length", REFUSE, {L: "/dev/zero"})
    yield _case("proc-self-mem", REFUSE, {L: "/proc/self/mem", "offset": "4096", "length": "24"})
    yield _case("missing-file", REFUSE, {L: "nowhere.bin"})
    yield _case("url-location", REFUSE, {L: "file:///etc/passwd"})
    yield _case("empty-location", REFUSE, {L: ""})
    yield _case("nul-in-location", REFUSE, {L: "data.bin\0.evil"})
    yield _case("no-location-key", REFUSE, {"offset": "0", "length": "24"})
    yield _case("no-external-entries", REFUSE, {})
    yield _case("location-is-folder", REFUSE, {L: "sub"}, _subdir)
    yield _case("location-is-dot", REFUSE, {L: "."})
    yield _case("location-is-fifo", REFUSE, {L: "fifo.bin"}, _fifo)
    yield _case("location-is-fifo-length", REFUSE, {L: "fifo.bin", "length": "24"}, _fifo)
    yield _case("offset-past-end", REFUSE, {L: "data.bin", "offset": "4096"})
    yield _case("length-past-end", REFUSE, {L: "data.bin", "length": "4096"})
    yield _case("offset-plus-length-past-end", REFUSE, {L: "data.bin", "offset": "8", "length": "24"})
    yield _case("length-short", REFUSE, {L: "data.bin", "length": "8"})
    yield _case("length-zero", REFUSE, {L: "data.bin", "length": "0"})
    yield _case("length-2e62", REFUSE, {L: "data.bin", "length": str(1 << 62)})
    yield _case("offset-negative", REFUSE, {L: "data.bin", "offset": "-8"})
    yield _case("offset-not-a-number", REFUSE, {L: "data.bin", "offset": "abc"})
    yield _case("length-float-text", REFUSE, {L: "data.bin", "length": "24.5"})
    yield _case("sparse-64gb-no-length", REFUSE, {L: "huge.bin"}, _sparse_huge, timeout=30)
    yield _case("sparse-64gb-length-64gb", REFUSE, {L: "huge.bin", "length": str(1 << 36)}, _sparse_huge, timeout=30)
    yield _case("unknown-key", EITHER, {L: "data.bin", "evil": "1"})
    yield _case("checksum-wrong", EITHER, {L: "data.bin", "checksum": "0" * 40})
    yield _case("raw-data-and-external", EITHER, {L: "data.bin"}, raw=(DATA * 0).tobytes())
    yield _case("entries-without-external-flag", EITHER, {L: "data.bin"}, raw=DATA.tobytes(), location_external=False)

"""Kind ``inputs``: bad run-time inputs to valid compiled models (loaded from artifacts the
run prepared once): wrong dtypes, ranks and shapes, NaN and Inf, views that are not
contiguous, out-of-range Gather indices, symbols that disagree or exceed their bounds, empty
and object arrays, missing and extra names, huge shapes, strings that are not strings, and
encoded images that lie about themselves."""

from __future__ import annotations

import zlib
from collections import OrderedDict

import numpy as np

from .. import images
from .. import models as M
from ..case import EITHER, REFUSE, RUN, Case, Ran
from ..prepare import dyn_model, prepared, prepared_onnx

R = M.rng(7)
X = R.standard_normal((2, 3)).astype(np.float32)
Y = R.standard_normal((2, 3)).astype(np.float32)
DATA = np.arange(20, dtype=np.float32).reshape(5, 4)


def _case(slug, expect, artifact, feeds, expected=None, call="run"):
    """``feeds()`` builds the inputs in setup; ``call`` is "run" (a mapping), "positional" (a
    tuple of arrays) or a function (module, feeds) -> outputs."""
    def setup(ctx):
        prepared(ctx, artifact)
        return feeds()

    def act(ctx, f):
        import ember

        m = ember.load(prepared(ctx, artifact))
        if call == "run":
            out = dict(m.run(f))
        elif call == "positional":
            res = m(*f)
            out = dict(zip(m.output_names, res if isinstance(res, tuple) else (res,)))
        else:
            out = call(m, f)
        return Ran(out, expected=expected() if callable(expected) else (expected or {}))

    def ort(ctx, f):
        sess = M.ort_session(prepared_onnx(ctx, artifact))
        names = [i.name for i in sess.get_inputs()]
        outs = [o.name for o in sess.get_outputs()]
        if call == "run":
            res = sess.run(None, f)
        elif call == "positional":
            if len(f) != len(names):
                raise TypeError(f"{len(names)} inputs, {len(f)} given")
            res = sess.run(None, dict(zip(names, f)))
        else:   # two runs of two sizes (each array to every input): the second one's outputs
            for arrays in f:
                res = sess.run(None, {n: arrays for n in names})
        return Ran(dict(zip(outs, res)), expected=expected() if callable(expected) else (expected or {}))

    return Case(f"inputs/{slug}", expect, act, setup, timeout=20, ort=ort)


def add(slug, expect, x, y=lambda: Y, expected=None, **kw):
    """A case of the add model (x, y float32 [2, 3]); ``expected`` None means x + y."""
    if expected is None and expect != REFUSE:
        expected = lambda: {"z": (np.asarray(x(), dtype=np.float32) + np.asarray(y(), dtype=np.float32))}
    return _case(f"add-{slug}", expect, "add.so", lambda: {"x": x(), "y": y()}, expected, **kw)


def add_cases():
    big = lambda: np.ascontiguousarray(np.repeat(X, 2, axis=1))
    yield add("valid", RUN, lambda: X)
    for dt in ("float64", "float16", "int32", "int64", "uint8", "bool", "complex64"):
        yield add(f"dtype-{dt}", REFUSE, lambda dt=dt: X.astype(dt))
    yield add("dtype-datetime64", REFUSE, lambda: np.zeros((2, 3), "datetime64[s]"))
    yield add("dtype-structured", REFUSE, lambda: np.zeros((2, 3), [("a", np.float32)]))
    yield add("dtype-object-of-floats", REFUSE, lambda: X.astype(object))
    yield add("dtype-unicode", REFUSE, lambda: X.astype(str))
    yield add("rank-1", REFUSE, lambda: X.reshape(6))
    yield add("rank-3", REFUSE, lambda: X.reshape(2, 3, 1))
    yield add("rank-0", REFUSE, lambda: np.float32(1.0))
    yield add("shape-3x2", REFUSE, lambda: X.reshape(3, 2))
    yield add("shape-2x4", REFUSE, lambda: np.zeros((2, 4), np.float32))
    yield add("empty-0x3", REFUSE, lambda: np.zeros((0, 3), np.float32))
    yield add("empty-2x0", REFUSE, lambda: np.zeros((2, 0), np.float32))
    yield add("huge-zero-stride-view", REFUSE, lambda: np.broadcast_to(np.float32(1), (1 << 20, 1 << 20)))
    yield add("python-float", REFUSE, lambda: 1.0)
    yield add("none", REFUSE, lambda: None)
    yield add("bytes", REFUSE, lambda: X.tobytes())
    yield add("memoryview", EITHER, lambda: memoryview(X))
    yield add("nan-inf", RUN, lambda: np.array([[np.nan, np.inf, -np.inf], [0.0, -0.0, 1e-45]], np.float32))
    yield add("float-max-overflow", RUN, lambda: np.full((2, 3), np.finfo(np.float32).max, np.float32),
              lambda: np.full((2, 3), np.finfo(np.float32).max, np.float32))
    yield add("strided-view", EITHER, lambda: big()[:, ::2])
    yield add("transposed-view", EITHER, lambda: np.ascontiguousarray(X.T).T)
    yield add("fortran-order", EITHER, lambda: np.asfortranarray(X))
    yield add("negative-strides", EITHER, lambda: X[::-1, ::-1])
    yield add("zero-strides", EITHER, lambda: np.broadcast_to(X[:1], (2, 3)))
    yield add("unaligned", EITHER, lambda: np.frombuffer(b"\0" + X.tobytes(), np.float32, 6, 1).reshape(2, 3))
    yield add("read-only", RUN, lambda: _readonly(X))
    yield add("matrix-subclass", EITHER, lambda: np.asmatrix(X))
    yield add("masked-array", EITHER, lambda: np.ma.masked_array(X, mask=[[1, 0, 0], [0, 0, 1]]))
    yield add("nested-list", EITHER, lambda: X.tolist())
    yield add("same-array-twice", RUN, lambda: X, lambda: X)
    yield add("byteswapped", EITHER, lambda: X.astype(">f4"))
    yield _case("add-missing-name", REFUSE, "add.so", lambda: {"x": X})
    yield _case("add-extra-name", REFUSE, "add.so", lambda: {"x": X, "y": Y, "w": X})
    yield _case("add-int-keys", REFUSE, "add.so", lambda: {0: X, 1: Y})
    yield _case("add-bytes-keys", REFUSE, "add.so", lambda: {b"x": X, b"y": Y})
    yield _case("add-feeds-list", REFUSE, "add.so", lambda: [X, Y])
    yield _case("add-feeds-none", REFUSE, "add.so", lambda: None)
    yield _case("add-ordered-dict", RUN, "add.so", lambda: OrderedDict([("y", Y), ("x", X)]), {"z": X + Y})
    yield _case("add-positional", RUN, "add.so", lambda: (X, Y), {"z": X + Y}, call="positional")
    yield _case("add-positional-one", REFUSE, "add.so", lambda: (X,), call="positional")
    yield _case("add-positional-three", REFUSE, "add.so", lambda: (X, Y, X), call="positional")
    yield _case("add-positional-none", REFUSE, "add.so", lambda: (), call="positional")


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def gather(slug, expect, idx):
    exp = (lambda: {"y": DATA[np.asarray(idx())]}) if expect != REFUSE else None
    return _case(f"gather-{slug}", expect, "gather.so", lambda: {"idx": idx()}, exp)


def gather_cases():
    yield gather("valid", RUN, lambda: np.array([0, 4, 2], np.int64))
    yield gather("negative-in-range", RUN, lambda: np.array([-1, -5, 0], np.int64))
    yield gather("index-5", REFUSE, lambda: np.array([0, 5, 1], np.int64))
    yield gather("index-minus-6", REFUSE, lambda: np.array([-6, 0, 1], np.int64))
    yield gather("index-2e31", REFUSE, lambda: np.array([0, 1 << 31, 1], np.int64))
    yield gather("index-2e62", REFUSE, lambda: np.array([0, 1 << 62, 1], np.int64))
    yield gather("index-int64-min", REFUSE, lambda: np.array([np.iinfo(np.int64).min, 0, 1], np.int64))
    yield gather("index-int64-max", REFUSE, lambda: np.array([np.iinfo(np.int64).max, 0, 1], np.int64))
    yield gather("dtype-int32", REFUSE, lambda: np.array([0, 1, 2], np.int32))
    yield gather("dtype-uint64", REFUSE, lambda: np.array([0, 1, 2], np.uint64))
    yield gather("dtype-float", REFUSE, lambda: np.array([0, 1, 2], np.float32))
    yield gather("dtype-bool", REFUSE, lambda: np.array([True, False, True]))
    yield gather("shape-4", REFUSE, lambda: np.array([0, 1, 2, 3], np.int64))


def dyn(slug, expect, x, y, call="run"):
    def expected():
        w = M.numpy_helper.to_array(dyn_model().graph.initializer[0])
        return {"z": (np.asarray(x()) + np.asarray(y())) @ w}
    return _case(f"dyn-{slug}", expect, "dyn.so", lambda: {"x": x(), "y": y()},
                 expected if expect != REFUSE else None, call)


def dyn_cases():
    a = lambda n: (lambda: M.rng(n).standard_normal((n, 4)).astype(np.float32))
    yield dyn("n-3", RUN, a(3), a(3))
    yield dyn("n-1", RUN, a(1), a(1))
    yield dyn("n-8-at-bound", RUN, a(8), a(8))
    yield dyn("n-0", EITHER, a(0), a(0))
    yield dyn("symbols-disagree", REFUSE, a(3), a(5))
    # the bound is a planning size: past it the arena grows (onnxruntime runs it too)
    yield dyn("n-9-above-planned", RUN, a(9), a(9))
    yield dyn("n-300-above-planned", RUN, a(300), a(300))
    yield dyn("n-2e40-view", REFUSE, lambda: np.broadcast_to(np.float32(1), (1 << 40, 4)),
              lambda: np.broadcast_to(np.float32(1), (1 << 40, 4)))
    yield dyn("n-2e58-view", REFUSE, lambda: np.broadcast_to(np.float32(1), (1 << 58, 4)),
              lambda: np.broadcast_to(np.float32(1), (1 << 58, 4)))
    yield dyn("static-dim-wrong", REFUSE, lambda: np.zeros((3, 5), np.float32), lambda: np.zeros((3, 5), np.float32))
    yield dyn("rank-wrong", REFUSE, lambda: np.zeros(3, np.float32), lambda: np.zeros(3, np.float32))
    yield dyn("nan", RUN, lambda: np.full((2, 4), np.nan, np.float32), a(2))
    yield dyn("strided", EITHER, lambda: a(6)()[::2], a(3))
    # a second run with another size must not see the first run's shapes
    yield _case("dyn-two-sizes", RUN, "dyn.so", lambda: (a(5)(), a(2)()), call=_two_sizes,
                expected=lambda: _two_sizes_expected(a(5)(), a(2)()))
    yield _case("dyn-grow-then-shrink", RUN, "dyn.so", lambda: (a(40)(), a(2)()), call=_two_sizes,
                expected=lambda: _two_sizes_expected(a(40)(), a(2)()))


def _two_sizes(m, f):
    big, small = f
    m.run({"x": big, "y": big})
    return dict(m.run({"x": small, "y": small}))


def _two_sizes_expected(big, small):
    w = M.numpy_helper.to_array(dyn_model().graph.initializer[0])
    return {"z": (small + small) @ w}


def strings(slug, expect, s):
    """A case of the program lower(s), relu(x) (x is always valid)."""
    exp = (lambda: {"y": np.array([str(v).lower() for v in s()], dtype=object), "z": np.maximum(X, 0)}
           ) if expect != REFUSE else None
    return _case(f"strings-{slug}", expect, "strings.ember", lambda: {"s": s(), "x": X}, exp)


def string_cases():
    obj = lambda *v: (lambda: np.array(list(v), dtype=object))
    yield strings("valid", RUN, obj("AbC", "ÄÖÜ", "x"))
    yield strings("unicode-dtype", EITHER, lambda: np.array(["AbC", "DEF", "g"]))
    yield strings("float-array", REFUSE, lambda: np.zeros(3, np.float32))
    yield strings("none-element", REFUSE, obj("a", None, "b"))
    yield strings("int-element", REFUSE, obj("a", 5, "b"))
    yield strings("bytes-elements", REFUSE, obj(b"A", b"B", b"C"))
    yield strings("shape-2", REFUSE, obj("a", "b"))
    yield strings("lone-surrogate", EITHER, obj("\ud800A", "B", "C"))
    yield strings("ten-megabytes", RUN, obj("AB" * (5 << 20), "c", "D"))


def image(slug, expect, data, pixels=None):
    exp = (lambda: {"y": pixels()}) if pixels is not None else None
    return _case(f"image-{slug}", expect, "image.ember",
                 lambda: {"b": np.frombuffer(data(), np.uint8) if isinstance(data(), bytes) else data()}, exp)


PIX = (np.arange(4 * 5 * 3) * 7 % 251).astype(np.uint8).reshape(4, 5, 3)


def image_cases():
    good = lambda: images.png(PIX)
    yield image("png-valid", RUN, good, lambda: PIX)
    yield image("empty", REFUSE, lambda: b"")
    yield image("random-bytes", REFUSE, lambda: bytes(M.rng(9).integers(0, 256, 100, dtype=np.uint8)))
    yield image("png-truncated-half", REFUSE, lambda: good()[:len(good()) // 2])
    yield image("png-signature-only", REFUSE, lambda: good()[:8])
    yield image("png-ihdr-crc-wrong", EITHER, lambda: images.png_from(5, 4, 2, zlib.compress(
        b"".join(b"\0" + PIX[r].tobytes() for r in range(4))), ihdr_crc=0), lambda: PIX)
    yield image("png-zero-width", REFUSE, lambda: images.png_from(0, 4, 2, zlib.compress(b"\0" * 4)))
    yield image("png-idat-garbage", REFUSE, lambda: images.png_from(5, 4, 2, b"\x78\x9c" + b"\xff" * 40))
    yield image("png-idat-short", REFUSE, lambda: images.png_from(5, 4, 2, zlib.compress(b"\0" * 10)))
    yield image("png-filter-9", REFUSE, lambda: images.png_from(5, 4, 2, zlib.compress(
        b"".join(b"\x09" + PIX[r].tobytes() for r in range(4)))))
    yield image("png-palette-no-plte", REFUSE, lambda: images.png_palette(np.zeros((2, 2)), None))
    yield image("png-palette-index-past-plte", REFUSE, lambda: images.png_palette(np.full((2, 2), 200), bytes(6)))
    yield image("png-declares-65535-square-tiny-data", REFUSE,
                lambda: images.png_from(65535, 65535, 2, zlib.compress(bytes(100))))
    yield image("bmp-huge-width", REFUSE, lambda: images.bmp_header((1 << 31) - 1, 1, data=bytes(64)))
    yield image("bmp-negative-width", REFUSE, lambda: images.bmp_header(-5, 2, data=bytes(64)))
    yield image("bmp-int-min-height", REFUSE, lambda: images.bmp_header(2, -(1 << 31), data=bytes(64)))
    yield image("bmp-palette-colors-huge", REFUSE, lambda: images.bmp_header(2, 2, 8, bytes(16), colors=1 << 30))
    yield image("bmp-header-only", REFUSE, lambda: images.bmp_header(2, 2)[:30])
    yield image("pnm-huge-dims", REFUSE, lambda: b"P6\n99999999 99999999\n255\n" + bytes(30))
    yield image("pnm-negative-dims", REFUSE, lambda: b"P5\n-4 -4\n255\n" + bytes(30))
    yield image("pnm-maxval-zero", REFUSE, lambda: b"P5\n2 2\n0\n" + bytes(4))
    yield image("pnm-header-only", REFUSE, lambda: b"P5\n2")
    yield image("tiff-strip-past-end", REFUSE, lambda: images.tiff(2, 2, strip_offset=1 << 30))
    yield image("tiff-huge-dims", REFUSE, lambda: images.tiff(1 << 30, 1 << 30, pixels=bytes(12)))
    yield image("tiff-ifd-past-end", REFUSE, lambda: b"II*\0" + (1 << 30).to_bytes(4, "little"))
    yield image("jpeg-magic-only", REFUSE, lambda: b"\xff\xd8\xff\xe0" + bytes(20))
    yield image("rank-2-input", REFUSE, lambda: np.frombuffer(good(), np.uint8)[:100].reshape(10, 10))
    yield image("int8-input", REFUSE, lambda: np.frombuffer(good(), np.int8))


def cases():
    yield from add_cases()
    yield from gather_cases()
    yield from dyn_cases()
    yield from string_cases()
    yield from image_cases()

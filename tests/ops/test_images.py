"""image_decode (ONNX ImageDecoder): its host kernel on files written here, byte by byte, in
each lossless format it reads, against the pixels that went in; its type rule; its errors; and
an ONNX model with an ImageDecoder compiled to a program."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember
from ember.errors import EmberRuntimeError, TypeInferenceError
from ember.graph.types import TensorType
from ember.ops import get_op

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)       # odd sizes: BMP rows need padding


def decode(data: bytes, pixel_format: str = "RGB") -> np.ndarray:
    op = get_op("image_decode")
    a = op.fill_attrs({"pixel_format": pixel_format, "height": "h", "width": "w"})
    x = np.frombuffer(data, np.uint8)
    (t,) = op.infer_types(a, [TensorType.of(x)])
    (out,) = op.run_reference(a, [x])
    assert out.dtype == np.uint8 and out.shape[2] == t.shape[2]
    return out


def bmp(img: np.ndarray, top_down: bool = False) -> bytes:
    h, w, _ = img.shape
    row = (w * 3 + 3) // 4 * 4
    rows = b"".join(img[y, :, ::-1].tobytes().ljust(row, b"\0") for y in (range(h) if top_down else range(h - 1, -1, -1)))
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(rows), 0, 0, 54) + info + rows


def png(img: np.ndarray, filters=(0, 1, 2, 3, 4)) -> bytes:
    h, w, c = img.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    raw, prev = b"", np.zeros(w * c, np.int32)
    for y in range(h):
        kind = filters[y % len(filters)]
        line = img[y].reshape(-1).astype(np.int32)
        left = np.concatenate([np.zeros(c, np.int32), line[:-c]])
        up_left = np.concatenate([np.zeros(c, np.int32), prev[:-c]])
        if kind == 0:
            pred = np.zeros_like(line)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - up_left
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
        raw += bytes([kind]) + ((line - pred) % 256).astype(np.uint8).tobytes()
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pnm(img: np.ndarray) -> bytes:
    h, w, c = img.shape
    return (b"P6" if c == 3 else b"P5") + f"\n# made by a test\n{w} {h}\n255\n".encode() + img.tobytes()


def tiff(img: np.ndarray) -> bytes:
    h, w, c = img.shape
    pixels = img.tobytes()
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2 if c == 3 else 1),
            (273, 4, 1, 8), (277, 3, 1, c), (278, 3, 1, h), (279, 4, 1, len(pixels))]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, k, n) + (struct.pack("<HH", v, 0) if k == 3 else struct.pack("<I", v))
        for t, k, n, v in tags) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8 + len(pixels)) + pixels + ifd


@pytest.mark.parametrize("fmt", ["bmp", "bmp top-down", "png", "pnm", "tiff"])
def test_lossless_formats_give_back_their_pixels(fmt):
    data = {"bmp": lambda: bmp(IMAGE), "bmp top-down": lambda: bmp(IMAGE, top_down=True), "png": lambda: png(IMAGE),
            "pnm": lambda: pnm(IMAGE), "tiff": lambda: tiff(IMAGE)}[fmt]()
    np.testing.assert_array_equal(decode(data), IMAGE)
    np.testing.assert_array_equal(decode(data, "BGR"), IMAGE[:, :, ::-1])


def test_png_every_filter_alpha_and_gray():
    rgba = RNG.integers(0, 256, (6, 9, 4), dtype=np.uint8)
    for f in range(5):
        np.testing.assert_array_equal(decode(png(rgba, filters=(f,))), rgba[:, :, :3])   # alpha dropped
    gray = RNG.integers(0, 256, (4, 5, 1), dtype=np.uint8)
    np.testing.assert_array_equal(decode(png(gray)), np.repeat(gray, 3, axis=2))
    np.testing.assert_array_equal(decode(pnm(gray), "Grayscale"), gray)


@pytest.mark.parametrize("filters", [(0, 1, 2), (3,), (4,), (4, 3, 1, 0, 2, 4, 4)], ids=str)
def test_png_filters_on_larger_images(filters):
    """Rows of only None/Sub/Up are undone row by row, any Average or Paeth row sends the whole
    image down the anti-diagonal decoder; both give back the pixels, in every channel count."""
    for c in (1, 3, 4):
        img = RNG.integers(0, 256, (23, 41, c), dtype=np.uint8)
        want = np.repeat(img, 3, axis=2) if c == 1 else img[:, :, :3]
        np.testing.assert_array_equal(decode(png(img, filters)), want)
    flat = np.zeros((9, 300, 3), np.uint8)          # a wide, short image: many short diagonals
    flat[:, ::7] = 200
    np.testing.assert_array_equal(decode(png(flat, filters)), flat)


def _png_chunks(w: int, h: int, idat: bytes, color: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_png_decompression_bomb_inflates_only_the_declared_size():
    """100 MB of zeros in 100 kB of deflate behind a header of 64 x 64 pixels: only the 64 rows
    the header declares are inflated (a filter byte and 192 bytes each)."""
    import tracemalloc

    bomb = zlib.compress(b"\0" * (100 << 20), 9)
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        img = decode(_png_chunks(64, 64, bomb))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert img.shape == (64, 64, 3) and not img.any()
    assert peak < 8 << 20, f"decoding took {peak} bytes"


def test_png_header_above_the_tensor_limit_is_refused_before_inflating():
    from ember import limits
    from ember.errors import RuntimeLimitError

    data = _png_chunks(100_000, 100_000, zlib.compress(b"\0" * 1000))
    with limits.using({"tensor_bytes": "64M"}):
        with pytest.raises(RuntimeLimitError, match=r"\[E304\] image_decode: a 100000 x 100000 PNG image"):
            decode(data)


def test_grayscale_is_rounded_luma():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    want = np.array([[[76], [150], [29], [124]]], np.uint8)   # (R 19595 + G 38470 + B 7471 + 2^15) >> 16
    np.testing.assert_array_equal(decode(pnm(px), "Grayscale"), want)


@pytest.mark.parametrize("data, match", [
    (b"\xff\xd8\xff\xe0" + b"\0" * 40, "JPEG images are not supported"),
    (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 40, "WebP images are not supported"),
    (b"hello, world" * 5, "unknown images are not supported"),
    (bmp(IMAGE)[:60], "truncated BMP"),
    (png(IMAGE)[:40], "PNG"),
])
def test_unsupported_or_damaged_data_is_an_ember_error(data, match):
    with pytest.raises(EmberRuntimeError, match=match):
        decode(data)


def test_type_rule():
    op = get_op("image_decode")
    a = op.fill_attrs({"pixel_format": "Grayscale", "height": "h", "width": "w"})
    (t,) = op.infer_types(a, [TensorType((100,), "uint8")])
    assert str(t) == "uint8[h, w, 1]"
    with pytest.raises(TypeInferenceError, match="1-D uint8"):
        op.infer_types(a, [TensorType((2, 3), "uint8")])
    with pytest.raises(TypeInferenceError, match="pixel_format"):
        op.infer_types(op.fill_attrs({"pixel_format": "CMYK", "height": "h", "width": "w"}), [TensorType((9,), "uint8")])


def test_onnx_image_decoder_compiles_to_a_program():
    data = np.frombuffer(png(IMAGE), np.uint8)
    node = helper.make_node("ImageDecoder", ["x"], ["y"], pixel_format="BGR")
    graph = helper.make_graph([node], "decode", [helper.make_tensor_value_info("x", TensorProto.UINT8, [len(data)])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, ["h", "w", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.checker.check_model(model)
    module = ember.compile(model, cache=False)
    np.testing.assert_array_equal(module(data), IMAGE[:, :, ::-1])

"""Host kernel of ONNX ImageDecoder: encoded bytes -> [H, W, C] uint8 pixels.

The lossless formats whose layout is fully specified are decoded here with numpy and zlib:
BMP (uncompressed 24- and 32-bit, and 8-bit palette), PNG (8-bit gray, gray+alpha, RGB, RGBA
and palette, non-interlaced, all five filters, undone with array arithmetic; the data is
inflated only up to the size the header declares, which the resource policy
``ember.limits`` bounds before anything is inflated), binary PNM (P5 gray, P6 RGB, 8-bit) and
baseline TIFF (uncompressed strips, 8-bit gray or RGB(A), chunky).  Formats that need a real
codec (JPEG, JPEG 2000, WebP) raise an error naming the format.  The result is converted to
the node's ``pixel_format``: RGB, BGR, or Grayscale (ITU-R 601 luma with the integer rounding of
the usual imaging libraries).
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping

import numpy as np

from ... import limits
from ...errors import EmberRuntimeError
from . import kernel

PIXEL_FORMATS = ("RGB", "BGR", "Grayscale")


def _fail(msg: str) -> EmberRuntimeError:
    return EmberRuntimeError(f"ImageDecoder: {msg}")


def _bmp(data: bytes) -> np.ndarray:
    if len(data) < 54:
        raise _fail("truncated BMP header")
    offset = struct.unpack_from("<I", data, 10)[0]
    header = struct.unpack_from("<I", data, 14)[0]
    width, height, _, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
    if compression not in (0, 3) or bpp not in (8, 24, 32):
        raise _fail(f"BMP with {bpp} bits per pixel and compression {compression} is not supported")
    flip = height > 0
    height = abs(height)
    row = ((width * bpp + 31) // 32) * 4
    need = offset + row * height
    if len(data) < need:
        raise _fail("truncated BMP pixel data")
    rows = np.frombuffer(data, np.uint8, row * height, offset).reshape(height, row)
    if bpp == 8:
        colors = struct.unpack_from("<I", data, 46)[0] or 256
        table = np.frombuffer(data, np.uint8, colors * 4, 14 + header).reshape(colors, 4)
        img = table[rows[:, :width]][:, :, 2::-1]
    else:
        px = rows[:, :width * (bpp // 8)].reshape(height, width, bpp // 8)
        img = px[:, :, 2::-1]                       # BGR(A) -> RGB
    return np.ascontiguousarray(img[::-1] if flip else img)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """PNG's Paeth predictor of left ``a``, up ``b`` and up-left ``c`` (integer arrays)."""
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter_rows(filters: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Undo filters None, Sub and Up ([H] filter types, [H, W, C] filtered bytes), one row at
    a time: Sub is a running sum along the row, Up a sum with the row above."""
    out = np.empty(data.shape, np.uint8)
    prev = np.zeros(data.shape[1:], np.uint8)
    for y, kind in enumerate(filters):
        line = data[y]
        if kind == 0:
            out[y] = line
        elif kind == 1:
            out[y] = np.cumsum(line, axis=0, dtype=np.uint32) & 0xFF
        else:
            out[y] = line + prev               # uint8: wraps modulo 256
        prev = out[y]
    return out


def _unfilter_wavefront(filters: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Undo any mix of the five filters ([H] types, [H, W, C] filtered bytes).  Pixel (y, x)
    depends on its left, upper and upper-left neighbours only, so every pixel of one
    anti-diagonal y + x = d is decoded at once from the two diagonals before it: H + W - 1
    steps of array arithmetic instead of a step per byte."""
    h, w, c = data.shape
    out = np.zeros((h + 1, w + 1, c), np.int32)    # a zero row above and a zero column left
    raw = data.astype(np.int32)
    kinds = filters.astype(np.int32)[:, None]
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(d, h - 1) + 1)
        x = d - y
        left, up, up_left = out[y + 1, x], out[y, x + 1], out[y, x]
        k = kinds[y]
        pred = np.where(k == 1, left, np.where(k == 2, up, np.where(k == 3, (left + up) >> 1,
                        np.where(k == 4, _paeth(left, up, up_left), 0))))
        out[y + 1, x + 1] = (raw[y, x] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def _png(data: bytes) -> np.ndarray:
    pos, idat, palette, header = 8, [], None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise _fail("PNG without an IHDR chunk")
    width, height, depth, color, _, _, interlace = header
    if width < 1 or height < 1:
        raise _fail(f"PNG of {width} x {height} pixels (the format needs at least 1 x 1)")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise _fail(f"PNG with bit depth {depth}, color type {color}, interlace {interlace} is not supported")
    stride = width * channels
    expected = height * (stride + 1)              # the filtered rows the header declares
    # the decoded pixels (and the int32 work arrays of the filters) within the resource policy,
    # checked before inflating: a small file may inflate to gigabytes
    limits.check_tensor(height * width * max(channels, 3) * 4, f"a {width} x {height} PNG image",
                        runtime=True, op="image_decode")
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)   # never past the header's size
    except zlib.error as e:
        raise _fail(f"corrupt PNG image data ({e})") from None
    if len(raw) < expected:
        raise _fail("truncated PNG image data")
    lines = np.frombuffer(raw, np.uint8, expected).reshape(height, stride + 1)
    filters = lines[:, 0]
    bad = np.flatnonzero(filters > 4)
    if bad.size:
        raise _fail(f"PNG row {bad[0]} has unknown filter {filters[bad[0]]}")
    pixels = lines[:, 1:].reshape(height, width, channels)
    if np.any(filters >= 3):
        img = _unfilter_wavefront(filters, pixels)
    else:
        img = _unfilter_rows(filters, pixels)
    if color == 3:
        if palette is None:
            raise _fail("palette PNG without a PLTE chunk")
        img = palette[img[:, :, 0]]
    return img


def _pnm(data: bytes) -> np.ndarray:
    fields, pos = [], 2
    while len(fields) < 3:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise _fail("truncated PNM header")
        fields.append(int(data[start:pos]))
    width, height, maxval = fields
    if width < 1 or height < 1 or not 1 <= maxval:
        raise _fail(f"PNM of {width} x {height} pixels with maxval {maxval} (the format needs at least 1 x 1 "
                    f"and a maxval from 1)")
    channels = 3 if data[:2] == b"P6" else 1
    if maxval > 255:
        raise _fail("16-bit PNM is not supported")
    n = width * height * channels
    px = np.frombuffer(data, np.uint8, n, pos + 1).reshape(height, width, channels)
    return px if maxval == 255 else (px.astype(np.uint16) * 255 // maxval).astype(np.uint8)


def _tiff(data: bytes) -> np.ndarray:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8}
    tags: dict[int, list[int]] = {}
    for k in range(count):
        tag, kind, n, value = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * k)
        size = sizes.get(kind, 1) * n
        raw = value if size <= 4 else data[struct.unpack(order + "I", value)[0]:][:size]
        fmt = {1: "B", 3: "H", 4: "I"}.get(kind)
        tags[tag] = list(struct.unpack(order + fmt * n, raw[:struct.calcsize(fmt) * n])) if fmt else []
    width, height = tags[256][0], tags[257][0]
    bits = tags.get(258, [1])
    compression = tags.get(259, [1])[0]
    channels = tags.get(277, [1])[0]
    if compression != 1 or any(b != 8 for b in bits) or tags.get(284, [1])[0] != 1:
        raise _fail(f"TIFF with compression {compression} and {bits} bits per sample is not supported")
    strips = b"".join(data[o:o + c] for o, c in zip(tags[273], tags[279]))
    need = width * height * channels
    if len(strips) < need:
        raise _fail("truncated TIFF strips")
    return np.frombuffer(strips, np.uint8, need).reshape(height, width, channels)


def _format(data: bytes) -> str:
    if data[:2] == b"BM":
        return "bmp"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] in (b"P5", b"P6"):
        return "pnm"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xffO\xffQ":
        return "JPEG 2000"
    return "unknown"


DECODERS = {"bmp": _bmp, "png": _png, "pnm": _pnm, "tiff": _tiff}


@kernel("image_decode")
def image_decode(a: Mapping, x: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(x, np.uint8).tobytes()
    fmt = _format(data)
    if fmt not in DECODERS:
        raise _fail(f"{fmt} images are not supported (this runtime decodes BMP, PNG, PNM and TIFF)")
    try:
        img = DECODERS[fmt](data)
    except (struct.error, KeyError, IndexError, ValueError) as e:
        raise _fail(f"malformed {fmt.upper()} data ({type(e).__name__}: {e})") from None
    if img.shape[2] in (2, 4):                     # alpha is dropped
        img = img[:, :, :img.shape[2] - 1]
    if img.shape[2] == 1 and a["pixel_format"] != "Grayscale":
        img = np.repeat(img, 3, axis=2)
    if a["pixel_format"] == "BGR":
        return np.ascontiguousarray(img[:, :, ::-1])
    if a["pixel_format"] == "Grayscale" and img.shape[2] == 3:
        rgb = img.astype(np.uint32)
        luma = (rgb[:, :, 0] * 19595 + rgb[:, :, 1] * 38470 + rgb[:, :, 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)[:, :, None]
    return np.ascontiguousarray(img)

"""Host kernel of ONNX ImageDecoder: encoded bytes -> [H, W, C] uint8 pixels.

The lossless formats whose layout is fully specified are decoded here with numpy and zlib:
BMP (uncompressed 24- and 32-bit, and 8-bit palette), PNG (8-bit gray, gray+alpha, RGB, RGBA
and palette, non-interlaced, all five filters), binary PNM (P5 gray, P6 RGB, 8-bit) and
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


def _paeth(a: int, b: int, c: int) -> int:
    """PNG's Paeth predictor of left ``a``, up ``b`` and up-left ``c``."""
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


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
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise _fail(f"PNG with bit depth {depth}, color type {color}, interlace {interlace} is not supported")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise _fail(f"corrupt PNG image data ({e})") from None
    stride = width * channels
    if len(raw) < height * (stride + 1):
        raise _fail("truncated PNG image data")
    lines = np.frombuffer(raw, np.uint8, height * (stride + 1)).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    bpp = channels
    for y in range(height):
        kind, line = lines[y, 0], lines[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:                       # Sub: a running sum along each channel
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint32) & 0xFF).astype(np.uint8).reshape(-1)
        elif kind == 2:
            cur = (line + prev).astype(np.uint8)
        elif kind in (3, 4):
            cur = line.copy()
            for x in range(stride):           # each byte depends on the one bpp to its left
                left = int(cur[x - bpp]) if x >= bpp else 0
                if kind == 3:
                    pred = (left + int(prev[x])) >> 1
                else:
                    up_left = int(prev[x - bpp]) if x >= bpp else 0
                    pred = _paeth(left, int(prev[x]), up_left)
                cur[x] = (int(line[x]) + pred) & 0xFF
        else:
            raise _fail(f"PNG row {y} has unknown filter {kind}")
        out[y] = cur
        prev = cur
    img = out.reshape(height, width, channels)
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

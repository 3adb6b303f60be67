"""Encoded images for the ImageDecoder cases: small valid PNGs, damaged ones, and a
decompression bomb (a few MB that inflate to gigabytes)."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


def png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` [H, W, 3] (filter 0 on every row)."""
    hgt, wid, _ = pixels.shape
    raw = b"".join(b"\0" + pixels[r].tobytes() for r in range(hgt))
    return png_from(wid, hgt, 2, zlib.compress(raw))


def png_from(width: int, height: int, color_type: int, idat: bytes, ihdr_crc: int | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr, ihdr_crc) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def zeros_stream(total: int, piece: int = 1 << 24) -> bytes:
    """A zlib stream that inflates to ``total`` zero bytes (a multiple of ``piece``), built from
    one compressed piece repeated: each piece ends at a full flush, so it decodes on its own."""
    assert total % piece == 0
    zeros = bytes(piece)
    c = zlib.compressobj(9)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    n = total // piece
    adler = ((total % 65521) << 16) | 1     # Adler-32 of zeros: a stays 1, b counts the bytes
    # a final fixed-Huffman block holding only its end code, then the checksum
    return first + again * (n - 1) + b"\x03\x00" + struct.pack(">I", adler)


def png_bomb(width: int = 65535, rows: int = 65280) -> bytes:
    """A grayscale PNG of ``width`` x ``rows`` zero pixels: ~4 MB that inflate to ~4.3 GB."""
    line = width + 1
    piece = line * 256
    return png_from(width, rows, 0, zeros_stream(line * rows, piece))


def png_palette(indices: np.ndarray, palette: bytes | None) -> bytes:
    """An 8-bit palette PNG (color type 3) of ``indices`` [H, W]; no PLTE chunk when None."""
    hgt, wid = indices.shape
    raw = b"".join(b"\0" + indices[r].astype(np.uint8).tobytes() for r in range(hgt))
    ihdr = struct.pack(">IIBBBBB", wid, hgt, 8, 3, 0, 0, 0)
    plte = chunk(b"PLTE", palette) if palette is not None else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def bmp_header(width: int, height: int, bpp: int = 24, data: bytes = b"", colors: int = 0) -> bytes:
    """A BMP file header and BITMAPINFOHEADER declaring the given size, then ``data``."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, len(data), 2835, 2835, colors, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + 40 + len(data), 0, 0, 54)
    return head + info + data


def tiff(width: int, height: int, strip_offset: int | None = None, pixels: bytes = b"") -> bytes:
    """A little-endian baseline RGB TIFF with one strip (at ``strip_offset`` if given)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 0), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, min(width * height * 3, 0xFFFFFFFF))]
    ifd_size = 2 + 12 * len(entries) + 4
    data_at = 8 + ifd_size
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_at if strip_offset is None else strip_offset
        out += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    out += struct.pack("<I", 0)
    return bytes(out) + pixels

"""Small hostile pictures, made on the spot: each is valid (or nearly) and cheap to send, and would cost the
server far more than its size to decode. Used by tests/test_hostile.py and bench/hostile.py."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def many_scan_jpeg(scans: int = 20000, side: int = 1024) -> bytes:
    """A progressive JPEG of a flat picture whose last (refinement) scan, a few bytes, is repeated: libjpeg
    goes over the whole picture again for every scan."""
    data = _save(Image.new("RGB", (side, side), (90, 120, 150)), "JPEG", progressive=True, quality=90)
    last = data.rfind(b"\xff\xda")
    scan = data[last:-2]  # the last scan up to (not including) EOI
    return data[:-2] + scan * scans + b"\xff\xd9"


def deep_png(side: int = 6000) -> bytes:
    """A flat 16-bit greyscale PNG: tens of KB on the wire, 2 bytes a pixel decoded and more to convert."""
    return _save(Image.fromarray(np.zeros((side, side), np.uint16)), "PNG")


def palette_alpha_png(side: int = 6000) -> bytes:
    """A palette PNG with transparency: a naive RGBA conversion takes 4 bytes a pixel, twice over."""
    im = Image.new("P", (side, side))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return _save(im, "PNG", transparency=0)


def huge_canvas_webp(side: int = 4500) -> bytes:
    """An animated WebP of two flat frames on a large canvas (a few hundred bytes)."""
    frames = [Image.new("RGBA", (side, side), (0, 0, 0, 0)), Image.new("RGBA", (side, side), (255, 0, 0, 255))]
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)


def rle_bmp(width: int = 3000, height: int = 3000) -> bytes:
    """An 8-bit RLE BMP whose rows are runs of one colour: tiny, and decoded by Pillow in Python."""
    row = b"".join(bytes([255, 1]) for _ in range(width // 255)) + bytes([width % 255, 1]) + b"\x00\x00"
    pixels = row * height + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + palette + pixels


def mistyped_exif_jpeg() -> bytes:
    """A normal photo whose EXIF orientation tag is stored as text ("6") instead of a number."""
    rng = np.random.default_rng(1)
    # a little-endian TIFF header with one IFD entry: tag 0x0112, type 2 (ASCII), count 2, value "6\0"
    ifd = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHI4s", 0x0112, 2, 2, b"6\x00\x00\x00")
    ifd += struct.pack("<I", 0)
    return _save(Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), "JPEG",
                 exif=b"Exif\x00\x00" + ifd)


HOSTILE = {
    "many_scan_jpeg": many_scan_jpeg,
    "deep_png": deep_png,
    "palette_alpha_png": palette_alpha_png,
    "huge_canvas_webp": huge_canvas_webp,
    "rle_bmp": rle_bmp,
}

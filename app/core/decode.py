"""Decoding untrusted picture bytes within a budget: the cost is estimated from the header before any
pixel is decoded, and a picture over the budget is refused with a message that says why.

What is estimated, from the header alone:
- memory: decoded pixels (after JPEG's DCT scaling, :meth:`PIL.Image.Image.draft`, to the size that will
  be stored) times the bytes per pixel that decoding and the conversion to 8-bit RGB hold at their peak;
- JPEG scans: a progressive JPEG is decoded once per scan, so its cost grows with the scan count, which is
  read by walking the file's markers;
- pure-Python decoders: Pillow decodes RLE-compressed BMPs in Python, whose cost per pixel is far higher;
- HEIC/HEIF (libheif, through pillow-heif) and AVIF (libavif, Pillow's own plugin): the pixels are decoded
  to planes of luma and chroma (up to 16 bits a sample) and then converted to RGB beside them, so each
  pixel counts those planes on top of the decoded and converted picture.

Only the first frame of an animation is decoded, orientation is read from EXIF without trusting the rest
of it (a mistyped tag is ignored), and only the accepted formats' parsers ever see the bytes.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

ImageFile.LOAD_TRUNCATED_IMAGES = False
ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF",
                    "HEIF": "HEIC", "AVIF": "AVIF"}
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "HEIF", "AVIF")  # Pillow openers (MPO files open as JPEG)
FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF, HEIC or AVIF"  # what the refusals ask for
# HEIC and AVIF: luma and chroma planes (4:4:4 at up to 16 bits, alpha plane included) beside the picture
_YUV_PLANE_BPP = 8


def register_heif() -> None:
    """Register pillow-heif's HEIF opener with Pillow: the primary image only (no thumbnails, depth or
    auxiliary images), one decoding thread (the decoder worker's CPU ceiling counts every thread), and
    libheif's own security limits kept. Every process that decodes uploads calls this (it is idempotent)."""
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False, decode_threads=1)


register_heif()
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}
# Peak bytes per decoded pixel while decoding and converting to 8-bit RGB, by the file's mode.
_PEAK_BPP = {"1": 4, "L": 4, "P": 4, "PA": 8, "LA": 8, "RGB": 3, "YCbCr": 6, "RGBA": 8, "RGBa": 8, "CMYK": 7,
             "I;16": 8, "I;16B": 8, "I;16L": 8, "I;16N": 8, "I": 12, "F": 12}


class ImageError(ValueError):
    """An upload that cannot be used; ``code`` names the problem, the message says what to do."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str, int]]:  # it crosses the decoder's pipe
        return ImageError, (self.code, str(self), self.status)


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost. ``target_side``: the side the picture is scaled down to after decoding
    (JPEGs are decoded directly at the smallest DCT scale that is still at least that large)."""

    max_pixels: int
    max_side: int
    target_side: int | None = None
    memory_bytes: int = 192 * 1024 * 1024
    max_scans: int = 64
    max_python_pixels: int = 2_000_000


@dataclass(frozen=True)
class Header:
    """What the header says about the work of decoding."""

    format: str
    size: tuple[int, int]
    mode: str
    frames: int
    scans: int  # JPEG scans (1 for a baseline JPEG and every other format)
    python_decoder: bool  # decoded by Pillow's pure-Python code (RLE BMP)
    decoded_size: tuple[int, int]  # after JPEG's DCT scaling
    peak_bytes: int


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: upright RGB pixels plus what was found in the file."""

    image: Image.Image
    format: str
    original_size: tuple[int, int]
    frames: int


def jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS markers) of a JPEG, found by walking its markers and entropy-coded data."""
    n, i, end = 0, 2, len(data)
    while i + 4 <= end:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers, TEM: no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
        if marker == 0xDA:  # start of scan: skip its entropy-coded data up to the next real marker
            n += 1
            while i + 1 < end:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= end:
                    return n
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    i = j + (1 if nxt == 0xFF else 2)
                    continue
                i = j
                break
    return n


# Picture formats recognised by their first bytes only, to name them in the refusal (never parsed).
_OTHER_PICTURES = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"8BPS", "PSD"), (b"SIMPLE  =", "FITS"),
                   (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"), (b"icns", "ICNS"))


def _other_format(data: bytes) -> str | None:
    for magic, name in _OTHER_PICTURES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:11] in (b"qt ", b"iso", b"mp4", b"M4V", b"crx"):
        return "video or camera RAW"
    return None


def _open(data: bytes, limits: DecodeLimits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_many_pixels", f"The image declares more than {limits.max_pixels:,} pixels. "
                         "Resize it and upload it again.", 413) from None
    except Exception:  # Pillow raises many types for garbage, and for formats we do not accept
        other = _other_format(data)
        if other is not None:
            raise ImageError("unsupported_format", f"{other} images are not accepted. Upload a {FORMAT_NAMES} "
                             "file.", 415) from None
        raise ImageError("not_an_image", f"This file is not an image we can read. Upload a {FORMAT_NAMES} "
                         "file.", 415) from None


def inspect(im: Image.Image, data: bytes, limits: DecodeLimits) -> Header:
    """Read the cost of decoding ``im`` (opened, not loaded) from its header; checks the size limits."""
    fmt = ACCEPTED_FORMATS.get(im.format or "")
    if fmt is None:
        raise ImageError("unsupported_format", f"{im.format} images are not accepted. Upload a {FORMAT_NAMES} "
                         "file.", 415)
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError("not_an_image", "The image has no pixels. Upload another file.", 415)
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise ImageError("too_many_pixels", f"The image is {w}x{h} pixels; the limit is {limits.max_side} pixels "
                         f"a side and {limits.max_pixels:,} pixels in all. Resize it and upload it again.", 413)
    frames = int(getattr(im, "n_frames", 1) or 1)  # a GIF's frames are counted by skipping their data
    scans = jpeg_scans(data) if fmt == "JPEG" else 1
    python_decoder = fmt == "BMP" and im.info.get("compression", 0) in (1, 2)  # BI_RLE8, BI_RLE4
    dw, dh = w, h
    if fmt == "JPEG" and limits.target_side:
        scale = 1
        while scale < 8 and min(w, h) // (scale * 2) >= limits.target_side:
            scale *= 2
        dw, dh = -(-w // scale), -(-h // scale)
    bpp = _PEAK_BPP.get(im.mode, 8)
    if fmt == "WebP" and frames > 1:
        bpp += 4  # the animation's canvas beside the frame
    if fmt in ("HEIC", "AVIF"):
        bpp = 2 * len(im.getbands()) * (2 if im.mode.startswith("I;16") else 1) + _YUV_PLANE_BPP
    return Header(fmt, (w, h), im.mode, frames, scans, python_decoder, (dw, dh), dw * dh * bpp)


def check_budget(head: Header, limits: DecodeLimits) -> None:
    """Refuse (422 ``too_costly``) a picture whose decoding would cost more than the limits allow."""
    mb = 1024 * 1024
    if head.peak_bytes > limits.memory_bytes:
        raise ImageError("too_costly", f"Decoding this {head.size[0]}x{head.size[1]} {head.format} ({head.mode}) "
                         f"would take about {head.peak_bytes // mb} MB of memory; the limit is "
                         f"{limits.memory_bytes // mb} MB. Resize it or save it as an 8-bit RGB JPEG or PNG.", 422)
    if head.scans > limits.max_scans:
        raise ImageError("too_costly", f"This JPEG has {head.scans} scans; at most {limits.max_scans} are decoded. "
                         "Save it again as a baseline (not progressive) JPEG and upload it again.", 422)
    pixels = head.size[0] * head.size[1]
    if head.python_decoder and pixels > limits.max_python_pixels:
        raise ImageError("too_costly", f"RLE-compressed BMP files are decoded slowly; this one has {pixels:,} pixels "
                         f"and the limit for them is {limits.max_python_pixels:,}. Save it as PNG and upload it again.",
                         422)


def orientation_of(im: Image.Image) -> int:
    """The EXIF orientation (1-8), or 1 when it is missing or not a number (a mistyped tag is ignored)."""
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # unreadable EXIF: the picture itself may be fine
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def decode_image(data: bytes, *, max_pixels: int, max_side: int, target_side: int | None = None,
                 memory_bytes: int = DecodeLimits.memory_bytes, max_scans: int = DecodeLimits.max_scans,
                 max_python_pixels: int = DecodeLimits.max_python_pixels, check: bool = True) -> DecodedImage:
    """Decode untrusted bytes into an upright RGB image, or raise :class:`ImageError`.

    The header is checked against the limits before decoding (size, memory, scans, slow decoders; ``check``
    False skips the cost checks, for the worker's own ceiling to be tested); then the first frame is decoded
    fully (truncated files fail here, not later), turned upright, and mapped to 8-bit RGB (alpha flattened on
    white; CMYK, 16-bit, palette and 1-bit converted). With ``target_side`` a JPEG may be decoded smaller,
    never below that side.
    """
    if not data:
        raise ImageError("empty", "The file is empty (0 bytes). Choose a photo file and upload it again.")
    limits = DecodeLimits(max_pixels, max_side, target_side, memory_bytes, max_scans, max_python_pixels)
    im = _open(data, limits)
    head = inspect(im, data, limits)
    if check:
        check_budget(head, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.seek(0)
            if head.decoded_size != head.size:
                im.draft("RGB", head.decoded_size)
            orientation = orientation_of(im)
            im.load()
            rgb = to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_many_pixels", "The image is too large to decode. Resize it and upload it again.",
                         413) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error):
        raise ImageError("truncated", "The image file is damaged or incomplete (truncated). "
                         "Save or export it again and upload the new file.") from None
    if orientation in _ORIENTATION:
        rgb = rgb.transpose(_ORIENTATION[orientation])
    return DecodedImage(image=rgb, format=head.format, original_size=head.size, frames=head.frames)


def limit_side(im: Image.Image, side: int) -> Image.Image:
    """Scale an image down (never up) so that its longer side is at most ``side``."""
    if max(im.size) <= side:
        return im
    s = side / max(im.size)
    return im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB with little memory beside the picture; transparency is flattened on
    white, 16- and 32-bit pictures are rescaled."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(im).astype(np.uint16, copy=False)
        return Image.fromarray((a >> 8).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = (0.0, max(1.0, float(a.max()))) if im.mode == "I" else (float(a.min()), float(a.max()))
        a -= lo
        a *= 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        return _flatten_palette(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im if im.mode == "RGB" else im.convert("RGB")


def _flatten_palette(im: Image.Image) -> Image.Image:
    """A palette picture with transparency -> RGB on white, by blending the palette (256 entries), not
    the pixels: no RGBA copy of the picture is made."""
    pal = np.array(im.getpalette("RGB") or [], dtype=np.float32).reshape(-1, 3)
    pal = np.vstack([pal, np.zeros((256 - len(pal), 3), np.float32)]) if len(pal) < 256 else pal[:256]
    alpha = np.full(256, 255.0, np.float32)
    trans = im.info.get("transparency")
    if isinstance(trans, int):
        alpha[trans] = 0.0
    elif isinstance(trans, bytes | bytearray):
        alpha[:len(trans)] = np.frombuffer(bytes(trans[:256]), np.uint8)
    a = (alpha / 255.0)[:, None]
    flat = (pal * a + 255.0 * (1 - a) + 0.5).clip(0, 255).astype(np.uint8)
    out = im.copy() if im.readonly else im
    out.info.pop("transparency", None)
    out.putpalette(flat.tobytes(), "RGB")
    return out.convert("RGB")

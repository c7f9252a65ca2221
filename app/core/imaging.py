"""Images out: colormaps, mosaics, PNG encoding and web-sized WebP photos (decoding untrusted uploads is :mod:`app.core.decode`).

This is the only module that turns tensors into picture bytes. Colormap: viridis (perceptually
uniform, readable by people with the common colour-vision deficiencies and in greyscale), evaluated
with a published 6th-order polynomial fit, so no plotting library is needed.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib

import numpy as np
import torch
from PIL import Image

_VIRIDIS = np.array([
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
])


def _viridis_lut() -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)[:, None]
    rgb = np.zeros((256, 3))
    for c in _VIRIDIS[::-1]:
        rgb = rgb * t + c
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


VIRIDIS_LUT = _viridis_lut()

# Viridis maps are drawn as palette ("P") images: one byte per pixel instead of three, which makes the
# PNG encoder ~6x faster and the files ~3x smaller than RGB. Indices 0..254 are viridis (its two
# ends kept exactly), index 255 is the white background between tiles.
VIRIDIS_STEPS = 255
BACKGROUND_INDEX = 255
VIRIDIS_PALETTE = np.vstack([VIRIDIS_LUT[np.round(np.linspace(0, 255, VIRIDIS_STEPS)).astype(int)],
                             [[255, 255, 255]]]).astype(np.uint8)
_PALETTE_BYTES = VIRIDIS_PALETTE.tobytes()


def png_bytes(im: Image.Image, compress_level: int = 1) -> bytes:
    """Encode as PNG with no metadata.

    zlib level 1 by default: under the load bench PNG encoding (stored uploads, activation grids)
    was the largest single cost of the server (22 % of its busy samples); level 1 encodes a 160x120
    photo in 1.6 ms instead of 2.3 ms (level 3) for a file 2 % larger. Level 0 (not deflated), used
    for stored uploads, is written by :func:`stored_png` for 8-bit grey, RGB and RGBA pictures.
    """
    if compress_level == 0 and im.mode in _PNG_COLOR_TYPES:
        return stored_png(im)
    if compress_level < 0 and im.mode in _PNG_COLOR_TYPES:
        return stored_png(im, deflate_when_it_pays=True)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=compress_level)
    return buf.getvalue()


_PNG_COLOR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}


def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI (inline in a page or a JSON answer)."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def stored_png(im: Image.Image, *, deflate_when_it_pays: bool = False) -> bytes:
    """A PNG whose pixel rows are neither filtered nor deflated (zlib "stored" blocks); with
    ``deflate_when_it_pays`` they are deflated (zlib level 1) when a sample of
    every 16th row shrinks to less than half: flat or drawn pictures then take a few KB, while photos,
    which unfiltered deflate barely shrinks, are written as fast as before.

    Pillow's encoder picks a filter for every row by trying all five, even at level 0: that search
    was most of the cost of storing an upload (a 640x480 photo: 18.6 ms with Pillow, 2.5 ms here),
    and unfiltered rows decode ~7x faster too. The file is the same size as Pillow's level 0 one;
    any PNG reader reads it (chunk CRCs and the zlib checksum are written).
    """
    a = np.asarray(im)
    h, w = im.height, im.width
    rows = np.zeros((h, 1 + a[0].size if h else 1), dtype=np.uint8)  # a 0 byte (filter None) per row
    rows[:, 1:] = a.reshape(h, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOR_TYPES[im.mode], 0, 0, 0)
    raw = rows.tobytes()
    data = zlib.compress(raw, 0)
    if deflate_when_it_pays:
        sample = rows[::16].tobytes()
        if len(zlib.compress(sample, 1)) < len(sample) // 2:
            data = zlib.compress(raw, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def fit_size(width: int, height: int, max_w: int, max_h: int, min_short: int = 0) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` picture scaled to fit ``max_w`` x ``max_h`` (never enlarged),
    or larger where needed for its shorter side to reach ``min_short`` (a thumbnail that a square cell crops)."""
    scale = min(1.0, max_w / max(1, width), max_h / max(1, height))
    if min_short:
        scale = min(1.0, max(scale, min_short / max(1, min(width, height))))
    return max(1, round(width * scale)), max(1, round(height * scale))


def web_bytes(im: Image.Image, size: tuple[int, int], quality: int = 80) -> bytes:
    """A photo for the web: resized to ``size`` (Lanczos, in 8-bit RGB) and encoded as lossy WebP with no
    metadata; at quality 80 a 640-pixel photo takes a tenth of its PNG's bytes and looks the same."""
    if im.mode != "RGB":
        im = im.convert("RGB")
    if im.size != size:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    im.save(buf, format="WEBP", quality=quality, method=4)
    return buf.getvalue()


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    """JPEG with full-resolution colour (4:4:4, no chroma subsampling): thin coloured lines, such as a filter's
    edges drawn with viridis, keep their colour, which WebP's and the usual JPEG's half-resolution colour lose."""
    buf = io.BytesIO()
    im.convert("RGB" if im.mode not in ("RGB", "L") else im.mode).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def colorize(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB through viridis (shape + (3,))."""
    idx = np.clip(np.nan_to_num(x) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return VIRIDIS_LUT[idx]


def viridis_indices(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> palette indices 0..254 of :data:`VIRIDIS_PALETTE` (NaN -> 0)."""
    y = np.nan_to_num(np.asarray(x, dtype=np.float32) * np.float32(VIRIDIS_STEPS - 1) + np.float32(0.5))
    return np.clip(y, 0, VIRIDIS_STEPS - 1, out=y).astype(np.uint8)


def channel_indices(act: torch.Tensor) -> np.ndarray:
    """(C, H, W) activation -> uint8 palette indices, each channel scaled by its own min and max.

    The same scaling as :func:`normalize_channels` (a flat channel is all 0), in NumPy on float32.
    """
    a = act.detach().float().cpu().reshape(act.shape[0], -1).numpy()
    lo = a.min(1, keepdims=True)
    span = a.max(1, keepdims=True) - lo
    inv = np.where(span > 1e-12, np.float32(1) / np.maximum(span, np.float32(1e-12)), np.float32(0))
    return viridis_indices((a - lo) * inv).reshape(act.shape)


def palette_image(indices: np.ndarray) -> Image.Image:
    """A 2-D array of :data:`VIRIDIS_PALETTE` indices as a "P" image with that palette."""
    a = np.ascontiguousarray(indices, dtype=np.uint8)
    im = Image.frombytes("P", (a.shape[1], a.shape[0]), a.tobytes())
    im.putpalette(_PALETTE_BYTES)
    return im


def channel_ranges(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (min, max) of a (C, H, W) activation."""
    flat = act.detach().float().reshape(act.shape[0], -1).numpy()  # NumPy: far faster than torch's min(dim)
    return torch.from_numpy(flat.min(1)), torch.from_numpy(flat.max(1))


def normalize_channels(act: torch.Tensor) -> np.ndarray:
    """Scale each channel of (C, H, W) to [0, 1] by its own min and max (flat channels -> 0)."""
    lo, hi = channel_ranges(act)
    span = (hi - lo).clamp(min=1e-12)
    out = (act - lo[:, None, None]) / span[:, None, None]
    out[(hi - lo) <= 1e-12] = 0.0
    return out.float().numpy()


def grid_shape(n: int, aspect: float = 1.0) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles, roughly square."""
    cols = max(1, math.ceil(math.sqrt(n * aspect)))
    return math.ceil(n / cols), cols


def mosaic(tiles: np.ndarray, cols: int | None = None, scale: int = 1, pad: int = 1,
           background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Tile images into one, each tile enlarged ``scale``x (nearest), ``pad`` pixels between and around.

    ``tiles`` is (N, h, w, 3) uint8 RGB (an RGB image on ``background``) or (N, h, w) palette indices
    of :data:`VIRIDIS_PALETTE` (a "P" image on its white background index).
    """
    indexed = tiles.ndim == 3
    n, h, w = tiles.shape[:3]
    if cols is None:
        _, cols = grid_shape(n)
    cols = max(1, cols)
    rows = math.ceil(n / cols)
    if scale > 1:
        tiles = tiles.repeat(scale, 1).repeat(scale, 2)
    th, tw = h * scale, w * scale
    extra = tiles.shape[3:]
    bg = np.uint8(BACKGROUND_INDEX) if indexed else np.asarray(background, dtype=np.uint8)
    # cells of (pad + tile) with the padding at their top and left, then one more pad at the end
    cells = np.empty((rows * cols, th + pad, tw + pad, *extra), dtype=np.uint8)
    cells[:] = bg
    cells[:n, pad:, pad:] = tiles
    out = np.empty((rows * (th + pad) + pad, cols * (tw + pad) + pad, *extra), dtype=np.uint8)
    out[:] = bg
    out[:rows * (th + pad), :cols * (tw + pad)] = (
        cells.reshape(rows, cols, th + pad, tw + pad, *extra).swapaxes(1, 2)
        .reshape(rows * (th + pad), cols * (tw + pad), *extra))
    return palette_image(out) if indexed else Image.fromarray(out, "RGB")


def tile_scale(h: int, w: int, target: int = 64) -> int:
    """Integer nearest-neighbour enlargement that brings a small map near ``target`` pixels."""
    return max(1, min(16, target // max(1, max(h, w))))


def activation_grid(act: torch.Tensor, cols: int | None = None, target: int = 64) -> Image.Image:
    """(C, H, W) activation -> a mosaic with one viridis tile per channel, each scaled on its own."""
    if act.dim() == 1:
        act = act[:, None, None]
    return mosaic(channel_indices(act), cols=cols, scale=tile_scale(act.shape[1], act.shape[2], target))


def channel_image(act2d: torch.Tensor, target: int = 256) -> Image.Image:
    """One (H, W) map -> an enlarged viridis image, scaled to its own min and max."""
    return mosaic(channel_indices(act2d[None]), cols=1, scale=tile_scale(*act2d.shape, target=target), pad=0)


def vector_image(v: torch.Tensor, cell: int = 6, cols: int = 64) -> Image.Image:
    """A (F,) vector (linear layer output) -> a grid of viridis cells scaled to the vector's range."""
    x = v.detach().float().cpu().flatten()
    lo, hi = float(x.min()), float(x.max())
    norm = ((x - lo) / (hi - lo)).numpy() if hi > lo else np.zeros(x.shape, dtype=np.float32)
    return mosaic(viridis_indices(norm)[:, None, None], cols=min(cols, len(x)), scale=cell, pad=1)


def filter_tiles_rgb(weight: torch.Tensor) -> np.ndarray:
    """First-layer filters (K, 3, kh, kw) -> (K, kh, kw, 3) uint8 colour patches.

    Each filter is scaled on its own, symmetric around zero (0 -> mid-grey), so the colour a
    filter prefers shows as that colour.
    """
    w = weight.detach().float().cpu()
    m = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    rgb = (w / m * 0.5 + 0.5).permute(0, 2, 3, 1).numpy()
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def filter_tiles_channels(weight: torch.Tensor) -> np.ndarray:
    """(K, C, kh, kw) -> (K*C, kh, kw, 3): every input-channel slice through viridis, scaled per filter."""
    w = weight.detach().float().cpu()
    m = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    norm = (w / m * 0.5 + 0.5).reshape(-1, w.shape[2], w.shape[3]).numpy()
    return colorize(norm)


def filter_grid(weight: torch.Tensor, view: str = "rgb", target: int = 48) -> Image.Image:
    """A grid of conv filters: colour patches (``rgb``, 3-channel input) or one row per filter."""
    k, c, kh, kw = weight.shape
    scale = tile_scale(kh, kw, target)
    if view == "rgb" and c == 3:
        return mosaic(filter_tiles_rgb(weight), scale=scale, pad=2)
    small = tile_scale(kh, kw, max(8, target // 2))
    return mosaic(filter_tiles_channels(weight), cols=c if c <= 16 else None, scale=small, pad=2)


# -- colour scales and overlays ----------------------------------------------------------------------------
SCALES = ("channel", "layer", "global")  # each channel its own range; one range per layer; one for the whole network


def scale_ranges(act: torch.Tensor, scale: str = "channel",
                 network: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (lo, hi) float32 arrays that map a (C, ...) activation onto the colour scale: ``channel``
    each channel's own min and max, ``layer`` the layer's min and max for every channel, ``global`` the
    ``network``'s range (the min and max over all its layers for this photo) for every channel."""
    a = act.detach().float().cpu().reshape(act.shape[0], -1).numpy()
    if scale == "channel":
        return a.min(1), a.max(1)
    if scale == "layer":
        lo, hi = np.float32(a.min()), np.float32(a.max())
    elif scale == "global":
        if network is None:
            raise ValueError("the global scale needs the network's range")
        lo, hi = np.float32(network[0]), np.float32(network[1])
    else:
        raise ValueError(f"unknown scale {scale!r}: one of {', '.join(SCALES)}")
    return np.full(a.shape[0], lo, np.float32), np.full(a.shape[0], hi, np.float32)


def normalized(act: torch.Tensor, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A (C, ...) activation scaled to [0, 1] channel by channel with ``lo``/``hi`` (C,); an empty range -> 0."""
    a = act.detach().float().cpu().reshape(act.shape[0], -1).numpy()
    lo = np.asarray(lo, np.float32)[:, None]
    span = np.asarray(hi, np.float32)[:, None] - lo
    inv = np.where(span > 1e-12, np.float32(1) / np.maximum(span, np.float32(1e-12)), np.float32(0))
    return np.clip((a - lo) * inv, 0, 1).reshape(act.shape)


def scaled_indices(act: torch.Tensor, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C, H, W) activation -> palette indices with the per-channel ranges ``lo``/``hi`` (see :func:`scale_ranges`)."""
    return viridis_indices(normalized(act, lo, hi))


def upsample(map2d: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (h, w) map resized to (height, width) bilinearly, pixel centres aligned (``align_corners=False``)."""
    t = torch.from_numpy(np.ascontiguousarray(map2d, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(photo: Image.Image, map01: np.ndarray, opacity: float = 0.6) -> Image.Image:
    """A map scaled to [0, 1] (any size) drawn over ``photo``: upsampled to the photo's size, coloured
    with viridis and blended, ``opacity`` of the map over ``1 - opacity`` of the photo."""
    w, h = photo.size
    up = np.clip(upsample(map01, h, w), 0, 1)
    colour = VIRIDIS_PALETTE[viridis_indices(up)].astype(np.float32)
    base = np.asarray(photo.convert("RGB"), dtype=np.float32)
    a = float(min(1.0, max(0.0, opacity)))
    return Image.fromarray((base * (1 - a) + colour * a + 0.5).astype(np.uint8), "RGB")

"""Decoding of uploads and the pictures we draw, checked by decoding them again."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.core import imaging
from app.core.decode import ImageError, decode_image
from conftest import make_photo

LIMITS = {"max_pixels": 40_000_000, "max_side": 12_000}


def _enc(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_accepted_formats_decode_to_rgb(fmt):
    d = decode_image(make_photo(40, 30, fmt=fmt), **LIMITS)
    assert d.image.mode == "RGB" and d.image.size == (40, 30)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    d = decode_image(_enc(img, "JPEG", exif=exif, quality=95), **LIMITS)
    assert d.image.size == (20, 40)
    top = np.asarray(d.image)[2, 10]
    assert top[2] > 200 and top[0] < 60, "after rotating 90° clockwise the blue half is on top"


def test_alpha_is_flattened_on_white():
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    d = decode_image(_enc(img, "PNG"), **LIMITS)
    assert tuple(np.asarray(d.image)[5, 5]) == (255, 255, 255)


def test_gif_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2, 3)]
    for f, c in zip(frames, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        f.putpalette(list(c) * 256)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    d = decode_image(buf.getvalue(), **LIMITS)
    assert d.frames == 3 and tuple(np.asarray(d.image)[0, 0]) == (255, 0, 0)


def test_sixteen_bit_grey_is_rescaled():
    a = np.full((4, 4), 65535 // 2, dtype=np.uint16)
    d = decode_image(_enc(Image.fromarray(a), "PNG"), **LIMITS)
    assert abs(int(np.asarray(d.image)[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg():
    d = decode_image(_enc(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"), **LIMITS)
    r, g, b = np.asarray(d.image)[4, 4]
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("data,code", [
    (b"", "empty"),
    (b"hello, this is text", "not_an_image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not_an_image"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not_an_image"),
])
def test_bad_files_are_rejected_with_a_reason(data, code):
    with pytest.raises(ImageError) as e:
        decode_image(data, **LIMITS)
    assert e.value.code == code and str(e.value)


def test_truncated_jpeg_and_png():
    for fmt in ("JPEG", "PNG"):
        data = make_photo(256, 256, fmt=fmt)
        with pytest.raises(ImageError) as e:
            decode_image(data[: len(data) // 2], **LIMITS)
        assert e.value.code == "truncated"


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _enc(Image.new("1", (30000, 30000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(ImageError) as e:
        decode_image(bomb, **LIMITS)
    assert e.value.code == "too_many_pixels" and e.value.status == 413


def test_viridis_endpoints():
    lut = imaging.VIRIDIS_LUT
    assert np.abs(lut[0].astype(int) - (0x44, 0x01, 0x54)).max() <= 6
    assert np.abs(lut[255].astype(int) - (0xFD, 0xE7, 0x25)).max() <= 6
    lum = lut.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum) > -0.5), "viridis lightness rises monotonically (up to 8-bit rounding)"
    assert lum[255] - lum[0] > 180


def test_activation_grid_scales_each_channel_on_its_own():
    act = torch.stack([torch.linspace(0, 1, 16).view(4, 4), 100 * torch.linspace(0, 1, 16).view(4, 4)])
    img = imaging.activation_grid(act, cols=2, target=4)
    assert img.mode == "P"  # a palette image: one byte per pixel
    a = np.asarray(img.convert("RGB"))
    assert img.size == (2 * 4 + 3, 4 + 2)
    # both tiles are identical after per-channel scaling
    assert np.array_equal(a[1:5, 1:5], a[1:5, 6:10])
    assert tuple(a[1, 1]) == tuple(imaging.VIRIDIS_LUT[0]) and tuple(a[4, 4]) == tuple(imaging.VIRIDIS_LUT[255])


def test_palette_mosaic_equals_the_rgb_mosaic_of_the_same_colours():
    rng = np.random.default_rng(0)
    act = torch.from_numpy(rng.normal(size=(7, 5, 3)).astype(np.float32))
    act[3] = 2.5  # a flat channel draws as the low end
    idx = imaging.channel_indices(act)
    norm = imaging.normalize_channels(act)
    assert idx.dtype == np.uint8 and idx.max() <= imaging.VIRIDIS_STEPS - 1 and not idx[3].any()
    assert np.abs(idx.astype(int) - np.round(norm * (imaging.VIRIDIS_STEPS - 1))).max() <= 1
    for scale, pad, cols in ((1, 1, None), (3, 2, 4), (2, 0, 7), (1, 1, 10)):
        p = imaging.mosaic(idx, cols=cols, scale=scale, pad=pad)
        rgb = imaging.mosaic(imaging.VIRIDIS_PALETTE[idx], cols=cols, scale=scale, pad=pad)
        assert p.mode == "P" and p.size == rgb.size
        c = cols or 3
        rows = -(-len(idx) // c)
        th, tw = 5 * scale, 3 * scale
        want = np.full((rows * (th + pad) + pad, c * (tw + pad) + pad, 3), 255, np.uint8)
        for i, t in enumerate(imaging.VIRIDIS_PALETTE[idx]):  # placed one by one
            y, x = pad + (i // c) * (th + pad), pad + (i % c) * (tw + pad)
            want[y:y + th, x:x + tw] = t.repeat(scale, 0).repeat(scale, 1)
        assert np.array_equal(np.asarray(rgb), want)
        assert np.array_equal(np.asarray(p.convert("RGB")), np.asarray(rgb))
        png = Image.open(io.BytesIO(imaging.png_bytes(p)))
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(rgb))
    # the palette keeps viridis's two ends and a white background
    assert tuple(imaging.VIRIDIS_PALETTE[0]) == tuple(imaging.VIRIDIS_LUT[0])
    assert tuple(imaging.VIRIDIS_PALETTE[imaging.VIRIDIS_STEPS - 1]) == tuple(imaging.VIRIDIS_LUT[255])
    assert tuple(imaging.VIRIDIS_PALETTE[imaging.BACKGROUND_INDEX]) == (255, 255, 255)


def test_filter_grid_rgb_shows_colour_preference():
    w = torch.zeros(2, 3, 5, 5)
    w[0, 0] = 1.0  # prefers red
    w[1, 2] = -1.0  # dislikes blue -> yellowish
    tiles = imaging.filter_tiles_rgb(w)
    assert tuple(tiles[0, 2, 2]) == (255, 128, 128)
    assert tuple(tiles[1, 2, 2]) == (128, 128, 0)
    png = imaging.png_bytes(imaging.filter_grid(w))
    assert Image.open(io.BytesIO(png)).format == "PNG"


@pytest.mark.parametrize("mode,size", [("RGB", (160, 120)), ("RGB", (1, 1)), ("L", (37, 5)), ("RGBA", (300, 90)),
                                       ("RGB", (1000, 40))])
def test_stored_png_is_read_back_pixel_for_pixel(mode: str, size: tuple[int, int]):
    """Level 0 uploads are written unfiltered and undeflated; Pillow reads the same pixels, the chunk
    CRCs verify and the zlib stream (several stored blocks when over 64 KB) has its checksum."""
    import zlib

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    data = imaging.png_bytes(im, 0)
    assert data == imaging.stored_png(im)
    Image.open(io.BytesIO(data)).verify()  # signature and chunk CRCs
    back = Image.open(io.BytesIO(data))
    assert back.mode == mode and back.size == size and back.info == {}
    assert np.array_equal(np.asarray(back), np.asarray(im))
    idat = data[33 + 8:-12 - 4]  # after the signature, IHDR and IDAT's length + type; before its CRC and IEND
    rows = zlib.decompress(idat)
    assert len(rows) == size[1] * (1 + size[0] * len(mode)) and rows[0] == 0

"""iPhone photos (HEIC) and AVIF: made here, uploaded through the normal path (the decoder workers), analysed;
refused like every other format when the header is over the pixel or memory limits."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.core import decode
from app.core.zoo import Zoo
from app.main import create_app


def _picture(w: int = 160, h: int = 120) -> Image.Image:
    """Left half red, right half blue, with a grey gradient row so that it is not flat."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 30, 30)
    a[:, w // 2:] = (30, 30, 220)
    return Image.fromarray(a)


def heic(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    pillow_heif.from_pillow(im).save(buf, quality=95)
    return buf.getvalue()


def avif(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="AVIF", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,encode,brand", [("HEIC", heic, b"heic"), ("AVIF", avif, b"avif")])
def test_heic_and_avif_uploads_are_analysed(client: TestClient, fmt, encode, brand):
    data = encode(_picture())
    assert data[4:8] == b"ftyp" and data[8:12] == brand
    r = client.post("/api/images", files={"file": (f"photo.{fmt.lower()}", data, "application/octet-stream")})
    assert r.status_code == 201, r.text
    meta = r.json()
    assert meta["format"] == fmt and (meta["width"], meta["height"]) == (160, 120)
    stored = np.asarray(Image.open(io.BytesIO(client.get(meta["url"]).content)).convert("RGB")).astype(int)
    assert np.abs(stored[60, 20] - (220, 30, 30)).max() < 20 and np.abs(stored[60, 140] - (30, 30, 220)).max() < 20
    for model in ("lenet", "cifarnet"):
        an = client.get(f"/api/images/{meta['id']}/analysis", params={"model": model})
        assert an.status_code == 200, an.text
        assert len(an.json()["predictions"]) > 0


def test_heic_over_the_pixel_limit_is_refused_from_its_header(tmp_path, zoo: Zoo):
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=[],
                        default_model="cifarnet", max_pixels=100_000)
    with TestClient(create_app(settings, zoo=zoo)) as c:
        r = c.post("/api/images", files={"file": ("big.heic", heic(_picture(400, 300)), "image/heic")})
        assert r.status_code == 413, r.text
        assert r.json()["code"] == "too_many_pixels" and "400x300" in r.json()["detail"]
        assert c.get("/api/images").json() == [], "nothing may be stored"
        assert c.post("/api/images", files={"file": ("ok.heic", heic(_picture(200, 150)), "image/heic")}).status_code == 201


def test_heic_and_avif_memory_is_estimated_from_the_header():
    """The estimate counts the luma/chroma planes beside the decoded and converted RGB picture, and the
    memory budget refuses it before decoding like any other format."""
    limits = decode.DecodeLimits(max_pixels=40_000_000, max_side=12_000, memory_bytes=1_000_000)
    for data in (heic(_picture(400, 300)), avif(_picture(400, 300))):
        im = decode._open(data, limits)
        head = decode.inspect(im, data, limits)
        assert head.peak_bytes == 400 * 300 * (2 * 3 + 8)
        with pytest.raises(decode.ImageError) as e:
            decode.check_budget(head, limits)
        assert e.value.code == "too_costly"


def test_the_decoder_worker_decodes_heic():
    """The worker process registers the HEIF opener itself (it is a fresh interpreter)."""
    from app.runtime.decoder import DecoderPool

    pool = DecoderPool(1)
    try:
        dec = pool.decode(heic(_picture()), max_pixels=1_000_000, max_side=4000, target_side=64)
        assert dec.format == "HEIC" and dec.original_size == (160, 120) and max(dec.image.size) == 64
    finally:
        pool.close()

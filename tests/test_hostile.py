"""Hostile uploads: each is refused (or decoded cheaply) with a 4xx that says why, within a memory bound,
while the server keeps answering and keeps what it stored; the decoder processes' hard ceiling stops a
runaway decoder that the header checks let through."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hostile_files import HOSTILE, many_scan_jpeg, mistyped_exif_jpeg

from app.config import Settings
from app.core.decode import ImageError, decode_image
from app.core.zoo import Zoo
from app.main import create_app
from app.runtime.decoder import Ceiling, DecoderPool
from conftest import make_photo

MB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile() -> dict[str, bytes]:
    return {name: make() for name, make in HOSTILE.items()}


@pytest.fixture
def hc(tmp_path: Path, zoo: Zoo) -> Iterator[TestClient]:
    """An app with its decoder processes (the default: a hard ceiling behind the header checks)."""
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=[], default_model="lenet",
                 torch_threads=1, decoder_processes=1)
    with TestClient(create_app(s, zoo=zoo)) as c:
        yield c


def _peak_rss() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024


def test_hostile_uploads_are_answered_cheaply_and_lose_nothing(hc: TestClient, hostile: dict[str, bytes]) -> None:
    kept = hc.post("/api/images", files={"file": ("ok.jpg", make_photo(seed=5), "image/jpeg")}).json()
    before = _peak_rss()
    answers = {}
    for name, data in hostile.items():
        assert len(data) < 1 * MB, (name, len(data))  # small on the wire
        r = hc.post("/api/images", files={"file": (f"{name}.bin", data, "application/octet-stream")})
        answers[name] = (r.status_code, r.json().get("code"))
        assert r.status_code in (201, 413, 422), (name, r.text)
        if r.status_code != 201:
            assert len(r.json()["detail"]) > 30  # says why, and what to do
        assert hc.get("/healthz").status_code == 200
    assert answers["many_scan_jpeg"] == (422, "too_costly")
    assert answers["rle_bmp"] == (422, "too_costly")
    assert answers["deep_png"] == (422, "too_costly")
    assert answers["huge_canvas_webp"] == (422, "too_costly")
    assert answers["palette_alpha_png"][0] == 201  # within budget: decoded without an RGBA copy
    assert _peak_rss() - before < 256 * MB
    assert hc.get(f"/api/images/{kept['id']}/file").status_code == 200  # nothing already stored was lost


def test_mistyped_exif_is_ignored_and_the_picture_accepted(hc: TestClient) -> None:
    r = hc.post("/api/images", files={"file": ("exif.jpg", mistyped_exif_jpeg(), "image/jpeg")})
    assert r.status_code == 201, r.text
    assert (r.json()["width"], r.json()["height"]) == (64, 48)


def test_decoder_ceiling_kills_a_runaway_and_the_pool_recovers() -> None:
    """With the header checks off, a many-scan JPEG (seconds of CPU) and a huge PNG (past the memory
    ceiling) are stopped by the worker's limits; the pool replaces the worker and goes on."""
    pool = DecoderPool(1, Ceiling(memory_bytes=96 * MB, cpu_s=1))
    try:
        limits = {"max_pixels": 100_000_000, "max_side": 20_000, "check": False}
        with pytest.raises(ImageError) as e:
            pool.decode(many_scan_jpeg(4000), **limits)
        assert e.value.code == "too_costly" and e.value.status == 422
        from hostile_files import deep_png

        with pytest.raises(ImageError):
            pool.decode(deep_png(9000), **limits)
        assert pool.killed == 2
        ok = pool.decode(make_photo(200, 100), max_pixels=10**6, max_side=1000, target_side=50)
        assert ok.image.size == (50, 25) and ok.original_size == (200, 100)
    finally:
        pool.close()


def test_the_header_checks_name_the_limit() -> None:
    with pytest.raises(ImageError) as e:
        decode_image(many_scan_jpeg(100), max_pixels=10**7, max_side=5000, max_scans=64)
    assert "scans" in str(e.value) and "baseline" in str(e.value)


def test_stored_uploads_are_compressed_and_reported(hc: TestClient) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1024, 1024), (30, 60, 90)).save(buf, "PNG")
    assert len(buf.getvalue()) < 10_000
    hc.post("/api/images", files={"file": ("flat.png", buf.getvalue(), "image/png")})
    disk = hc.get("/api/stats").json()["disk"]
    assert 0 < disk["blob_bytes"] < 100_000  # a flat 1024x1024 picture is not stored as 3 MB of raw pixels
    assert Settings().retention_hours == 168  # uploads are kept a week by default

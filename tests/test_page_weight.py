"""Page weight in a real browser: every page kind of bench/page_weight.py, each loaded with an empty cache,
must stay under twice its budget (bytes are deterministic; times are printed by the bench, never asserted).
Also the pieces that make pages light: web-sized photos cached in the store, fingerprinted static URLs."""

from __future__ import annotations

import importlib.util
import io
import re
import sys

import pytest
from PIL import Image

from app.config import ROOT

_spec = importlib.util.spec_from_file_location("page_weight", ROOT / "bench" / "page_weight.py")
assert _spec is not None and _spec.loader is not None
pw = sys.modules.setdefault("page_weight", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(pw)


def test_web_sized_photos_are_webp_cached_and_revalidated(client) -> None:  # type: ignore[no-untyped-def]
    iid = client.post("/api/images", files={"file": ("p.jpg", pw.make_photo(1, 512), "image/jpeg")}).json()["id"]
    original = client.get(f"/api/images/{iid}/file")
    assert original.headers["content-type"] == "image/png"
    for size, side in (("thumb", 320), ("display", 320), ("display2x", 512)):
        r = client.get(f"/api/images/{iid}/file", params={"size": size})
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        assert r.headers["cache-control"] == "private, no-cache" and r.headers["etag"].endswith(f'-{size}"')
        assert Image.open(io.BytesIO(r.content)).size == (side, side)
        assert len(r.content) < len(original.content) / 4
        again = client.get(f"/api/images/{iid}/file", params={"size": size}, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    assert client.get(f"/api/images/{iid}/file", params={"size": "huge"}).status_code == 422
    page = client.get("/").text
    assert f'src="/api/images/{iid}/file?size=thumb" width="320" height="320"' in page
    photo = client.get(f"/images/{iid}").text
    assert f'srcset="/api/images/{iid}/file?size=display 1x, /api/images/{iid}/file?size=display2x 2x"' in photo
    assert f'href="/api/images/{iid}/file" download' in photo  # the original, by its own link
    client.delete(f"/api/images/{iid}")
    assert client.get(f"/api/images/{iid}/file", params={"size": "thumb"}).status_code == 404


def test_static_files_have_fingerprinted_long_lived_urls(client) -> None:  # type: ignore[no-untyped-def]
    html = client.get("/").text
    m = re.search(r'href="(/static/css/app\.css\?v=([0-9a-f]{12}))"', html)
    assert m, "the stylesheet's URL carries its content hash"
    r = client.get(m.group(1))
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
    stale = client.get("/static/css/app.css?v=000000000000")
    assert stale.headers["cache-control"] == "no-cache"  # a stale hash: never pinned for a year
    plain = client.get("/static/css/app.css")
    assert plain.headers["cache-control"] == "no-cache" and "etag" in plain.headers
    assert client.get("/static/css/app.css", headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
    gz = client.get(m.group(1), headers={"Accept-Encoding": "gzip"})
    assert gz.headers.get("content-encoding") == "gzip"


def test_lecture_filtered_photo_as_jpeg(client) -> None:  # type: ignore[no-untyped-def]
    png = client.get("/api/lecture/filter-photo", params={"filter": "vertical_edges"})
    jpeg = client.get("/api/lecture/filter-photo", params={"filter": "vertical_edges", "format": "jpeg"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == Image.open(io.BytesIO(png.content)).size
    assert len(jpeg.content) < len(png.content) / 2
    assert "/api/lecture/filter-photo?filter=vertical_edges&amp;format=jpeg" in client.get("/lecture/3").text


@pytest.mark.browser
def test_every_page_within_twice_its_budget(live_server: str, browser) -> None:  # type: ignore[no-untyped-def]
    ids = [pw.upload(live_server, pw.make_photo(100 + seed), f"weight-{seed:02d}.jpg") for seed in range(12)]
    kinds = pw.page_kinds(ids[-1], ["lenet", "cifarnet"])
    for k in kinds:  # the first visit computes what later ones reuse (the server's caches, not the browser's)
        pw.weigh(browser, live_server + k.path)
    over = []
    for k in kinds:
        w = pw.weigh(browser, live_server + k.path)
        print(f"{k.name:<36} {w.bytes / 1000:>7.0f} KB {w.requests:>3} requests")
        if w.bytes > 2 * k.budget:
            over.append(f"{k.name}: {w.bytes:,} bytes > 2 x {k.budget:,}")
    assert not over, over

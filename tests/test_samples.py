"""The bundled sample photos: small, credited (public domain or CC0), one POST form each on the home page,
stored through the normal upload path."""

from __future__ import annotations

import hashlib
import re
import tomllib

from fastapi.testclient import TestClient

from app.config import package_path
from app.features.samples.service import SAMPLES_DIR, catalogue

CREDITS = tomllib.loads((package_path("static") / "samples" / "credits.toml").read_text(encoding="utf-8"))


def test_samples_are_small_credited_and_free():
    assert 10 <= len(CREDITS) <= 14
    for name, c in CREDITS.items():
        photo = SAMPLES_DIR / c["file"]
        assert photo.stat().st_size <= 200_000, name
        assert (SAMPLES_DIR / "thumbs" / f"{name}.webp").stat().st_size <= 12_000, name
        assert c["source"] and c["author"] and c["en"] and c["es"]
        assert "CC0" in c["licence"] or "ublic domain" in c["licence"], name
        assert not re.search(r"cifar|imagenet", c["source"], re.I), name


def test_home_page_offers_one_form_per_sample(client: TestClient):
    page = client.get("/").text
    for name in catalogue():
        assert f'action="/samples/{name}"' in page, name
    assert client.get("/samples").status_code == 200


def test_a_sample_goes_through_the_upload_path(client: TestClient):
    r = client.post("/samples/cat", data={"model": "lenet"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/images/([0-9a-f]+)\?model=lenet", r.headers["location"])
    assert m is not None, r.headers["location"]
    meta = client.get(f"/api/images/{m.group(1)}").json()
    assert meta["sha256"] == hashlib.sha256((SAMPLES_DIR / "cat.jpg").read_bytes()).hexdigest()
    assert meta["format"] == "JPEG" and client.get(r.headers["location"]).status_code == 200
    again = client.post("/samples/cat", data={"model": "lenet", "then": "layers/conv1"}, follow_redirects=False)
    assert again.headers["location"] == f"/images/{m.group(1)}/layers/conv1?model=lenet"
    assert client.post("/samples/nope", follow_redirects=False).status_code == 404


def test_lecture_8_shows_pictures_that_link_to_their_live_views(client: TestClient):
    page = client.get("/lecture/8").text
    cat = client.post("/samples/cat", follow_redirects=False).headers["location"].split("/")[2].split("?")[0]
    for model, first in (("lenet", "conv1"), ("cifarnet", "stem")):
        assert f'src="/api/models/{model}/filters?format=png"' in page
        assert f'href="/models/{model}/filters"' in page
        src = f"/api/images/{cat}/activations/{first}?model={model}&amp;format=png"
        assert src in page and f'href="/images/{cat}/layers/{first}?model={model}"' in page
        assert client.get(src.replace("&amp;", "&")).headers["content-type"] == "image/png"
        assert f'href="/models/{model}/featvis?layer={first}"' in page
    r = client.post("/samples/coffee", data={"then": "lecture/8"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/lecture/8?image=")
    assert r.headers["location"].split("=")[1] in client.get(r.headers["location"]).text

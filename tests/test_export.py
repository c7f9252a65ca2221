"""ZIP export of a whole analysis."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi.testclient import TestClient
from PIL import Image

from conftest import make_photo


def _upload(c: TestClient) -> str:
    return str(c.post("/api/images", files={"file": ("x.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"])


def test_export_zip_contents(client: TestClient) -> None:
    img = _upload(client)
    r = client.get(f"/api/images/{img}/export.zip?model=cifarnet")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    for n in ("manifest.json", "photo.png", "input.png", "predictions.json", "stats.json", "filters.png"):
        assert n in names, n
    lm = client.app.state.services.engine.zoo.get("cifarnet")  # type: ignore[attr-defined]
    grids = [n for n in names if n.startswith("layers/")]
    assert len(grids) == min(60, len(lm.layers))
    assert Image.open(io.BytesIO(z.read("input.png"))).size == (32, 32)
    assert Image.open(io.BytesIO(z.read(grids[0]))).format == "PNG"
    stats = json.loads(z.read("stats.json"))
    assert [s["name"] for s in stats["layers"]] == [li.name for li in lm.layers]
    assert len(stats["layers"][0]["max"]) == lm.layers[0].output_shape[0]
    preds = json.loads(z.read("predictions.json"))
    api = client.get(f"/api/images/{img}/predictions?model=cifarnet&k=10").json()
    assert [p["label"] for p in preds["predictions"]] == [p["label"] for p in api["predictions"]]
    assert json.loads(z.read("manifest.json"))["permalinks"]["analysis"] == f"/images/{img}?model=cifarnet"
    assert z.read("photo.png") == client.get(f"/api/images/{img}/file").content


def test_export_layer_filter_and_limits(client: TestClient) -> None:
    img = _upload(client)
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/images/{img}/export.zip?model=lenet&layers=conv1,fc3").content))
    assert sorted(n for n in z.namelist() if n.startswith("layers/")) == ["layers/000-conv1.png", "layers/007-fc3.png"]
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/api/images/{img}/export.zip?model=lenet&limit=2").content))
    assert len([n for n in z.namelist() if n.startswith("layers/")]) == 2
    bad = client.get(f"/api/images/{img}/export.zip?model=lenet&layers=conv1,nope")
    assert bad.status_code == 404 and bad.json()["code"] == "unknown_layer"
    assert client.get(f"/api/images/{img}/export.zip?limit=0").status_code == 422
    assert client.get("/api/images/0123456789abcdef/export.zip").status_code == 404

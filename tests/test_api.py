"""Every route of the first slice, JSON and HTML faces, with and without HX-Request."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.core.inference import analyze
from app.core.zoo import Zoo
from app.main import create_app
from conftest import make_photo

HX = {"HX-Request": "true"}


@pytest.fixture
def uploaded(client: TestClient) -> str:
    r = client.post("/api/images", files={"file": ("cat <b>.jpg", make_photo(120, 90, seed=3), "image/jpeg")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_models_list_and_detail(client: TestClient):
    names = [m["name"] for m in client.get("/api/models").json()]
    assert names == ["lenet", "cifarnet"]
    d = client.get("/api/models/lenet").json()
    by = {li["name"]: li for li in d["layers"]}
    assert [by[n]["parameters"] for n in ("conv1", "conv2", "fc3", "fc4", "out")] == [608, 3216, 48120, 10164, 850]
    assert d["parameters"] == 62958 and by["conv1"]["output_shape"] == [8, 28, 28] and by["conv1"]["type"] == "Conv2d"
    assert by["conv1"]["kernel_size"] == [5, 5]


def test_unknown_names_give_404_listing_what_exists(client: TestClient, uploaded: str):
    r = client.get("/api/models/vgg99")
    assert r.status_code == 404 and "lenet" in r.json()["detail"] and "cifarnet" in r.json()["valid"]
    r = client.get(f"/api/images/{uploaded}/activations/conv9", params={"model": "lenet"})
    assert r.status_code == 404 and "conv1" in r.json()["valid"]
    r = client.get(f"/api/images/{uploaded}/activations/block1", params={"model": "cifarnet"})  # a container
    assert r.status_code == 404 and "is a module of cifarnet but not a layer" in r.json()["detail"]
    assert "block1.conv1" in r.json()["valid"]
    r = client.get("/api/images/0123456789abcdef/predictions")
    assert r.status_code == 404 and "POST /api/images" in r.json()["detail"]
    r = client.get(f"/api/images/{uploaded}/predictions", params={"model": "nope"})
    assert r.status_code == 404
    r = client.get(f"/images/{uploaded}", params={"model": "nope"})
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "cifarnet" in r.text


def test_upload_is_stored_once_by_content(client: TestClient):
    data = make_photo(50, 40, seed=9)
    a = client.post("/api/images", files={"file": ("a.jpg", data, "image/jpeg")})
    b = client.post("/api/images", files={"file": ("b.jpg", data, "image/jpeg")})
    assert a.status_code == 201 and b.status_code == 200 and a.json()["id"] == b.json()["id"]
    assert len(client.get("/api/images").json()) == 1
    meta = client.get(f"/api/images/{a.json()['id']}").json()
    assert meta["width"] == 50 and meta["sha256"] == a.json()["sha256"]
    png = Image.open(io.BytesIO(client.get(meta["url"]).content))
    assert png.format == "PNG" and png.size == (50, 40)


def test_predictions_match_the_core(client: TestClient, zoo: Zoo, uploaded: str):
    r = client.get(f"/api/images/{uploaded}/predictions", params={"model": "cifarnet", "k": 3})
    preds = r.json()["predictions"]
    assert len(preds) == 3
    pic = Image.open(io.BytesIO(client.get(f"/api/images/{uploaded}/file").content)).convert("RGB")
    ref = analyze(zoo.get("cifarnet"), pic).probabilities
    top = ref.topk(3)
    assert [p["index"] for p in preds] == top.indices.tolist()
    np.testing.assert_allclose([p["probability"] for p in preds], top.values.numpy(), rtol=1e-5)


def test_activation_formats_agree(client: TestClient, uploaded: str):
    base = f"/api/images/{uploaded}/activations/stem"
    j = client.get(base, params={"model": "cifarnet"}).json()
    assert j["shape"] == [32, 28, 28] and j["dtype"] == "float32" and len(j["min"]) == 32  # 5x5, no padding
    arr = np.load(io.BytesIO(client.get(base, params={"model": "cifarnet", "format": "npy"}).content))
    assert arr.shape == (32, 28, 28)
    np.testing.assert_allclose(arr, np.array(j["values"], dtype=np.float32), rtol=1e-6)
    np.testing.assert_allclose(arr.reshape(32, -1).max(1), j["max"], rtol=1e-6)
    png = Image.open(io.BytesIO(client.get(base, params={"model": "cifarnet", "format": "png"}).content))
    assert png.format == "PNG" and png.width > 32 * 2
    one = client.get(base, params={"model": "cifarnet", "channel": 5}).json()
    assert one["shape"] == [28, 28]
    np.testing.assert_allclose(np.array(one["values"]), arr[5], rtol=1e-6)
    r = client.get(base, params={"model": "cifarnet", "channel": 32})
    assert r.status_code == 422 and "0 to 31" in r.json()["detail"]
    r = client.get(base, params={"model": "cifarnet", "format": "gif"})
    assert r.status_code == 422
    vec = client.get(f"/api/images/{uploaded}/activations/fc3", params={"model": "lenet"}).json()
    assert vec["shape"] == [120]


def test_analysis_has_every_layer(client: TestClient, uploaded: str):
    a = client.get(f"/api/images/{uploaded}/analysis", params={"model": "lenet"}).json()
    assert [li["name"] for li in a["layers"]][:3] == ["conv1", "relu1", "pool1"]
    assert len(a["predictions"]) == 5


def test_filters_json_and_png(client: TestClient, zoo: Zoo):
    j = client.get("/api/models/cifarnet/filters").json()
    assert j["layer"] == "stem" and j["shape"] == [32, 3, 5, 5]
    torch.testing.assert_close(torch.tensor(j["values"]), zoo.get("cifarnet").module.stem.weight)
    for view in ("rgb", "channels"):
        r = client.get("/api/models/cifarnet/filters", params={"format": "png", "view": view})
        assert r.headers["content-type"] == "image/png" and Image.open(io.BytesIO(r.content)).width > 50
    r = client.get("/api/models/lenet/filters", params={"layer": "fc3"})
    assert r.status_code == 422 and "conv1" in r.json()["detail"]
    assert client.get("/api/models/lenet/filters", params={"layer": "conv2"}).json()["shape"] == [16, 8, 5, 5]


def test_delete_removes_the_image(client: TestClient, uploaded: str):
    client.get(f"/api/images/{uploaded}/activations/stem", params={"format": "png"})
    assert client.delete(f"/api/images/{uploaded}").status_code == 204
    assert client.get(f"/api/images/{uploaded}").status_code == 404


def test_health_and_readiness(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["store_writable"] is True


def test_stats_count_forward_passes_and_what_memory_keeps(client: TestClient, uploaded: str):
    before = client.get("/api/stats").json()
    client.get(f"/api/images/{uploaded}/predictions", params={"model": "cifarnet"})
    client.get(f"/api/images/{uploaded}/predictions", params={"model": "cifarnet"})  # answered from memory
    st = client.get("/api/stats").json()
    assert st["predictions"]["items"] == before["predictions"]["items"] + 1
    assert st["predictions"]["mean_batch"] >= 1 and st["overload_refusals"] == 0
    assert st["pictures_kept"] >= 1 and st["probabilities_kept"] >= 1


def test_start_up_freezes_what_loading_made_and_shut_down_releases_it(settings: Settings, zoo: Zoo):
    """With gc_freeze (the default), what start-up leaves alive (models, traced graphs) is moved out of
    the collector's generations, so that a full collection does not walk it; /api/stats counts
    collections and frozen objects; shut down, the objects are collectable again."""
    import gc

    assert gc.get_freeze_count() == 0 and settings.gc_freeze is False  # tests run without (conftest)
    module = zoo.get("lenet").module
    with TestClient(create_app(settings.model_copy(update={"gc_freeze": True}), zoo=zoo)) as c:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000
        assert not any(o is module for o in gc.get_objects())  # the collector's generations skip it
        gc.collect()  # a full collection, timed by the app's watch
        st = c.get("/api/stats").json()["gc"]
        assert 10_000 < st["frozen"] <= frozen  # frozen objects may still die
        assert st["collections"][2] >= 1 and 0 < st["longest_ms"][2] <= st["total_ms"][2]
        watch = c.app.state.services.engine.gc_watch
        assert watch._callback in gc.callbacks
    assert gc.get_freeze_count() == 0 and watch._callback not in gc.callbacks
    assert any(o is module for o in gc.get_objects())


def test_bad_uploads_get_clear_4xx_and_the_server_keeps_serving(client: TestClient):
    cases = [(b"", 400), (b"not an image at all", 415), (make_photo(200, 200)[:900], 400)]
    for data, status in cases:
        r = client.post("/api/images", files={"file": ("x.jpg", data, "image/jpeg")})
        assert r.status_code == status, (r.status_code, r.text)
        assert r.json()["detail"]
    assert client.get("/api/images").json() == []
    assert client.get("/healthz").status_code == 200


def test_oversized_upload_is_rejected(settings: Settings, zoo: Zoo):
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(small, zoo=zoo)) as c:
        r = c.post("/api/images", files={"file": ("big.jpg", make_photo(300, 300), "image/jpeg")})
        assert r.status_code == 413 and "MB" in r.json()["detail"]


def test_uploads_survive_a_restart(settings: Settings, zoo: Zoo):
    data = make_photo(64, 48, seed=5)
    with TestClient(create_app(settings, zoo=zoo)) as c:
        iid = c.post("/api/images", files={"file": ("a.png", data, "image/png")}).json()["id"]
    with TestClient(create_app(settings, zoo=zoo)) as c:
        assert c.get(f"/api/images/{iid}").status_code == 200
        assert c.get(f"/api/images/{iid}/predictions").status_code == 200


# -- HTML faces ---------------------------------------------------------------------------------
def test_home_page_and_upload_form_without_js(client: TestClient):
    r = client.get("/")
    assert r.status_code == 200 and 'enctype="multipart/form-data"' in r.text and "Content-Security-Policy" in r.headers
    r = client.post("/images", files={"file": ("x.jpg", make_photo(), "image/jpeg")}, data={"model": "lenet"},
                    follow_redirects=False)
    assert r.status_code == 303 and "/images/" in r.headers["location"] and "model=lenet" in r.headers["location"]
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "62,958" in page.text and "608" in page.text and "<meter" in page.text
    r = client.post("/images", files={"file": ("x.jpg", make_photo(), "image/jpeg")}, headers=HX)
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/images/")


def test_bad_upload_page_shows_the_message(client: TestClient):
    r = client.post("/images", files={"file": ("x.jpg", b"nope", "image/jpeg")})
    assert r.status_code == 415 and "JPEG, PNG" in r.text and "<html" in r.text
    r = client.post("/images", files={"file": ("x.jpg", b"nope", "image/jpeg")}, headers=HX)
    assert r.status_code == 415 and "<html" not in r.text and "JPEG, PNG" in r.text


@pytest.mark.parametrize("path", ["/images/{id}/layers/conv1", "/images/{id}/layers/conv1/channels/3",
                                  "/images/{id}/layers/fc3", "/models/lenet/filters", "/models/lenet", "/models",
                                  "/images/{id}"])
def test_html_faces_full_and_partial(client: TestClient, uploaded: str, path: str):
    url = path.format(id=uploaded)
    full = client.get(url, params={"model": "lenet"})
    part = client.get(url, params={"model": "lenet"}, headers=HX)
    assert full.status_code == 200 and part.status_code == 200
    assert "<html" in full.text
    if path.count("/") >= 3 and "filters" in path or "layers" in path:
        assert "<html" not in part.text
    assert "cat &lt;b&gt;.jpg" in full.text or "images" not in path or "layers" in path


def test_layer_partial_has_one_tile_per_channel(client: TestClient, uploaded: str):
    r = client.get(f"/images/{uploaded}/layers/conv2", params={"model": "lenet"}, headers=HX)
    assert r.text.count('class="tile"') == 16 and "data:image/png;base64," in r.text


def test_spanish_pages(client: TestClient, uploaded: str):
    r = client.get(f"/images/{uploaded}", params={"model": "lenet", "lang": "es"})
    assert "Parámetros en total" in r.text and 'lang="es"' in r.text and "lang=es" in r.text


def test_analysis_json_keeps_no_activations_and_matches_the_layer_stats(client):
    """The analysis endpoint runs an overview pass: nothing of the layers' outputs is kept (the
    activation JSON of a layer computes it), and the stats agree with that layer's own JSON."""
    iid = client.post("/api/images", files={"file": ("a.png", make_photo(seed=5, fmt="PNG"), "image/png")}).json()["id"]
    body = client.get(f"/api/images/{iid}/analysis", params={"model": "cifarnet"}).json()
    stats = client.get("/api/stats").json()
    assert stats["analyses_kept"] == 0 and stats["overviews_kept"] == 1
    stem = next(layer for layer in body["layers"] if layer["name"] == "stem")
    act = client.get(f"/api/images/{iid}/activations/stem", params={"model": "cifarnet", "format": "json"}).json()
    assert stem["min"] == pytest.approx(act["min"], abs=1e-6) and stem["max"] == pytest.approx(act["max"], abs=1e-6)
    assert stem["mean"] == pytest.approx(act["mean"], rel=1e-5, abs=1e-6)


def test_favicon_ico_leads_to_the_svg_icon(client):
    r = client.get("/favicon.ico", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/static/favicon.svg"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_one_unit_of_a_vector_layer_is_one_number(client: TestClient) -> None:
    """A channel of a (C, H, W) layer is a map; a unit of a vector layer is one number (was a 500)."""
    iid = client.post("/api/images", files={"file": ("v.jpg", make_photo(seed=8), "image/jpeg")}).json()["id"]
    full = client.get(f"/api/images/{iid}/activations/fc3", params={"model": "lenet"}).json()
    one = client.get(f"/api/images/{iid}/activations/fc3", params={"model": "lenet", "channel": 3})
    assert one.status_code == 200 and one.json()["shape"] == [] and one.json()["values"] == pytest.approx(full["values"][3])


def test_out_of_range_numbers_are_worded_in_the_request_language(client: TestClient) -> None:
    iid = client.post("/api/images", files={"file": ("r.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"]
    url = f"/api/images/{iid}/activations/conv1"
    en = client.get(url, params={"model": "lenet", "channel": 99}).json()
    es = client.get(url, params={"model": "lenet", "channel": 99, "lang": "es"}).json()
    assert en["code"] == es["code"] == "bad_parameter" and en["valid_range"] == es["valid_range"] == [0, 7]
    assert "out of range" in en["detail"] and "fuera de rango" in es["detail"] and "0 a 7" in es["detail"]

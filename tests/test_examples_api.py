"""Examples API and pages: 404 when missing (says how to build), 409 while building, 200 after; gallery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from test_examples_resume import tiny_imagefolder

from app.config import Settings
from app.main import create_app
from conftest import make_photo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_imagefolder(tmp_path_factory.mktemp("ex") / "tiny", n=48)


@pytest.fixture
def ex_client(tmp_path: Path, zoo, tiny: Path) -> Iterator[TestClient]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "no-models", torchvision_models=[],
                        default_model="cifarnet", dataset_path=str(tiny), torch_threads=1)
    with TestClient(create_app(settings, zoo=zoo)) as c:
        yield c
    torch.set_num_threads(n)


def svc(c: TestClient):
    return c.app.state.services.examples  # type: ignore[attr-defined]


def wait(c: TestClient, job_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        j = c.get(f"/api/indexes/{job_id}").json()
        if j["state"] not in ("queued", "running"):
            return j
        assert time.time() < deadline, j
        time.sleep(0.05)


EX = "/api/models/lenet/layers/conv2/channels/3/examples"


def test_missing_building_ready(ex_client: TestClient) -> None:
    c = ex_client
    r = c.get(EX)
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == "index_missing"
    assert "convscope index --model lenet" in body["detail"] and "POST /api/indexes" in body["detail"]
    assert body["cli"].startswith("convscope index") and body["post"]["model"] == "lenet"

    s = svc(c)
    s.batch_size, s.throttle_s = 8, 0.3  # slow enough to be seen running
    r = c.post("/api/indexes", json={"model": "lenet", "dataset": "default", "split": "test"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/jobs/{job['id']}" and job["kind"] == "index"
    r = c.get(EX)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "index_building" and r.json()["job"]["id"] == job["id"]
    # another build while this one runs: 409; the same one again: the same job
    assert c.post("/api/indexes", json={"model": "cifarnet", "dataset": "default"}).status_code == 409
    assert c.post("/api/indexes", json={"model": "lenet", "dataset": "default"}).json()["id"] == job["id"]
    # the pages show the progress and poll
    page = c.get(f"/indexes/{job['id']}", headers={"HX-Request": "true"})
    assert page.status_code == 200 and 'hx-trigger="every 1s"' in page.text and "<html" not in page.text
    part = c.get("/models/lenet/layers/conv2/channels/3/examples", headers={"HX-Request": "true"})
    assert 'data-state="building"' in part.text and "<progress" in part.text
    s.throttle_s = 0.0
    done = wait(c, job["id"])
    assert done["state"] == "done" and done["done"] == done["total"] == 48

    r = c.get(EX, params={"k": 9})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["index"]["images"] == 48 and body["index"]["dataset"] == "tiny" and body["kind"] == "map"
    exs = body["examples"]
    assert len(exs) == 9
    assert [e["value"] for e in exs] == sorted((e["value"] for e in exs), reverse=True)
    e = exs[0]
    for f in ("value", "index", "source", "label", "label_name", "predicted", "predicted_name", "box", "field",
              "off_image", "url"):
        assert f in e
    assert e["source"] == f"tiny:{e['ref']}" and e["label_name"] in ("cat", "dog", "frog", "ship")
    x0, y0, x1, y1 = e["box"]
    assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32 and (x1 - x0, y1 - y0) == (14, 14)  # conv2's field
    png = c.get(e["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    r = c.get(EX, params={"mode": "image", "k": 3})
    assert r.status_code == 200 and [x["box"] for x in r.json()["examples"]] == [[0, 0, 32, 32]] * 3
    r = c.get("/api/models/lenet/layers/fc3/channels/5/examples")
    assert r.status_code == 200 and r.json()["kind"] == "vector"
    # unknown model / layer: 404 saying what exists; a channel out of range, a bad mode: 422
    r = c.get("/api/models/nope/layers/conv2/channels/3/examples")
    assert r.status_code == 404 and "lenet" in r.json()["detail"]
    r = c.get("/api/models/lenet/layers/nope/channels/3/examples")
    assert r.status_code == 404 and "conv2" in r.json()["detail"]
    r = c.get("/api/models/lenet/layers/conv2/channels/16/examples")  # the same answer as on every route
    assert r.status_code == 422 and r.json()["code"] == "bad_parameter" and "0 to 15" in r.json()["detail"]
    assert c.get(EX, params={"mode": "nope"}).status_code == 422
    assert c.get("/api/indexes/nope").status_code == 404
    r = c.post("/api/indexes", json={"model": "lenet", "dataset": "/etc"})
    assert r.status_code == 422 and "default" in r.json()["detail"]
    listing = c.get("/api/indexes").json()
    assert listing["indexes"][0]["images"] == 48 and {d["name"] for d in listing["datasets"]} >= {"default", "gallery"}

    # HTML: with and without HX-Request
    for url, block in [("/models/lenet/layers/conv2/channels/3/examples", "example-grid"),
                       ("/models/lenet/layers/conv2/channels/3", "example-grid"),
                       ("/models/lenet/layers/conv2/examples", "overview-grid"),
                       ("/models/lenet/layers/fc3/examples", "overview-grid"),
                       ("/indexes", "ix-model")]:
        full = c.get(url)
        assert full.status_code == 200 and "<html" in full.text and block in full.text, url
        part = c.get(url, headers={"HX-Request": "true"})
        assert part.status_code == 200 and block in part.text, url
        if url != "/indexes":
            assert "<html" not in part.text, url
    es = c.get("/models/lenet/layers/conv2/channels/3/examples?lang=es", headers={"HX-Request": "true"})
    assert "Ejemplos de máxima activación" in es.text and "ex." not in es.text.replace("ex.png", "")
    assert c.get("/models/lenet/layers/conv2/channels/99").status_code == 422
    # the overview's images are real PNG crops
    assert c.get("/api/models/lenet/layers/conv1/channels/0/examples/0.png").status_code == 200


def test_missing_page_offers_a_build_and_form_starts_it(ex_client: TestClient) -> None:
    c = ex_client
    part = c.get("/models/cifarnet/layers/stem/channels/0/examples", headers={"HX-Request": "true"})
    assert part.status_code == 200 and 'data-state="missing"' in part.text
    assert "convscope index --model cifarnet" in part.text and 'action="/indexes"' in part.text
    r = c.post("/indexes", data={"model": "cifarnet", "dataset": "default", "split": "test", "limit": "16"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert wait(c, job_id)["state"] == "done"
    r = c.get("/api/models/cifarnet/layers/block3.conv2/channels/7/examples", params={"limit": 16})
    assert r.status_code == 200 and r.json()["index"]["limit"] == 16
    ex = r.json()["examples"][0]
    assert set(ex["off_image"]) == {"left", "top", "right", "bottom"} or ex["field"][0] < 0 or ex["field"][2] > 32
    assert c.get(ex["url"]).status_code == 200


def test_gallery_index_updates_as_uploads_arrive(ex_client: TestClient) -> None:
    c = ex_client
    for seed in range(3):
        assert c.post("/api/images", files={"file": (f"p{seed}.jpg", make_photo(seed=seed), "image/jpeg")}).status_code == 201
    r = c.post("/api/indexes", json={"model": "lenet", "dataset": "gallery"})
    assert r.status_code == 202
    assert wait(c, r.json()["id"])["state"] == "done"
    q = {"dataset": "gallery", "k": 9}
    r = c.get(EX, params=q)
    assert r.status_code == 200 and r.json()["index"]["images"] == 3
    assert all(e["label"] is None and len(e["ref"]) == 16 for e in r.json()["examples"])
    new = c.post("/api/images", files={"file": ("p9.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"]
    c.get(EX, params=q)  # serves the old index and starts the update
    job = svc(c).running() or svc(c).builds()[0]
    assert wait(c, job.id)["state"] == "done"
    assert job.done == 4 and job.resumed_from == 3  # incremental: only the new photo went through the model
    # the upload hook (app.features.examples.service.ExamplesService.notify_upload) does the same without waiting for a reader

    c.post("/api/images", files={"file": ("p10.jpg", make_photo(seed=10), "image/jpeg")})
    started = c.app.state.services.examples.notify_upload() or svc(c).running()  # type: ignore[attr-defined]
    if started is not None:
        wait(c, started.id)
    assert c.get(EX, params=q).json()["index"]["images"] == 5
    body = c.get(EX, params={"dataset": "gallery"}).json()
    assert any(e["ref"] == new for e in c.get("/api/models/lenet/layers/out/channels/0/examples", params=q).json()["examples"])
    assert c.get(body["examples"][0]["url"]).status_code == 200

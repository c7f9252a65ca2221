"""The REST API as a product (issue 24): hints that work on this server, the same code for the same mistake,
unknown fields refused, "did you mean", class names, one set of array formats with content negotiation,
ETag/304, deletion complete when its answer arrives, and one published list of error codes."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import make_photo


@pytest.fixture
def iid(client: TestClient) -> str:
    r = client.post("/api/images", files={"file": ("p.jpg", make_photo(64, 48, seed=5), "image/jpeg")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _wait(c: TestClient, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while (j := c.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.time() < deadline, j
        time.sleep(0.05)
    return j


# 1. the server's own hints work ---------------------------------------------------------------------------
def test_index_hint_names_a_data_set_this_server_has(client: TestClient) -> None:
    ex = "/api/models/lenet/layers/conv1/channels/0/examples"
    # nothing configured, no photos: no request that cannot work; the message says what to set up
    r = client.get(ex)
    assert r.status_code == 404 and r.json()["code"] == "index_missing"
    assert "post" not in r.json() and "CONVSCOPE_DATASET_PATH" in r.json()["detail"]
    assert '"dataset": "default"' not in r.json()["detail"]
    r = client.post("/api/indexes", json={"model": "lenet"})
    assert r.status_code == 422 and r.json()["code"] == "no_dataset" and "POST /api/images" in r.json()["detail"]
    # with photos: the hint names the gallery, and that very body works
    for seed in range(2):
        client.post("/api/images", files={"file": (f"{seed}.jpg", make_photo(seed=seed), "image/jpeg")})
    hint = client.get(ex).json()
    assert hint["post"] == {"model": "lenet", "dataset": "gallery"} and '"dataset": "gallery"' in hint["detail"]
    r = client.post("/api/indexes", json=hint["post"])
    assert r.status_code == 202, r.text
    assert _wait(client, r.json()["id"])["state"] == "done"
    # the minimal body works too (the best data set: here the gallery)
    r = client.post("/api/indexes", json={"model": "cifarnet"})
    assert r.status_code == 202 and r.json()["params"]["dataset"] == "gallery", r.text
    _wait(client, r.json()["id"])


# 2. the same mistake, the same answer ---------------------------------------------------------------------
def test_channel_out_of_range_is_422_bad_parameter_everywhere(client: TestClient, iid: str) -> None:
    urls = [(f"/api/images/{iid}/activations/conv1", {"model": "lenet", "channel": 8}),
            (f"/api/images/{iid}/arithmetic", {"model": "lenet", "layer": "conv1", "channel": 8}),
            ("/api/models/lenet/layers/conv1/channels/8/examples", {}),
            ("/api/models/lenet/layers/conv1/channels/8/featvis", {})]
    for url, q in urls:
        r = client.get(url, params=q)
        assert (r.status_code, r.json()["code"]) == (422, "bad_parameter"), (url, r.text)
        assert "0 to 7" in r.json()["detail"] and r.json()["valid_range"] == [0, 7], url
    # errors[].loc has one shape: the field's path without body/query
    for url, q in ((f"/api/images/{iid}/predictions", {"k": "x"}), ("/api/lecture/output-size", {"n": "x"})):
        errs = client.get(url, params=q).json()["errors"]
        assert errs[0]["loc"] in (["k"], ["n"]), errs


# 3. unknown JSON fields are refused with the known ones ------------------------------------------------
def test_unknown_json_fields_are_refused_listing_the_known_ones(client: TestClient) -> None:
    r = client.post("/api/indexes", json={"model": "lenet", "datset": "gallery"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    body = r.json()
    assert "datset" in body["detail"] and "dataset" in body["detail"] and "dataset" in body["valid"]
    r = client.post("/api/lecture/conv2d", json={"input": [[1, 2], [3, 4]], "kernel": [[1]], "stide": 2})
    assert r.status_code == 422 and "stide" in r.json()["detail"] and "stride" in r.json()["valid"]


# 4. did you mean, and a short list ------------------------------------------------------------------------
def test_did_you_mean_and_a_short_list_for_many_names(client: TestClient, iid: str) -> None:
    r = client.get("/api/models/cifarnt")
    assert r.status_code == 404 and r.json()["did_you_mean"] == ["cifarnet"] and "did you mean" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/activations/block1.cnv1", params={"model": "cifarnet"})  # 27 layers
    body = r.json()
    assert r.status_code == 404 and body["code"] == "unknown_layer" and body["did_you_mean"][0] == "block1.conv1"
    assert body["count"] == 27 and body["list_url"] == "/api/models/cifarnet" and len(body["valid"]) <= 8
    assert "GET /api/models/cifarnet" in body["detail"] and len(r.content) < 700
    r = client.get(f"/api/images/{iid}/activations/conv9", params={"model": "lenet"})  # few: all of them
    assert "conv1" in r.json()["valid"] and "fc3" in r.json()["valid"] and "count" not in r.json()


# 5. class names wherever a class index is -----------------------------------------------------------------
def test_class_names_are_accepted_and_unknown_ones_get_did_you_mean(client: TestClient, iid: str) -> None:
    by_name = client.get(f"/api/images/{iid}/attribution", params={"model": "lenet", "method": "saliency", "target": "cat"})
    by_index = client.get(f"/api/images/{iid}/attribution", params={"model": "lenet", "method": "saliency", "target": 3})
    assert by_name.status_code == 200 and by_name.json()["target"] == 3 and by_name.json()["label"] == "cat"
    assert by_name.json()["values"] == by_index.json()["values"]
    r = client.get(f"/api/images/{iid}/attribution", params={"model": "lenet", "target": "cta"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_class" and r.json()["did_you_mean"] == ["cat"]
    fv = client.get("/api/models/lenet/layers/out/channels/cat/featvis", params={"objective": "class"})
    assert fv.status_code == 404 and fv.json()["code"] == "not_rendered"
    assert "/channels/3/featvis" in fv.json()["render"]["url"]
    r = client.get("/api/models/lenet/layers/out/channels/dgo/featvis", params={"objective": "class"})
    assert r.status_code == 404 and r.json()["did_you_mean"] == ["dog"]


# 6. the same formats everywhere, chosen by format= or Accept ----------------------------------------------
def test_array_formats_and_content_negotiation(client: TestClient, iid: str) -> None:
    act = f"/api/images/{iid}/activations/conv1"
    for url, q, shape in ((act, {"model": "lenet"}, (8, 28, 28)),
                          ("/api/models/lenet/filters", {}, (8, 3, 5, 5)),
                          (f"/api/images/{iid}/attribution", {"model": "lenet", "method": "saliency"}, None)):
        npy = client.get(url, params={**q, "format": "npy"})
        assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy", url
        arr = np.load(io.BytesIO(npy.content))
        js = client.get(url, params=q).json()
        assert list(arr.shape) == js["shape"] and (shape is None or arr.shape == shape), url
        neg = client.get(url, params=q, headers={"Accept": "application/x-npy"})
        assert neg.headers["content-type"] == "application/x-npy" and neg.content == npy.content, url
        png = client.get(url, params=q, headers={"Accept": "image/png"})
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG", url
        assert client.get(url, params=q, headers={"Accept": "text/html,*/*"}).headers["content-type"] == "application/json"
    r = client.get("/api/models/lenet/layers/conv1/channels/0/featvis", params={"format": "npy"})
    assert r.status_code == 422 and r.json()["code"] == "bad_parameter" and "json, png" in r.json()["detail"]


# 7. ETag + Cache-Control, 304 on If-None-Match -------------------------------------------------------------
def test_deterministic_answers_carry_an_etag_and_answer_304(client: TestClient, iid: str) -> None:
    for url, q in ((f"/api/images/{iid}/predictions", {"model": "lenet"}),
                   (f"/api/images/{iid}/analysis", {"model": "lenet"}),
                   (f"/api/images/{iid}/activations/conv1", {"model": "lenet", "format": "npy"}),
                   ("/api/models/lenet/filters", {"format": "png"}),
                   (f"/api/images/{iid}/attribution", {"model": "lenet", "method": "saliency"})):
        r = client.get(url, params=q)
        assert r.status_code == 200 and r.headers["etag"].startswith('W/"') and "no-cache" in r.headers["cache-control"]
        again = client.get(url, params=q, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == r.headers["etag"], url
        assert client.get(url, params=q, headers={"If-None-Match": '"other"'}).status_code == 200
    a = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet"}).headers["etag"]
    b = client.get(f"/api/images/{iid}/predictions", params={"model": "cifarnet"}).headers["etag"]
    c = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet", "k": 3}).headers["etag"]
    assert len({a, b, c}) == 3
    assert "private" in client.get(f"/api/images/{iid}/predictions").headers["cache-control"]
    assert "public" in client.get("/api/models/lenet/filters").headers["cache-control"]


# 8. deletion is complete when its answer arrives ---------------------------------------------------------
def test_deleted_photo_leaves_the_examples_at_once(client: TestClient) -> None:
    ids = [client.post("/api/images", files={"file": (f"{s}.jpg", make_photo(seed=s), "image/jpeg")}).json()["id"]
           for s in range(3)]
    job = client.post("/api/indexes", json={"model": "lenet", "dataset": "gallery"}).json()
    assert _wait(client, job["id"])["state"] == "done"
    ex = "/api/models/lenet/layers/out/channels/0/examples"
    q = {"dataset": "gallery", "mode": "image"}
    before = client.get(ex, params=q).json()["examples"]
    assert {e["ref"] for e in before} == set(ids)
    gone = before[0]["ref"]
    assert client.delete(f"/api/images/{gone}").status_code == 204
    after = client.get(ex, params=q).json()["examples"]  # at once, while the index is rebuilt
    assert gone not in {e["ref"] for e in after} and [e["rank"] for e in after] == list(range(len(after)))
    assert all(client.get(e["url"]).status_code == 200 for e in after)
    # a rank the channel does not have: the same 422 as any number out of range (not index_missing)
    r = client.get(after[0]["url"].replace("/0.png", f"/{len(after) + 3}.png"))
    assert (r.status_code, r.json()["code"]) == (422, "bad_parameter") and r.json()["valid_range"] == [0, len(after) - 1]


# 9. one list of error codes -------------------------------------------------------------------------------
def test_every_code_the_app_raises_is_published() -> None:
    import ast
    import importlib
    import pkgutil
    import re

    import app
    from app import error_codes
    from app.core.errors import NotFoundError
    from app.core.lecture import MESSAGES
    from app.errors import AppError

    root = Path(app.__file__).parent
    for m in pkgutil.walk_packages([str(root)], "app."):
        if ".cli" not in m.name and not m.name.endswith("__main__"):
            importlib.import_module(m.name)

    def subclasses(cls: type) -> list[type]:
        return [s for c in cls.__subclasses__() for s in (c, *subclasses(c))]

    codes = {c.code for c in subclasses(AppError)} | {f"unknown_{c.kind}" for c in subclasses(NotFoundError)} | set(MESSAGES)
    for p in root.rglob("*.py"):
        text = p.read_text()
        codes |= set(re.findall(r'ImageError\(\s*"(\w+)"', text)) | set(re.findall(r'_send_problem\(send, \d+, "(\w+)"', text))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Problem" and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant):
                codes.add(node.args[1].value)
    missing = sorted(c for c in codes if not error_codes.known(c))
    assert not missing, f"codes raised but not in app/error_codes.py: {missing}"
    readme = (root.parent / "README.md").read_text()
    assert error_codes.markdown_table() in readme, "README's error table: regenerate with python -m app.error_codes"
    assert (root.parent / "docs" / "error-codes.md").read_text() == error_codes.docs_page()

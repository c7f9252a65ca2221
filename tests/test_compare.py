"""Compare (two photos / two models / two checkpoints), snapshots, checkpoint timeline, permalinks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file

from app.config import Settings
from app.core.snapshots import list_snapshots, normalize_snapshot
from app.main import create_app
from conftest import make_photo, random_spec

EPOCHS = (0, 1, 3)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lenet snapshots as the trainer writes them: weights-only fp16 safetensors."""
    root = tmp_path_factory.mktemp("models")
    for e in EPOCHS:
        m = random_spec("lenet", 100 + e).load()
        folder = root / "lenet" / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in m.state_dict().items()},
                  str(folder / f"epoch-{e:03d}.safetensors"))
    (root / "lenet" / "snapshots" / "notes.txt").write_text("ignored")
    return root


@pytest.fixture
def client(tmp_path: Path, zoo, models_dir: Path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "data", models_dir=models_dir, torchvision_models=[], default_model="cifarnet")
    with TestClient(create_app(s, zoo=zoo)) as c:
        yield c


def _upload(c: TestClient, seed: int) -> str:
    r = c.post("/api/images", files={"file": (f"p{seed}.jpg", make_photo(seed=seed), "image/jpeg")})
    assert r.status_code in (200, 201)
    return str(r.json()["id"])


def test_snapshot_names(models_dir: Path) -> None:
    assert [s.id for s in list_snapshots(models_dir, "lenet")] == ["epoch-000", "epoch-001", "epoch-003"]
    assert list_snapshots(models_dir, "cifarnet") == [] and list_snapshots(models_dir, "../x") == []
    assert normalize_snapshot("3") == normalize_snapshot("epoch-3") == "epoch-003"


def test_snapshots_api_and_variants(client: TestClient) -> None:
    r = client.get("/api/models/lenet/snapshots").json()
    assert [s["epoch"] for s in r["snapshots"]] == list(EPOCHS)
    assert r["snapshots"][0]["variant"] == "lenet@epoch-000"
    assert client.get("/api/models/cifarnet/snapshots").json()["snapshots"] == []
    assert client.get("/api/models/nope/snapshots").status_code == 404
    # a snapshot is a read-only variant: loaded fp16 -> float32, not listed among the served models
    assert "lenet@epoch-000" not in [m["name"] for m in client.get("/api/models").json()]
    lm = client.app.state.services.engine.zoo.get("lenet@epoch-001")  # type: ignore[attr-defined]
    assert all(p.dtype == torch.float32 for p in lm.module.parameters())
    expected = random_spec("lenet", 101).load().state_dict()["conv1.weight"].half().float()
    assert torch.equal(lm.module.state_dict()["conv1.weight"], expected)
    # every existing endpoint takes the variant as model=
    img = _upload(client, 1)
    f0 = client.get("/api/models/lenet@epoch-000/filters?format=png")
    f3 = client.get("/api/models/lenet@epoch-003/filters?format=png")
    assert f0.status_code == f3.status_code == 200 and f0.content != f3.content
    a0 = client.get(f"/api/images/{img}/predictions?model=lenet@epoch-000").json()
    a3 = client.get(f"/api/images/{img}/predictions?model=lenet@epoch-003").json()
    assert a0["model"] == "lenet@epoch-000" and a0["predictions"] != a3["predictions"]
    bad = client.get(f"/api/images/{img}/predictions?model=lenet@epoch-009")
    assert bad.status_code == 404 and "epoch-003" in bad.json()["detail"]


def test_compare_two_photos_one_model(client: TestClient) -> None:
    a, b = _upload(client, 1), _upload(client, 2)
    r = client.get(f"/api/compare?a={a}&b={b}&model=lenet").json()
    assert r["a"]["image"] == a and r["b"]["image"] == b and r["paired_by"] == "name"
    conv1 = next(x for x in r["layers"] if x["a"] == "conv1")
    assert conv1["same_shape"] and conv1["mean_abs_diff"] > 0 and -1 <= conv1["cosine"] <= 1
    assert len(conv1["per_channel_mean_abs_diff"]) == conv1["shape_a"][0]
    same = client.get(f"/api/compare?a={a}&b={a}&model=lenet").json()
    assert all(x["mean_abs_diff"] == 0 for x in same["layers"])
    page = client.get(f"/compare?a={a}&b={b}&model=lenet")
    assert page.status_code == 200 and "conv1" in page.text and "data-copy-link" in page.text
    frag = client.get(f"/compare/layer?a={a}&b={b}&model=lenet&layer=conv1", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and frag.text.count("<img") == 3 and "<html" not in frag.text
    assert "|A−B|" in frag.text


def test_compare_with_no_photo_named(client: TestClient) -> None:
    """/compare alone: a clear message while nothing is uploaded, then the two latest uploads."""
    empty = client.get("/compare?lang=es")
    assert empty.status_code == 409 and "Aún no hay nada que comparar" in empty.text
    assert client.get("/api/compare").status_code == 422  # the JSON face still asks for the photos
    a = _upload(client, 5)
    one = client.get("/compare?model=lenet", follow_redirects=False)
    assert one.status_code == 303 and one.headers["location"] == f"/compare?a={a}&b={a}&model=lenet"
    b = _upload(client, 6)
    two = client.get("/compare?lang=es", follow_redirects=False)
    assert two.headers["location"] == f"/compare?a={b}&b={a}&lang=es"
    page = client.get("/compare", params={"model": "lenet"})
    assert page.status_code == 200 and f'/api/images/{b}/file' in page.text and f'/api/images/{a}/file' in page.text


def test_compare_two_models_and_two_checkpoints(client: TestClient) -> None:
    img = _upload(client, 3)
    r = client.get(f"/api/compare?image={img}&model_a=lenet&model_b=cifarnet").json()
    assert r["paired_by"] == "position" and r["a"]["model"] == "lenet" and r["b"]["model"] == "cifarnet"
    assert any(not x["same_shape"] for x in r["layers"])
    frag = client.get(f"/compare/layer?image={img}&model_a=lenet&model_b=cifarnet&index=0")
    assert frag.status_code == 200
    ck = client.get(f"/api/compare?image={img}&model=lenet&checkpoint_a=epoch-000&checkpoint_b=final").json()
    assert ck["a"]["model"] == "lenet@epoch-000" and ck["b"]["model"] == "lenet" and ck["paired_by"] == "name"
    assert all(x["same_shape"] for x in ck["layers"]) and ck["layers"][0]["mean_abs_diff"] > 0
    both = client.get(f"/api/compare?image={img}&model=lenet&snapshot=1").json()
    assert both["a"]["model"] == both["b"]["model"] == "lenet@epoch-001"
    assert client.get(f"/compare?image={img}&model=lenet&checkpoint_a=epoch-000&checkpoint_b=epoch-003").status_code == 200
    assert client.get("/api/compare?model=lenet").status_code == 422
    assert client.get(f"/api/compare?image={img}&model=lenet&checkpoint_a=epoch-042").status_code == 404


def test_timeline_scrub_and_permalink(client: TestClient) -> None:
    img = _upload(client, 4)
    page = client.get(f"/models/lenet/timeline?image={img}")
    assert page.status_code == 200 and 'type="range"' in page.text and f'max="{len(EPOCHS)}"' in page.text
    frames = []
    for step in range(len(EPOCHS) + 1):
        r = client.get(f"/models/lenet/timeline?image={img}&step={step}", headers={"HX-Request": "true"})
        assert r.status_code == 200 and 'id="tl-frame"' in r.text and "<html" not in r.text
        frames.append(r.text)
    assert len(set(frames)) == len(frames)  # filters and prediction change across training
    assert "lenet@epoch-000" in frames[0] and "Final weights" in frames[-1]
    # snapshot= names the same position as step=
    by_name = client.get(f"/models/lenet/timeline?image={img}&snapshot=epoch-001", headers={"HX-Request": "true"})
    assert by_name.text == frames[1]
    assert client.get("/models/lenet/timeline?snapshot=epoch-077").status_code == 404
    assert client.get("/models/cifarnet/timeline").status_code == 200  # no snapshots: final only


def test_permalinks_round_trip(client: TestClient) -> None:
    """The URL of every view carries its whole state: the same URL gives the same view."""
    img = _upload(client, 5)
    urls = [f"/images/{img}?model=lenet", f"/images/{img}/layers/conv2?model=lenet@epoch-001",
            f"/images/{img}/layers/conv1/channels/3?model=lenet", f"/compare?image={img}&model=lenet&checkpoint_a=1",
            f"/models/lenet/timeline?image={img}&step=2&layer=conv2", "/live?model=lenet&layer=conv2&snapshot=epoch-003"]
    for u in urls:
        first, again = client.get(u), client.get(u)
        assert first.status_code == 200, u
        assert first.text == again.text, u
    page = client.get(f"/images/{img}?model=lenet").text
    assert "data-copy-link" in page and f"/api/images/{img}/export.zip?model=lenet" in page
    layer = client.get(f"/images/{img}/layers/conv2?model=lenet", headers={"HX-Request": "true"}).text
    assert f'data-href="/images/{img}/layers/conv2?model=lenet"' in layer
    chan = client.get(f"/images/{img}/layers/conv1/channels/3?model=lenet", headers={"HX-Request": "true"}).text
    assert f'data-href="/images/{img}/layers/conv1/channels/3?model=lenet"' in chan
    # the npy export of a snapshot's activation matches its JSON
    npy = client.get(f"/api/images/{img}/activations/conv1?model=lenet@epoch-003&format=npy")
    import io

    arr = np.load(io.BytesIO(npy.content))
    js = client.get(f"/api/images/{img}/activations/conv1?model=lenet@epoch-003").json()
    assert np.allclose(arr, np.array(js["values"]), atol=1e-6)

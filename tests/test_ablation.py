"""Switching channels off: predictions and the analysis against a forward pass with the channels zeroed by
this test's own hook; bad values get a 4xx that lists the layer's channels; the layer view's toggles."""

from __future__ import annotations

import io

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.core.zoo import Zoo
from tests.conftest import make_photo


def _zeroed_pass(zoo: Zoo, client: TestClient, iid: str, model: str, off: dict[str, list[int]],
                 keep: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    lm = zoo.get(model)
    x = lm.spec.preprocess.tensor(Image.open(io.BytesIO(client.get(f"/api/images/{iid}/file").content)).convert("RGB"))
    mods = dict(lm.module.named_modules())
    kept: dict[str, torch.Tensor] = {}

    def zero(chs: list[int]):  # noqa: ANN202
        def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            for c in chs:
                out[0, c] = 0.0
            return out
        return hook

    hs = [mods[n].register_forward_hook(zero(chs)) for n, chs in off.items()]
    if keep:
        hs.append(mods[keep].register_forward_hook(lambda m, i, o: kept.__setitem__("a", o[0].clone())))
    try:
        with torch.no_grad():
            probs = torch.softmax(lm.module(x), dim=1)[0]
    finally:
        for h in hs:
            h.remove()
    return probs, kept.get("a")


@pytest.mark.parametrize(("model", "ablate", "off", "later"), [
    ("lenet", "conv1:3,conv1:5", {"conv1": [3, 5]}, "conv2"),
    ("cifarnet", "stem:0,stem:7,block2.conv1:10", {"stem": [0, 7], "block2.conv1": [10]}, "block3.relu2"),
])
def test_ablation_equals_a_pass_with_the_channels_zeroed(client: TestClient, zoo: Zoo, model: str, ablate: str,
                                                         off: dict[str, list[int]], later: str) -> None:
    iid = client.post("/api/images", files={"file": ("p.jpg", make_photo(seed=5), "image/jpeg")}).json()["id"]
    want, act = _zeroed_pass(zoo, client, iid, model, off, keep=later)
    body = client.get(f"/api/images/{iid}/predictions", params={"model": model, "k": 10, "ablate": ablate}).json()
    assert body["ablated"] == off
    got = {p["index"]: p["probability"] for p in body["predictions"]}
    assert [got[i] for i in range(10)] == pytest.approx(want.tolist(), rel=1e-5, abs=1e-7)
    intact = client.get(f"/api/images/{iid}/predictions", params={"model": model, "k": 10}).json()
    assert "ablated" not in intact and intact["predictions"] != body["predictions"]
    an = client.get(f"/api/images/{iid}/analysis", params={"model": model, "k": 10, "ablate": ablate}).json()
    stats = {li["name"]: li for li in an["layers"]}
    for layer, chs in off.items():
        for c in chs:
            assert stats[layer]["max"][c] == 0.0 and stats[layer]["min"][c] == 0.0
    flat = act.reshape(act.shape[0], -1)
    assert stats[later]["max"] == pytest.approx(flat.amax(1).tolist(), rel=1e-5, abs=1e-6)
    assert stats[later]["mean"] == pytest.approx(flat.mean(1).tolist(), rel=1e-4, abs=1e-6)
    # the intact analysis is unchanged by an ablated request (nothing cached from it)
    again = client.get(f"/api/images/{iid}/predictions", params={"model": model, "k": 10}).json()
    assert again == intact


def test_bad_ablate_values_list_the_channels(client: TestClient) -> None:
    iid = client.post("/api/images", files={"file": ("p.jpg", make_photo(seed=6), "image/jpeg")}).json()["id"]
    r = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet", "ablate": "conv1:8"})
    assert r.status_code == 422 and "conv1 has channels 0 to 7" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/analysis", params={"model": "lenet", "ablate": "conv1:x"})
    assert r.status_code == 422 and "0 to 7" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet", "ablate": "conv1"})
    assert r.status_code == 422 and "layer:channel" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet", "ablate": "conv9:1"})
    assert r.status_code == 404 and "conv1" in r.json()["valid"]


def test_layer_view_toggles(client: TestClient) -> None:
    iid = client.post("/api/images", files={"file": ("p.jpg", make_photo(seed=6), "image/jpeg")}).json()["id"]
    page = client.get(f"/images/{iid}/layers/conv1", params={"model": "lenet", "lang": "es"}).text
    assert page.count('name="ablate" value="conv1:') == 8 and "Apaga canales" in page
    part = client.get(f"/images/{iid}/ablation", params=[("model", "lenet"), ("ablate", "conv1:1"), ("ablate", "conv1:2")],
                      headers={"HX-Request": "true"}).text
    assert "Without them" in part and "<code>conv1</code>: 1, 2" in part

"""A unit's real arithmetic: every conv of lenet and cifarnet at random positions (borders included) against
the activation endpoint and torch.nn.functional; pooling, batch norm, linear and the last layer's softmax;
the HTML face from a channel view."""

from __future__ import annotations

import io
import random

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

from app.core.zoo import Zoo
from tests.conftest import make_photo


def _upload(client: TestClient) -> str:
    return client.post("/api/images", files={"file": ("p.jpg", make_photo(seed=3), "image/jpeg")}).json()["id"]


def _inputs(client: TestClient, zoo: Zoo, iid: str, model: str) -> dict[str, torch.Tensor]:
    """Every layer's input, captured by this test's own hooks on the model's forward."""
    lm = zoo.get(model)
    pic = Image.open(io.BytesIO(client.get(f"/api/images/{iid}/file").content)).convert("RGB")
    x = lm.spec.preprocess.tensor(pic)
    mods = dict(lm.module.named_modules())
    got: dict[str, torch.Tensor] = {}

    def keep(name: str):  # noqa: ANN202
        def hook(_m: torch.nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
            got.setdefault(name, inp[0][0].clone())
        return hook

    hs = [mods[li.name].register_forward_pre_hook(keep(li.name)) for li in lm.layers]
    try:
        with torch.no_grad():
            lm.module(x)
    finally:
        for h in hs:
            h.remove()
    return got


def _served(client: TestClient, iid: str, model: str, layer: str, c: int) -> torch.Tensor:
    """Channel ``c`` of the served activation (a vector layer: its feature ``c``, as a 1-element tensor)."""
    body = client.get(f"/api/images/{iid}/activations/{layer}", params={"model": model}).json()
    values = torch.tensor(body["values"])
    return values[c] if values.dim() == 3 else values[c:c + 1]


@pytest.mark.parametrize("model", ["lenet", "cifarnet"])
def test_every_conv_at_random_and_border_positions(client: TestClient, zoo: Zoo, model: str) -> None:
    rng = random.Random(7)
    iid = _upload(client)
    lm = zoo.get(model)
    inputs = _inputs(client, zoo, iid, model)
    mods = dict(lm.module.named_modules())
    convs = [li for li in lm.layers if li.type == "Conv2d"]
    assert len(convs) >= 2
    for li in convs:
        m = mods[li.name]
        c_out, h, w = li.output_shape
        ref = F.conv2d(inputs[li.name][None], m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)[0]
        positions = [(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0)] + [(rng.randrange(h), rng.randrange(w)) for _ in range(2)]
        for y, x in positions:
            c = rng.randrange(c_out)
            a = client.get(f"/api/images/{iid}/arithmetic",
                           params={"model": model, "layer": li.name, "channel": c, "y": y, "x": x}).json()
            served = _served(client, iid, model, li.name, c)
            assert a["output"] == pytest.approx(float(served[y, x]), rel=1e-4, abs=1e-4)
            assert a["served"] == float(served[y, x])
            assert a["output"] == pytest.approx(float(ref[c, y, x]), rel=1e-4, abs=1e-4)
            # each partial sum: that input channel alone through F.conv2d, no bias
            for i, ch in enumerate(a["input_channels"]):
                part = F.conv2d(inputs[li.name][None, ch:ch + 1], m.weight[c:c + 1, i:i + 1], None, m.stride, m.padding)
                assert a["partials"][i] == pytest.approx(float(part[0, 0, y, x]), rel=1e-4, abs=1e-5)
            pad = m.padding[0]
            assert a["window_origin"] == [y * m.stride[0] - pad, x * m.stride[1] - pad]
            if pad and (y == 0 or x == 0):  # the window reaches into the padding: zeros there, marked outside
                assert not all(all(row) for row in a["inside"])
            assert a["bias"] == pytest.approx(float(m.bias[c]) if m.bias is not None else 0.0)


def test_pool_batchnorm_linear_and_softmax(client: TestClient, zoo: Zoo) -> None:
    iid = _upload(client)
    for model in ("lenet", "cifarnet"):
        lm = zoo.get(model)
        inputs = _inputs(client, zoo, iid, model)
        mods = dict(lm.module.named_modules())
        for li in lm.layers:
            if li.type not in ("MaxPool2d", "AdaptiveMaxPool2d", "BatchNorm2d", "Linear", "ReLU", "Flatten"):
                continue
            c = li.output_shape[0] - 1
            params: dict[str, object] = {"model": model, "layer": li.name, "channel": c}
            if li.is_spatial:
                params.update(y=li.output_shape[1] - 1, x=0)
            a = client.get(f"/api/images/{iid}/arithmetic", params=params).json()
            served = _served(client, iid, model, li.name, c)
            want = float(served[li.output_shape[1] - 1, 0]) if li.is_spatial else float(served.flatten()[0])
            assert a["output"] == pytest.approx(want, rel=1e-4, abs=1e-4), li.name
            m, inp = mods[li.name], inputs[li.name]
            if li.type == "BatchNorm2d":
                ref = F.batch_norm(inp[None], m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)
                assert a["output"] == pytest.approx(float(ref[0, c, -1, 0]), rel=1e-4, abs=1e-5)
            if li.type == "Linear":
                ref = F.linear(inp.flatten()[None], m.weight, m.bias)
                assert a["output"] == pytest.approx(float(ref[0, c]), rel=1e-4, abs=1e-4)
                assert len(a["contributions"]) == min(12, inp.numel())
            if li.type == "MaxPool2d":
                assert a["op"] == "max" and max(max(r) for r in a["window"]) == pytest.approx(a["output"])
        last = lm.layers[-1].name
        a = client.get(f"/api/images/{iid}/arithmetic", params={"model": model, "layer": last, "channel": 3}).json()
        probs = client.get(f"/api/images/{iid}/predictions", params={"model": model, "k": 10}).json()["predictions"]
        p3 = next(p["probability"] for p in probs if p["index"] == 3)
        assert a["softmax"]["probability"] == pytest.approx(p3, rel=1e-4, abs=1e-6)
    # a conv followed by its ReLU shows the activation applied
    a = client.get(f"/api/images/{iid}/arithmetic",
                   params={"model": "lenet", "layer": "conv1", "channel": 0, "y": 3, "x": 4}).json()
    assert a["then"]["layer"] == "relu1" and a["then"]["output"] == pytest.approx(max(0.0, a["served"]))


def test_bad_positions_and_the_html_face(client: TestClient) -> None:
    iid = _upload(client)
    r = client.get(f"/api/images/{iid}/arithmetic", params={"model": "lenet", "layer": "conv1", "channel": 8, "y": 0, "x": 0})
    assert r.status_code == 422 and "0 to 7" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/arithmetic", params={"model": "lenet", "layer": "conv1", "channel": 0, "y": 28, "x": 0})
    assert r.status_code == 422 and "0 to 27" in r.json()["detail"]
    r = client.get(f"/api/images/{iid}/arithmetic", params={"model": "lenet", "layer": "nope", "channel": 0})
    assert r.status_code == 404
    ch = client.get(f"/images/{iid}/layers/conv1/channels/2", params={"model": "lenet", "lang": "es"}).text
    assert "/arithmetic?model=lenet&amp;layer=conv1&amp;channel=2&amp;y=0&amp;x=0" in ch and 'id="arith-slot"' in ch
    for lang, word in (("en", "Before the activation"), ("es", "Antes de la activación")):
        page = client.get(f"/images/{iid}/arithmetic", params={"model": "lenet", "layer": "conv1", "channel": 2, "y": 0,
                                                               "x": 0, "lang": lang}, headers={"HX-Request": "true"}).text
        assert word in page and 'style="' not in page and "<script" not in page and "Σ" in page

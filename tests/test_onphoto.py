"""On the photo: the colour scales of the activation PNGs (decoded and compared with this test's own NumPy
normalisation of the activation JSON), one channel's map over the photo (against this test's own bilinear
upsampling and blending), the receptive boxes JSON against :mod:`app.core.receptive`, and the pages."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.core.imaging import colorize
from app.core.receptive import receptive_fields
from app.core.zoo import Zoo
from tests.conftest import make_photo


def _upload(c: TestClient) -> str:
    return c.post("/api/images", files={"file": ("p.jpg", make_photo(), "image/jpeg")}).json()["id"]


def _rgb(resp) -> np.ndarray:  # noqa: ANN001
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.content)).convert("RGB"), dtype=np.int16)


def _expected(values: np.ndarray, lo: float, hi: float, size: tuple[int, int]) -> np.ndarray:
    """This test's own drawing: normalise with (lo, hi), colour with viridis, enlarge by pixel repetition."""
    t = np.clip((values - lo) / (hi - lo), 0, 1)
    f = size[0] // values.shape[0]
    return colorize(t).repeat(f, 0).repeat(f, 1).astype(np.int16)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    d = np.abs(got - want)
    assert d.mean() < 1.5 and d.max() <= 12, (d.mean(), d.max())  # viridis in 255 palette steps vs 256


def test_layer_scale_shares_one_min_max(client: TestClient) -> None:
    iid = _upload(client)
    act = np.asarray(client.get(f"/api/images/{iid}/activations/conv1", params={"model": "lenet"}).json()["values"])
    lo, hi = act.min(), act.max()
    url = f"/api/images/{iid}/activations/conv1"
    for c in (1, 4):
        got = _rgb(client.get(url, params={"model": "lenet", "channel": c, "format": "png", "scale": "layer"}))
        _close(got, _expected(act[c], lo, hi, got.shape[:2]))
        # per channel (today's default): its own min and max, which differ from the layer's
        own = _rgb(client.get(url, params={"model": "lenet", "channel": c, "format": "png"}))
        _close(own, _expected(act[c], act[c].min(), act[c].max(), own.shape[:2]))
        assert np.abs(own - got).mean() > 3
    # the whole grid with the layer scale: every tile on the same range
    grid = _rgb(client.get(url, params={"model": "lenet", "format": "png", "scale": "layer"}))
    f = 2  # 28x28 maps enlarged to 56 (tile_scale), 1 pixel between tiles
    for c in (0, 5):
        cols = int(np.ceil(np.sqrt(act.shape[0])))
        r, q = divmod(c, cols)
        y0, x0 = 1 + r * (28 * f + 1), 1 + q * (28 * f + 1)
        _close(grid[y0:y0 + 28 * f, x0:x0 + 28 * f], _expected(act[c], lo, hi, (28 * f, 28 * f)))


def test_global_scale_is_the_whole_networks_range(client: TestClient) -> None:
    iid = _upload(client)
    layers = client.get(f"/api/images/{iid}/analysis", params={"model": "lenet"}).json()["layers"]
    lo, hi = min(min(li["min"]) for li in layers), max(max(li["max"]) for li in layers)
    act = np.asarray(client.get(f"/api/images/{iid}/activations/conv2", params={"model": "lenet"}).json()["values"])
    got = _rgb(client.get(f"/api/images/{iid}/activations/conv2",
                          params={"model": "lenet", "channel": 3, "format": "png", "scale": "global"}))
    _close(got, _expected(act[3], lo, hi, got.shape[:2]))


def _bilinear(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize with pixel centres aligned (source coordinate (i + 0.5) * in / out - 0.5, clamped)."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(s).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), s - i0
    y0, y1, wy = axis(m.shape[0], h)
    x0, x1, wx = axis(m.shape[1], w)
    top = m[y0][:, x0] * (1 - wx) + m[y0][:, x1] * wx
    bottom = m[y1][:, x0] * (1 - wx) + m[y1][:, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


@pytest.mark.parametrize(("model", "layer", "channel", "opacity"),
                         [("lenet", "conv2", 3, 0.5), ("cifarnet", "block2.conv1", 7, 0.8)])
def test_overlay_blends_the_upsampled_map_over_the_network_input(client: TestClient, zoo: Zoo, model: str, layer: str,
                                                                 channel: int, opacity: float) -> None:
    iid = _upload(client)
    lm = zoo.get(model)
    act = np.asarray(client.get(f"/api/images/{iid}/activations/{layer}", params={"model": model}).json()["values"])
    got = _rgb(client.get(f"/api/images/{iid}/activations/{layer}", params={
        "model": model, "channel": channel, "format": "png", "overlay": "true", "opacity": opacity}))
    size = lm.spec.preprocess.input_size[1:]
    assert got.shape[:2] == size  # the network's input size
    photo = Image.open(io.BytesIO(client.get(f"/api/images/{iid}/file").content)).convert("RGB")
    base = np.asarray(lm.spec.preprocess.image(photo), dtype=np.float64)
    m = act[channel]
    up = _bilinear((m - m.min()) / (m.max() - m.min()), *size)
    want = base * (1 - opacity) + colorize(np.clip(up, 0, 1)).astype(np.float64) * opacity
    d = np.abs(got - want)
    assert d.mean() < 1.5 and d.max() <= 10, (d.mean(), d.max())
    # opacity 0 is the photo alone
    alone = _rgb(client.get(f"/api/images/{iid}/activations/{layer}", params={
        "model": model, "channel": channel, "format": "png", "overlay": "true", "opacity": 0}))
    assert np.abs(alone - base).max() <= 1


def test_overlay_and_scale_refusals(client: TestClient) -> None:
    iid = _upload(client)
    url = f"/api/images/{iid}/activations"
    assert client.get(f"{url}/conv1", params={"model": "lenet", "format": "png", "overlay": "true"}).status_code == 422
    assert client.get(f"{url}/fc3", params={"model": "lenet", "format": "png", "overlay": "true",
                                            "channel": 0}).status_code == 422
    assert client.get(f"{url}/conv1", params={"model": "lenet", "format": "png", "channel": 99,
                                              "overlay": "true"}).status_code == 422
    assert client.get(f"{url}/conv1", params={"model": "lenet", "format": "png", "scale": "bogus"}).status_code == 422
    assert client.get(f"{url}/conv1", params={"model": "lenet", "format": "png", "channel": 0, "overlay": "true",
                                              "opacity": 2}).status_code == 422


@pytest.mark.parametrize(("model", "layer"), [("lenet", "conv1"), ("lenet", "pool2"), ("cifarnet", "block1.pool")])
def test_receptive_json_is_receptive_py(client: TestClient, zoo: Zoo, model: str, layer: str) -> None:
    lm = zoo.get(model)
    want = receptive_fields(lm.private_copy(), lm.spec.preprocess.input_size)[layer]
    assert want is not None
    body = client.get(f"/api/models/{model}/receptive", params={"layer": layer}).json()
    h, w = want.shape
    assert body["shape"] == [h, w] and body["input_size"] == list(lm.spec.preprocess.input_size[1:])
    rng = np.random.default_rng(0)
    for y, x in [(0, 0), (h - 1, w - 1), *zip(rng.integers(0, h, 5).tolist(), rng.integers(0, w, 5).tolist(), strict=True)]:
        one = client.get(f"/api/models/{model}/receptive", params={"layer": layer, "y": y, "x": x}).json()
        assert one["box"] == list(want.box(y, x)) and one["field"] == list(want.field(y, x))
        x0, y0, x1, y1 = one["box"]
        assert body["rows"][y] == [y0, y1] and body["cols"][x] == [x0, x1]
    bad = client.get(f"/api/models/{model}/receptive", params={"layer": layer, "y": h, "x": 0})
    assert bad.status_code == 422
    assert client.get(f"/api/models/{model}/receptive", params={"layer": lm.layers[-1].name}).status_code == 422


def test_pages_show_the_scale_overlay_and_receptive_data(client: TestClient, zoo: Zoo) -> None:
    iid = _upload(client)
    for lang, words in (("en", ("shared by the layer", "On the photo")), ("es", ("común a la capa", "En la foto"))):
        page = client.get(f"/images/{iid}/layers/conv1", params={"model": "lenet", "scale": "layer", "lang": lang}).text
        assert words[0] in page and 'data-scale="layer"' in page
        assert 'style="' not in page and "<script" not in page.split("<main", 1)[1]
        ch = client.get(f"/images/{iid}/layers/conv2/channels/3", params={"model": "lenet", "lang": lang,
                                                                         "opacity": 0.4}).text
        assert words[1] in ch and 'style="' not in ch
        assert "overlay=true" in ch and "opacity=0.4" in ch and 'class="onphoto-opacity"' in ch
        rows = re.search(r'data-rows="([^"]+)"', ch).group(1).split()  # type: ignore[union-attr]
        lm = zoo.get("lenet")
        f = receptive_fields(lm.private_copy(), lm.spec.preprocess.input_size)["conv2"]
        assert rows == [f"{int(f.y.lo[i])},{int(f.y.hi[i]) + 1}" for i in range(f.shape[0])]
        assert 'class="rf-map" tabindex="0"' in ch and 'data-y="9" data-x="9"' in ch
    glob = client.get(f"/images/{iid}/layers/conv1", params={"model": "lenet", "scale": "global"}).text
    assert "shared by the whole network" in glob


def test_lecture_use_my_photo_opens_the_first_layers_arithmetic(client: TestClient, zoo: Zoo) -> None:
    for sec in (2, 4):
        for lang, words in (("en", "Use my photo"), ("es", "Usar mi foto")):
            page = client.get(f"/lecture/{sec}", params={"lang": lang}).text
            assert words in page and 'name="then" value="arithmetic"' in page and 'enctype="multipart/form-data"' in page
    r = client.post("/images", files={"file": ("p.jpg", make_photo(), "image/jpeg")}, data={"then": "arithmetic"},
                    follow_redirects=False)
    assert r.status_code == 303
    lm = zoo.get("cifarnet")  # the default model
    loc = r.headers["location"]
    assert re.fullmatch(rf"/images/[0-9a-f]{{16}}/arithmetic\?model=cifarnet&layer={lm.first_conv}&channel=0&y=14&x=14", loc)
    page = client.get(loc)
    assert page.status_code == 200
    iid = loc.split("/")[2]
    a = client.get(f"/api/images/{iid}/arithmetic", params={"model": "cifarnet", "layer": lm.first_conv, "channel": 0,
                                                              "y": 14, "x": 14}).json()
    act = client.get(f"/api/images/{iid}/activations/{lm.first_conv}", params={"model": "cifarnet", "channel": 0}).json()
    assert a["output"] == pytest.approx(act["values"][14][14], abs=1e-5)


def test_overview_thumbnails_follow_the_scale(client: TestClient) -> None:
    iid = _upload(client)
    page = client.get(f"/images/{iid}/overview", params={"model": "lenet", "scale": "global"}).text
    thumbs = re.findall(r'class="pixelated ov-thumb"[^>]*src="([^"]+)"', page)
    assert thumbs and all("scale=global" in t for t in thumbs)
    assert "shared by the whole network" in page and 'data-scale="global"' in page
    png = client.get(thumbs[0].replace("&amp;", "&"))
    assert png.status_code == 200

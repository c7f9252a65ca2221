"""Attribution maps against Captum (an independent implementation) on the served architectures."""

from __future__ import annotations

import re
import time

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam, Occlusion, Saliency

from app.core import attribution as attr
from app.core.zoo import Zoo


@pytest.fixture(params=["lenet", "cifarnet"])
def model_and_input(request, zoo: Zoo):
    lm = zoo.get(request.param)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    return lm, x


def _captum_model(lm):
    m = lm.module
    m.eval()
    return m


def test_saliency_equals_captum(model_and_input):
    lm, x = model_and_input
    ours = attr.saliency(lm.module, x, target=3).values
    theirs = Saliency(_captum_model(lm)).attribute(x.clone().requires_grad_(True), target=3, abs=True)
    torch.testing.assert_close(ours, theirs.amax(1)[0], rtol=1e-4, atol=1e-4)


def test_gradcam_equals_captum(model_and_input):
    lm, x = model_and_input
    layer = "conv2" if lm.name == "lenet" else "block3.conv2"
    ours = attr.gradcam(lm.module, x, target=5, layer=layer).values
    module = dict(lm.module.named_modules())[layer]
    cam = LayerGradCam(_captum_model(lm), module).attribute(x.clone().requires_grad_(True), target=5,
                                                             relu_attributions=True)
    theirs = LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")
    torch.testing.assert_close(ours, theirs[0, 0].detach(), rtol=1e-4, atol=1e-4)


def test_occlusion_equals_captum(model_and_input):
    lm, x = model_and_input
    ours = attr.occlusion(lm.module, x, target=2, window=8, stride=4, fill=0.0).values
    theirs = Occlusion(_captum_model(lm)).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                                   baselines=0.0, target=2)
    torch.testing.assert_close(ours, theirs[0, 0], rtol=1e-4, atol=1e-4)


def test_occlusion_of_a_large_input_in_smaller_batches_equals_captum():
    """At 160x160 the default batch is 10 windows (inputs within 2**18 pixels): 25 windows, 3 batches."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ours = attr.occlusion(net, x, target=1, window=32, stride=32).values
        one_at_a_time = attr.occlusion(net, x, target=1, window=32, stride=32, batch=1).values
    theirs = Occlusion(net).attribute(x, sliding_window_shapes=(3, 32, 32), strides=(3, 32, 32), baselines=0.0,
                                      target=1)
    torch.testing.assert_close(ours, one_at_a_time, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, theirs[0, 0], rtol=1e-4, atol=1e-5)


def test_smoothgrad_is_the_mean_gradient_over_noisy_copies(zoo: Zoo):
    lm = zoo.get("cifarnet")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ours = attr.smoothgrad(lm.module, x, 4, n=5, sigma=0.1, seed=3).values
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn((5, 3, 32, 32), generator=gen) * 0.1 * float(x.max() - x.min())
    grads = []
    for i in range(5):
        xi = (x + noise[i:i + 1]).requires_grad_(True)
        (g,) = torch.autograd.grad(lm.module(xi)[0, 4], xi)
        grads.append(g)
    ref = torch.cat(grads).mean(0).abs().amax(0)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attr.smoothgrad(lm.module, x, 4, n=3, sigma=0.0).values,
                               attr.saliency(lm.module, x, 4).values, rtol=1e-4, atol=1e-6)


def test_no_hooks_and_eval_flag_restored(zoo: Zoo):
    lm = zoo.get("lenet")
    lm.module.train()
    try:
        attr.gradcam(lm.module, torch.randn(1, 3, 32, 32), 1, "conv2")
        assert lm.module.training
    finally:
        lm.module.eval()
    assert all(len(m._forward_hooks) == 0 for m in lm.module.modules())
    with pytest.raises(ValueError):
        attr.gradcam(lm.module, torch.randn(1, 3, 32, 32), 1, "fc3")
    assert all(len(m._forward_hooks) == 0 for m in lm.module.modules())


def test_attribution_api_and_page(client):
    from conftest import make_photo

    iid = client.post("/api/images", files={"file": ("a.jpg", make_photo(), "image/jpeg")}).json()["id"]
    for method in attr.METHODS:
        r = client.get(f"/api/images/{iid}/attribution", params={"model": "cifarnet", "method": method})
        if r.status_code == 202:  # occlusion runs as a job: the same request answers the map once it is done
            _wait(client, r.headers["location"])
            r = client.get(f"/api/images/{iid}/attribution", params={"model": "cifarnet", "method": method})
        j = r.json()
        assert j["shape"] == [32, 32] and j["method"] == method and 0 <= j["target"] < 10
        png = client.get(f"/api/images/{iid}/attribution",
                         params={"model": "cifarnet", "method": method, "format": "png"})
        assert png.headers["content-type"] == "image/png"
    assert client.get(f"/api/images/{iid}/attribution", params={"method": "gradcam", "layer": "fc"}).status_code == 422
    assert client.get(f"/api/images/{iid}/attribution", params={"target": 10}).status_code == 422
    full = client.get(f"/images/{iid}/attribution", params={"model": "lenet", "method": "saliency"})
    part = client.get(f"/images/{iid}/attribution", params={"model": "lenet"}, headers={"HX-Request": "true"})
    assert full.status_code == part.status_code == 200 and "<html" in full.text and "<html" not in part.text


def test_a_page_and_its_picture_compute_the_map_once(client, monkeypatch):
    """The attribution page asks for the map's numbers, then the browser for its picture: one run."""
    import app.features.attribution.service as fs
    from conftest import make_photo

    calls = []
    real = fs.attribution_map

    def counted(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(fs, "attribution_map", counted)
    iid = client.post("/api/images", files={"file": ("o.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"]
    page = client.get(f"/images/{iid}/attribution", params={"model": "lenet", "method": "saliency"},
                      headers={"HX-Request": "true"})
    src = re.search(r'src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    png = client.get(src)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and calls == ["saliency"]
    kept = client.get(f"/api/images/{iid}/attribution", params={"model": "lenet", "method": "saliency"}).json()
    assert calls == ["saliency"]  # the page's request named no class: kept under the top class it resolved to
    engine = client.app.state.services.engine
    lm = engine.zoo.get("lenet")
    fresh = real(engine, lm, engine.image(iid), "saliency", None, None, 8, 4, 0.0, 16, 0.15)
    torch.testing.assert_close(torch.tensor(kept["values"]), fresh.values, rtol=1e-5, atol=1e-6)
    assert client.get("/api/stats").json()["attributions_kept"] == 2  # one map, under "no class named" and its class
    assert client.delete(f"/api/images/{iid}").status_code == 204
    assert client.get("/api/stats").json()["attributions_kept"] == 0  # deleting the photo drops its kept maps
    assert client.get(src).status_code == 404


def _wait(client, job_url: str) -> dict:
    for _ in range(1200):
        j = client.get(job_url).json()
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(0.02)
    raise AssertionError(j)


def test_occlusion_runs_as_a_job_on_a_copy_and_its_map_is_kept(client):
    """Occlusion costs one pass per window position: it runs as a job (202 + Location), reports its passes,
    and its map equals the core's computation on the photo; the page shows the job, then the map."""
    from conftest import make_photo

    iid = client.post("/api/images", files={"file": ("o.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"]
    q = {"model": "lenet", "method": "occlusion", "window": 8, "stride": 4}
    r = client.get(f"/api/images/{iid}/attribution", params=q)
    assert r.status_code == 202 and r.headers["location"].startswith("/api/jobs/") and r.json()["job"]["kind"] == "occlusion"
    assert r.json()["job"]["total"] == len(attr.occlusion_boxes(32, 32, 8, 4)) == 49
    page = client.get(f"/images/{iid}/attribution", params={"model": "lenet", "method": "occlusion"},
                      headers={"HX-Request": "true"})
    assert 'data-kind="occlusion"' in page.text and "<progress" in page.text or 'data-state="done"' in page.text
    job = _wait(client, r.headers["location"])
    assert job["state"] == "done" and job["done"] == job["total"] == 49
    got = client.get(job["result_url"]).json()
    engine = client.app.state.services.engine
    lm = engine.zoo.get("lenet")
    x = lm.spec.preprocess.tensor(engine.picture(engine.image(iid)))
    with torch.inference_mode():
        want = attr.occlusion(lm.private_copy(), x, got["target"], window=8, stride=4)
    torch.testing.assert_close(torch.tensor(got["values"]), want.values, rtol=1e-5, atol=1e-6)
    page = client.get(f"/images/{iid}/attribution", params={"model": "lenet", "method": "occlusion"},
                      headers={"HX-Request": "true"})
    src = re.search(r'src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert client.get(src).headers["content-type"] == "image/png"


def test_occlusion_over_its_pass_budget_is_refused_before_it_starts(tmp_path, zoo):
    """A 1x1 window moved by 1 pixel: one pass per pixel. Over the budget: 422 too_costly, naming the
    smallest stride that fits, and no job is started; a running occlusion can be cancelled."""
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from conftest import make_photo

    s = Settings(data_dir=tmp_path, models_dir=tmp_path / "none", torchvision_models=[], default_model="lenet",
                 max_occlusion_passes=64, torch_threads=1)
    with TestClient(create_app(s, zoo=zoo)) as c:
        iid = c.post("/api/images", files={"file": ("o.jpg", make_photo(seed=3), "image/jpeg")}).json()["id"]
        r = c.get(f"/api/images/{iid}/attribution", params={"method": "occlusion", "window": 1, "stride": 1})
        assert r.status_code == 422 and r.json()["code"] == "too_costly", r.text
        assert "1,024 forward passes" in r.json()["detail"] and "stride=5" in r.json()["detail"]
        assert len(attr.occlusion_boxes(32, 32, 1, 5)) <= 64 < len(attr.occlusion_boxes(32, 32, 1, 4))
        assert c.get("/api/jobs").json()["jobs"] == []
        r = c.get(f"/api/images/{iid}/attribution", params={"method": "occlusion", "window": 1, "stride": 5})
        job_url = r.headers["location"]
        c.delete(job_url)
        assert _wait(c, job_url)["state"] in ("cancelled", "done")


def test_the_occlusion_budget_answers_in_spanish_too(tmp_path, zoo):
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from conftest import make_photo

    s = Settings(data_dir=tmp_path, models_dir=tmp_path / "none", torchvision_models=[], default_model="lenet",
                 max_occlusion_passes=64, torch_threads=1)
    with TestClient(create_app(s, zoo=zoo)) as c:
        iid = c.post("/api/images", files={"file": ("o.jpg", make_photo(seed=3), "image/jpeg")}).json()["id"]
        r = c.get(f"/api/images/{iid}/attribution", params={"method": "occlusion", "window": 1, "stride": 1, "lang": "es"})
        assert r.status_code == 422 and r.json()["code"] == "too_costly"
        assert "pasadas hacia delante" in r.json()["detail"] and "stride=5" in r.json()["detail"]

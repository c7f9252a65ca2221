"""Feature visualization: the objective rises, results are deterministic and cached, jobs cancel cleanly."""

from __future__ import annotations

import re
import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.core import featvis as fv
from app.core.zoo import Zoo
from app.features.analysis.service import Engine
from app.features.featvis.service import FeatVisService, make_objective
from app.jobs import JobQueue
from app.store.database import Store


def _render(lm, obj, **kw):
    p = lm.spec.preprocess
    return fv.render(lm.module, p.mean, p.std, obj, fv.default_settings(32, **kw), input_size=32)


def test_objective_rises_for_every_kind_and_no_hook_survives(zoo: Zoo):
    lm = zoo.get("cifarnet")
    for obj in (fv.Objective("channel", "block2.conv2", 5), fv.Objective("neuron", "stem", 3),
                fv.Objective("unit", "fc", 2), fv.Objective("class", "fc", 7), fv.Objective("layer", "block1.conv1")):
        r = _render(lm, obj, steps=24)
        assert r.steps_done == 24 and len(r.history) == 24
        assert r.history[-1] > r.history[0], obj
        assert r.images.shape == (1, 3, 32, 32) and 0 <= float(r.images.min()) and float(r.images.max()) <= 1
    assert all(len(m._forward_hooks) == 0 for m in lm.module.modules())
    assert not lm.module.training


def test_transforms_jitter_is_a_roll_of_the_padded_image_and_the_colour_map_is_lucids():
    """The one-grid_sample transform equals the plain recipe (pad, roll, affine resample) whenever
    the samples stay on the padded canvas; the parameterisation's colour step is the matrix product."""
    import math

    import torch.nn.functional as F

    s = fv.default_settings(224)
    img = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    t = fv._Transforms(s, 1, 224, 224, torch.Generator())
    for dy, dx, si, ai in [(1, -1, 5, 10), (-8, 5, 6, 12), (3, 8, 4, 7)]:
        x = F.pad(img, (s.pad,) * 4, value=0.5)
        scale, angle = s.scales[si], math.radians(s.angles[ai])
        theta = torch.tensor([[[math.cos(angle) / scale, -math.sin(angle) / scale, 0.0],
                               [math.sin(angle) / scale, math.cos(angle) / scale, 0.0]]])
        grid = F.affine_grid(theta, [1, 3, 224, 224], align_corners=False) * (224 / x.shape[-1])
        want = F.grid_sample(torch.roll(x, (dy, dx), (2, 3)), grid, padding_mode="reflection", align_corners=False)
        got = F.grid_sample(x, t._grid(si, ai, dy, dx), padding_mode="reflection", align_corners=False)
        assert torch.allclose(got, want, atol=1e-4)
    for size in (32, 31, 96):  # matrix products up to 64 px (even and odd sizes), FFT beyond
        param = fv.FourierImage(2, size, 1.0, torch.Generator().manual_seed(3))
        with torch.no_grad():
            param.spectrum.normal_(generator=torch.Generator().manual_seed(4))
        spec = torch.view_as_complex(param.spectrum.detach()) * param.scale
        raw = torch.fft.irfft2(spec, s=(size, size), norm="ortho") / 4.0
        want = torch.sigmoid(torch.einsum("nchw,dc->ndhw", raw, fv._COLOR_SQRT))
        assert param.use_matrices == (size <= 64)
        assert torch.allclose(param().detach(), want, atol=1e-5), size
        padded = F.pad(want, (3, 3, 3, 3), value=0.5)  # the grey border comes out of the matrices
        assert torch.allclose(param(3).detach(), padded, atol=1e-5), size


def test_the_ascents_adam_follows_torch_optim_adam():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(3, 7, 4, generator=gen).requires_grad_()
    b = a.detach().clone().requires_grad_()
    ours, ref = fv._Adam([a], lr=0.05), torch.optim.Adam([b], lr=0.05)
    for _ in range(30):
        g = torch.randn(a.shape, generator=gen)
        ours.step((g,))
        b.grad = g.clone()
        ref.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_same_seed_same_image_other_seed_other_image(zoo: Zoo):
    lm = zoo.get("lenet")
    obj = fv.Objective("channel", "conv2", 1)
    a, b, c = _render(lm, obj, steps=8, seed=1), _render(lm, obj, steps=8, seed=1), _render(lm, obj, steps=8, seed=2)
    torch.testing.assert_close(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_diversity_term_makes_images_differ(zoo: Zoo):
    lm = zoo.get("lenet")
    obj = fv.Objective("channel", "conv2", 4)
    r = _render(lm, obj, steps=16, images=3, diversity=5.0)
    assert r.images.shape[0] == 3
    assert (r.images[0] - r.images[1]).abs().mean() > 1e-3


def test_cancel_stops_within_one_step_and_caches_nothing(tmp_path, zoo: Zoo):
    engine = Engine(Settings(data_dir=tmp_path), zoo, Store(tmp_path))
    svc = FeatVisService(engine, JobQueue(engine.gate))
    lm = zoo.get("cifarnet")
    obj = make_objective(lm, "channel", "block3.conv2", 0)
    s = svc.settings_for(lm, steps=2000)
    job = svc.start(lm, obj, s)
    while job.done < 4:
        time.sleep(0.01)
    svc.jobs.cancel(job.id)
    at_cancel = job.done
    deadline = time.time() + 20
    while job.active and time.time() < deadline:
        time.sleep(0.01)
    assert job.state == "cancelled"
    assert job.done - at_cancel <= 4 + 1, "stopped within one step (progress is reported every 4 steps)"
    assert svc.cached(lm, obj, s) is None
    assert all(len(m._forward_hooks) == 0 for m in lm.module.modules())
    assert threading.active_count() < 50


def _wait_job(client: TestClient, job_url: str) -> dict:
    for _ in range(600):
        j = client.get(job_url).json()
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(0.05)
    raise AssertionError("the job did not end")


def test_featvis_api_job_then_cached_png(client: TestClient):
    base = "/api/models/lenet/layers/conv2/channels/3/featvis"
    # GETs never start work: not rendered yet is a 404 that names the POST which renders it
    miss = client.get(base, params={"steps": 16})
    assert miss.status_code == 404 and miss.json()["code"] == "not_rendered"
    assert miss.json()["render"] == {"method": "POST", "url": f"{base}?steps=16"} and "POST" in miss.json()["detail"]
    assert client.get("/api/jobs").json()["jobs"] == []
    r = client.post(base, params={"steps": 16})
    assert r.status_code == 202 and r.headers["location"].startswith("/api/jobs/")
    assert r.json()["job"]["result_url"] == f"{base}?steps=16"
    job_url = r.headers["location"]
    for _ in range(300):
        j = client.get(job_url).json()
        if j["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert j["state"] == "done" and j["done"] == 16
    done = client.get(base, params={"steps": 16}).json()
    assert done["image_url"] == f"{base}?steps=16&format=png"  # relative to this server
    assert client.post(base, params={"steps": 16}).json() == done  # rendered: POST answers it, starts nothing
    assert done["status"] == "done" and done["history"][-1] > done["history"][0] and len(done["history"]) == 16
    png = client.get(base, params={"steps": 16, "format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    page = client.get("/models/lenet/layers/conv2/channels/3/featvis", params={"steps": 16})
    part = client.get("/models/lenet/layers/conv2/channels/3/featvis", params={"steps": 16},
                      headers={"HX-Request": "true"})
    assert "<html" in page.text and "<html" not in part.text and "format=png" in part.text
    assert client.get(base.replace("/3/", "/99/")).status_code == 422
    assert client.get("/api/models/lenet/layers/nope/channels/0/featvis").status_code == 404
    assert client.get("/api/jobs/doesnotexist").status_code == 404


def test_cli_renders_and_caches(tmp_path, monkeypatch):
    from app.cli.main import main as cli

    monkeypatch.setenv("CONVSCOPE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "png"
    assert cli(["featvis", "--model", "lenet", "--layer", "conv1", "--all", "--steps", "8", "--out", str(out),
                "--threads", "1"]) == 0
    assert len(list(out.glob("lenet-conv1-channel-*.png"))) == 8
    assert len(list((tmp_path / "data" / "blobs" / "cache").rglob("*"))) >= 8


@pytest.fixture(params=["trained", "random"])
def cifarnet_zoo(request, zoo: Zoo) -> Zoo:
    """The committed, trained cifarnet (when its card exists) and a random-weight one."""
    from app.config import ROOT
    from app.core.zoo import load_model, our_model_spec

    if request.param == "random":
        return zoo
    folder = ROOT / "models" / "cifarnet"
    if not (folder / "card.json").exists():
        pytest.skip("no trained cifarnet committed")
    return Zoo([load_model(our_model_spec(folder))])


def test_optimised_image_beats_the_top_dataset_example(tmp_path, cifarnet_zoo: Zoo):
    """For a sample of cifarnet channels, the rendered image excites the channel (mean over positions)
    more than the best whole image of a data set does, as found by the examples index."""
    from test_examples_resume import tiny_imagefolder

    zoo = cifarnet_zoo
    data = tiny_imagefolder(tmp_path / "tiny", n=64)
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=[],
                 default_model="cifarnet", dataset_path=str(data), serve_efficientnet=False)
    from app.main import create_app

    with TestClient(create_app(s, zoo=zoo)) as c:
        job = c.post("/api/indexes", json={"model": "cifarnet", "dataset": "default", "split": "test"}).json()
        for _ in range(600):
            if c.get(f"/api/indexes/{job['id']}").json()["state"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        lm = zoo.get("cifarnet")
        p = lm.spec.preprocess
        for layer, ch in (("stem", 3), ("block1.conv2", 10), ("block2.conv2", 50), ("block3.conv2", 200)):
            ex = c.get(f"/api/models/cifarnet/layers/{layer}/channels/{ch}/examples",
                       params={"mode": "image", "k": 1})
            assert ex.status_code == 200, ex.text
            best = ex.json()["examples"][0]["value"]
            obj = fv.Objective("channel", layer, ch)
            # the defaults users get (a linear layer such as the stem needs them: its optimum is a
            # saturated image that 96 steps do not reach)
            r = fv.render(lm.module, p.mean, p.std, obj, fv.default_settings(32), input_size=32)
            ours = float(fv.evaluate(lm.module, p.mean, p.std, obj, r.images, 32)[0])
            assert ours > best, (layer, ch, ours, best)


def test_forward_until_stops_at_the_layer_and_matches_a_full_pass(zoo: Zoo):
    from app.core.probe import capture, forward_until

    m = zoo.get("cifarnet").module
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), capture(m, ["block2.conv2"]) as acts:
        m(x)
    later = []
    h = m.block3.register_forward_pre_hook(lambda *_: later.append(1))
    try:
        with torch.no_grad(), forward_until(m, "block2.conv2") as run:
            out = run(x)
    finally:
        h.remove()
    torch.testing.assert_close(out, acts["block2.conv2"])
    assert later == []  # nothing after the layer ran
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())


def test_render_leaves_the_weights_trainable_and_without_gradients(zoo: Zoo):
    lm = zoo.get("lenet")
    before = [p.requires_grad for p in lm.module.parameters()]
    _render(lm, fv.Objective("channel", "conv2", 3), steps=4)
    assert [p.requires_grad for p in lm.module.parameters()] == before
    assert all(p.grad is None for p in lm.module.parameters())


def test_finished_job_panel_reloads_its_own_page_and_swaps_in_place_elsewhere(client: TestClient):
    """A finished job's panel: on the feature-visualization page itself the page reloads to show the
    result; embedded in a photo's channel view, the result takes the job's place (no navigation)."""
    fv_path = "/models/lenet/layers/conv1/channels/1/featvis"
    r = client.post("/api/models/lenet/layers/conv1/channels/1/featvis", params={"steps": 8})
    job_url = r.headers["location"]
    _wait_job(client, job_url)
    job_id = job_url.rsplit("/", 1)[1]
    done_url = f"{fv_path}?steps=8"
    panel = f"/jobs/{job_id}/panel"
    own = client.get(panel, params={"done_url": done_url},
                     headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{done_url}"})
    assert own.status_code == 200 and own.headers["HX-Redirect"] == done_url
    elsewhere = client.get(panel, params={"done_url": done_url},
                           headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/images/abc?model=lenet"})
    assert elsewhere.status_code == 200 and "HX-Redirect" not in elsewhere.headers
    assert f'hx-get="{done_url}"' in elsewhere.text.replace("&amp;", "&")
    assert 'hx-target="closest section.featvis"' in elsewhere.text
    # what that swap loads: the finished result as a fragment
    part = client.get(done_url, headers={"HX-Request": "true"})
    assert '<section class="featvis"' in part.text and "format=png" in part.text and "<html" not in part.text
    # without htmx: the panel is a plain page fragment with a link to the result
    plain = client.get(panel, params={"done_url": done_url})
    assert plain.status_code == 200 and f'href="{done_url}"' in plain.text.replace("&amp;", "&")


def test_layer_gallery_lists_rendered_pictures_and_links_the_rest(client: TestClient, zoo: Zoo):
    """/models/{model}/featvis (the lecture's fourth method links there): a layer's channels, the
    rendered ones (default settings, as the CLI's --all makes them) with their picture."""
    svc = FeatVisService(client.app.state.services.engine, client.app.state.services.jobs)
    client.app.state.services.featvis = svc
    lm = zoo.get("lenet")
    for c in (1, 4):
        svc.run(lm, make_objective(lm, "channel", "conv1", c), svc.settings_for(lm))
    j = client.get("/api/models/lenet/featvis", params={"layer": "conv1"}).json()
    assert j["objective"] == "channel" and j["settings"] == {"steps": 256, "seed": 0}
    assert [i["index"] for i in j["items"]] == list(range(8)) and j["rendered"] == 2
    assert [i["rendered"] for i in j["items"]] == [c in (1, 4) for c in range(8)]
    png = client.get(j["items"][4]["image_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == svc.cached(lm, make_objective(lm, "channel", "conv1", 4), svc.settings_for(lm))[0]
    assert j["items"][0]["image_url"] is None and j["items"][0]["url"] == "/api/models/lenet/layers/conv1/channels/0/featvis"
    # the default layer is the last convolution; a linear layer's channels are units; classes are the output's
    assert client.get("/api/models/lenet/featvis").json()["layer"] == "conv2"
    fc = client.get("/api/models/lenet/featvis", params={"layer": "fc3"}).json()
    assert fc["objective"] == "unit" and len(fc["items"]) == 120 and fc["items"][7]["url"].endswith("objective=unit")
    cls = client.get("/api/models/lenet/featvis", params={"show": "classes"}).json()
    assert cls["objective"] == "class" and cls["layer"] == "out"
    assert [i["label"] for i in cls["items"]] == list(lm.spec.categories)
    # HTML: full page and htmx partial; pictures for the rendered, links for the rest
    page = client.get("/models/lenet/featvis", params={"layer": "conv1"})
    assert page.status_code == 200 and "<html" in page.text
    assert page.text.count('class="tile pending"') == 6
    assert "/api/models/lenet/layers/conv1/channels/4/featvis?format=png" in page.text
    assert 'href="/models/lenet/layers/conv1/channels/0/featvis"' in page.text
    part = client.get("/models/lenet/featvis", params={"layer": "conv1"}, headers={"HX-Request": "true"})
    assert "<html" not in part.text and 'id="fv-gallery"' in part.text
    es = client.get("/models/lenet/featvis", params={"show": "classes", "lang": "es"})
    assert "0 de 10 generadas" in es.text and "lang=es" in es.text
    bad = client.get("/api/models/lenet/featvis", params={"layer": "nope"})
    assert bad.status_code == 404 and "conv1" in bad.json()["detail"]
    assert client.get("/models/nope/featvis").status_code == 404


def test_feature_visualization_page_speaks_spanish(client: TestClient):
    """Title, help and objective names follow the page's language (Spanish nouns keep their gender)."""
    es = client.get("/models/lenet/layers/conv1/channels/1/featvis", params={"steps": 4, "lang": "es"}).text
    assert "Visualización de características: conv1, canal 1" in es and "para activar este canal al máximo" in es
    assert ">neurona</option>" in es and ">capa entera</option>" in es and ">channel</option>" not in es
    neuron = client.get("/models/lenet/layers/conv1/channels/1/featvis",
                        params={"steps": 4, "lang": "es", "objective": "neuron"}).text
    assert "conv1, canal 1 en (14, 14)" in neuron and "activar esta neurona" in neuron
    en = client.get("/models/lenet/layers/fc3/channels/2/featvis", params={"steps": 4, "objective": "unit"}).text
    assert "Feature visualization: fc3 unit 2" in en and "to excite this unit as much" in en


def test_rendering_a_whole_layer_from_the_gallery(client: TestClient, zoo: Zoo, monkeypatch):
    """The gallery's 'render the missing' (JSON and HTML faces): one background job renders the
    pictures not there yet, counting pictures; a layer too large for the browser is sent to the CLI."""
    svc = FeatVisService(client.app.state.services.engine, client.app.state.services.jobs)
    client.app.state.services.featvis = svc
    lm = zoo.get("lenet")
    svc.run(lm, make_objective(lm, "channel", "conv1", 3), svc.settings_for(lm))
    r = client.post("/api/models/lenet/featvis", params={"layer": "conv1"})
    assert r.status_code == 202 and r.json()["job"]["kind"] == "featvis-many" and r.json()["job"]["total"] == 7
    j = _wait_job(client, r.headers["location"])
    assert j["state"] == "done" and j["done"] == 7
    g = client.get("/api/models/lenet/featvis", params={"layer": "conv1"}).json()
    assert g["rendered"] == 8 and all(i["rendered"] for i in g["items"])
    # the same pictures as one page's job makes (the CLI and the gallery agree on the settings)
    one = svc.cached(lm, make_objective(lm, "channel", "conv1", 5), svc.settings_for(lm))
    assert one is not None and one[1]["steps"] == 256
    again = client.post("/api/models/lenet/featvis", params={"layer": "conv1"})
    assert again.status_code == 200 and again.json() == {"status": "done", "rendered": 8}
    # HTML: htmx gets the progress panel, a plain form post the gallery showing it
    part = client.post("/models/lenet/featvis", params={"show": "classes"}, headers={"HX-Request": "true"})
    assert part.status_code == 200 and 'class="job"' in part.text and "<html" not in part.text
    job_id = re.search(r'id="job-([0-9a-f]+)"', part.text).group(1)
    assert client.get(f"/api/jobs/{job_id}").json()["total"] == 10
    client.post(f"/jobs/{job_id}/cancel")
    plain = client.post("/models/lenet/featvis", params={"layer": "conv2"}, follow_redirects=False)
    assert plain.status_code == 303 and "layer=conv2" in plain.headers["location"]
    job_id = re.search(r"job=([0-9a-f]+)", plain.headers["location"]).group(1)
    assert f'id="job-{job_id}"' in client.get(plain.headers["location"]).text  # the gallery shows its progress
    client.post(f"/jobs/{job_id}/cancel")
    assert _wait_job(client, f"/api/jobs/{job_id}")["state"] == "cancelled"
    # too many for the browser: a clear 422 naming the command line
    monkeypatch.setattr("app.features.featvis.gallery._render_limit", lambda lm: 4)
    big = client.post("/api/models/lenet/featvis", params={"layer": "fc3"})
    assert big.status_code == 422
    detail = big.json()["detail"]
    assert "120 pictures" in detail and "convscope featvis --model lenet --layer fc3 --all --objective unit" in detail
    html = client.get("/models/lenet/featvis", params={"layer": "fc3"}).text
    assert 'method="post" action="/models/lenet/featvis' not in html  # no button: the page shows the command


def test_a_cancelled_layer_job_keeps_the_pictures_made(client: TestClient, zoo: Zoo):
    svc = FeatVisService(client.app.state.services.engine, client.app.state.services.jobs)
    client.app.state.services.featvis = svc
    r = client.post("/api/models/lenet/featvis", params={"layer": "fc3"})
    job_url = r.headers["location"]
    for _ in range(600):
        if client.get(job_url).json()["done"] >= 2:
            break
        time.sleep(0.02)
    client.post(f"/jobs/{job_url.rsplit('/', 1)[1]}/cancel")
    j = _wait_job(client, job_url)
    assert j["state"] == "cancelled" and 2 <= j["done"] < 120
    g = client.get("/api/models/lenet/featvis", params={"layer": "fc3"}).json()
    assert g["rendered"] == j["done"]  # every finished picture kept, no partial one

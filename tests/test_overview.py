"""The overview of a whole network for a photo: its edges against the model's own autograd graph (an
independent record of the data flow), its blocks, its top channels against the activations, and its page."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.core import nets
from app.core.graph import layer_graph
from app.core.probe import resolve, summarize
from app.core.zoo import Zoo, efficientnet_spec
from app.main import create_app
from tests.conftest import make_photo


def autograd_edges(module: torch.nn.Module, names: list[str], size: tuple[int, int, int]) -> tuple[list[str], set]:
    """(layers in the order they run, {(source, target)}) from the autograd graph of one pass: a layer's
    sources are the nearest layers whose output's grad_fn its own grad_fn reaches."""
    fn_layer: dict[object, str] = {}
    ran: list[str] = []
    fns: dict[str, object] = {}
    handles = []
    for n, m in resolve(module, names).items():
        def hook(_m, _i, out, n=n):  # noqa: ANN001
            ran.append(n)
            fns[n] = out.grad_fn
            fn_layer.setdefault(out.grad_fn, n)
        handles.append(m.register_forward_hook(hook))
    x = torch.randn(1, *size, requires_grad=True)
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    edges = set()
    for n in ran:
        own = fn_layer[fns[n]]
        if own != n:  # the very tensor of an earlier layer, handed on
            edges.add((own, n))
            continue
        stack, seen = [f for f, _ in fns[n].next_functions if f is not None], set()
        while stack:
            f = stack.pop()
            if f in seen:
                continue
            seen.add(f)
            if f in fn_layer:
                edges.add((fn_layer[f], n))
            else:
                stack.extend(g for g, _ in f.next_functions if g is not None)
    return ran, edges


def skips(edges: set) -> set:
    """Edges a -> b where another source of b is computed from a (the definition, on the autograd edges)."""
    anc: dict[str, set] = {}

    def ancestors(n: str) -> set:
        if n not in anc:
            anc[n] = set()
            for s, t in edges:
                if t == n:
                    anc[n] |= {s} | ancestors(s)
        return anc[n]

    out = set()
    for s, t in edges:
        others = {o for o, tt in edges if tt == t and o != s}
        if any(s in ancestors(o) for o in others):
            out.add((s, t))
    return out


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    m = efficientnet_spec().load().eval()
    for mod in m.modules():
        if isinstance(getattr(mod, "inplace", None), bool):
            mod.inplace = False
    return m


@pytest.mark.parametrize("arch", ["lenet", "cifarnet", "efficientnet-lite0"])
def test_edges_are_the_models_own_data_flow(arch: str, request: pytest.FixtureRequest) -> None:
    torch.manual_seed(0)
    if arch == "efficientnet-lite0":
        m, size = request.getfixturevalue("lite0"), (3, 224, 224)
    else:
        m, size = nets.build(arch).eval(), (3, 32, 32)
    names = [li.name for li in summarize(m, size)]
    g = layer_graph(m, names)
    ran, want = autograd_edges(m, names, size)
    assert list(g.order) == ran
    assert {(e.source, e.target) for e in g.edges} == want
    assert {(e.source, e.target) for e in g.edges if e.kind == "skip"} == skips(want)
    if arch == "efficientnet-lite0":
        assert len([gr for gr in g.groups if gr.name.startswith("blocks.")]) == 16
        assert len(skips(want)) >= 9  # the blocks with a shortcut (same shape in and out)
    elif arch == "cifarnet":
        assert [gr.name for gr in g.groups] == ["block1", "block2", "block3"]
        assert not skips(want)
    else:
        assert not g.groups and all(e.kind == "data" for e in g.edges)


def _client(tmp_path, zoo: Zoo) -> TestClient:  # noqa: ANN001
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "no-models", torchvision_models=[],
                 default_model=zoo.names()[0])
    return TestClient(create_app(s, zoo=zoo))


def _check_overview(c: TestClient, model: str) -> None:
    iid = c.post("/api/images", files={"file": ("p.jpg", make_photo(), "image/jpeg")}).json()["id"]
    body = c.get(f"/api/images/{iid}/overview", params={"model": model}).json()
    layers = [n["layer"] for n in body["nodes"]]
    an = c.get(f"/api/images/{iid}/analysis", params={"model": model}).json()
    assert sorted(layers) == sorted(li["name"] for li in an["layers"])
    stats = {li["name"]: li for li in an["layers"]}
    for n in body["nodes"]:
        hi = stats[n["layer"]]["max"]
        best = sorted(range(len(hi)), key=lambda c: -hi[c])[:3]
        assert [t["max"] for t in n["top_channels"]] == pytest.approx([hi[c] for c in best], rel=1e-5)
        assert n["shape"] == stats[n["layer"]]["shape"]
    assert {e["kind"] for e in body["edges"]} <= {"data", "skip"}
    for lang in ("en", "es"):
        page = c.get(f"/images/{iid}/overview", params={"model": model, "lang": lang})
        assert page.status_code == 200
        assert 'style="' not in page.text and "<script" not in page.text.split("<main", 1)[1]
        hrefs = re.findall(r'href="(/images/[^"]+/layers/[^"?]+)', page.text)
        assert len(hrefs) == len(layers)
        assert all(re.search(r'<img [^>]*alt="[^"]+"', t) for t in re.findall(r"<img [^>]*>", page.text))
        assert ("La red completa" if lang == "es" else "The whole network") in page.text
    photo = c.get(f"/images/{iid}", params={"model": model}).text
    assert f'hx-get="/images/{iid}/overview?model={model}"' in photo
    first = layers[0]
    assert c.get(f"/images/{iid}/layers/{first}", params={"model": model}).status_code == 200


def test_overview_json_and_page_for_our_models(client: TestClient) -> None:
    for model in ("lenet", "cifarnet"):
        _check_overview(client, model)


def test_overview_json_and_page_for_efficientnet_lite0(tmp_path) -> None:  # noqa: ANN001
    spec = dataclasses.replace(efficientnet_spec(), traceable=False)  # eager passes: no tracing at load
    with _client(tmp_path, Zoo.load([spec])) as c:
        _check_overview(c, "efficientnet-lite0")
        iid = c.get("/api/images").json()[0]["id"]
        body = c.get(f"/api/images/{iid}/overview").json()
        bypassed = [g["name"] for g in body["groups"] if g["bypassed_by_skip"]]
        assert len(bypassed) == 9 and all(b.startswith("blocks.") for b in bypassed)
        page = c.get(f"/images/{iid}/overview").text
        assert page.count('class="ov-group"') == len(body["groups"]) and "+ shortcut" in page

"""The overview of a torchvision resnet18 served the way a teacher would: its weights file in the torch hub cache
(TORCH_HOME, random weights saved under the file name torchvision expects), CONVSCOPE_TORCHVISION_MODELS naming
it; the overview's edges, skips included, against the model's own autograd graph."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.core.probe import resolve
from app.main import create_app
from tests.conftest import make_photo


def autograd_edges(module: torch.nn.Module, names: list[str], size: tuple[int, int, int]) -> tuple[list[str], set, set]:
    """(layers in the order they first run, {(source, target)}, {skips}) from the autograd graph of one pass, every
    call of a module run twice (a BasicBlock's relu) walked: a call's sources are the nearest layer outputs its
    grad_fn reaches; a source is skipped past when another source of the same call reaches it."""
    calls: list[tuple[str, object]] = []
    fn_layer: dict[object, str] = {}
    handles = []
    for n, m in resolve(module, names).items():
        def hook(_m, _i, out, n=n):  # noqa: ANN001
            calls.append((n, out.grad_fn))
            fn_layer.setdefault(out.grad_fn, n)
        handles.append(m.register_forward_hook(hook))
    try:
        module(torch.randn(1, *size, requires_grad=True))
    finally:
        for h in handles:
            h.remove()
    layer_fns = {fn for _, fn in calls}

    def reach(fn: object, stop: bool) -> set:
        """The layer outputs upstream of ``fn``: the nearest ones (``stop``) or all of them."""
        out, stack, seen = set(), [f for f, _ in fn.next_functions if f is not None], set()  # type: ignore[attr-defined]
        while stack:
            f = stack.pop()
            if f in seen:
                continue
            seen.add(f)
            if f in layer_fns:
                out.add(f)
                if stop:
                    continue
            stack.extend(g for g, _ in f.next_functions if g is not None)
        return out

    edges, skip = set(), set()
    for n, fn in calls:
        near = reach(fn, True)
        for s in near:
            edges.add((fn_layer[s], n))
            if any(s in reach(o, False) for o in near if o is not s):
                skip.add((fn_layer[s], n))
    return list(dict.fromkeys(n for n, _ in calls)), edges, skip


def test_resnet18_from_the_hub_cache_gets_its_overview_with_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision import models as tvm

    weights = tvm.get_model_weights("resnet18").DEFAULT
    torch.manual_seed(0)
    net = tvm.resnet18(weights=None).eval()
    for mod in net.modules():  # the reference pass: no in-place ReLU, so every call's output has its own grad_fn
        if isinstance(getattr(mod, "inplace", None), bool):
            mod.inplace = False
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(net.state_dict(), ckpt / os.path.basename(weights.url))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CONVSCOPE_TORCHVISION_MODELS", '["resnet18"]')
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "no-models", serve_efficientnet=False,
                 default_model="resnet18")
    assert s.torchvision_models == ["resnet18"]
    with TestClient(create_app(s)) as c:
        assert [m["name"] for m in c.get("/api/models").json()] == ["resnet18"]
        iid = c.post("/api/images", files={"file": ("p.jpg", make_photo(160, 120), "image/jpeg")}).json()["id"]
        body = c.get(f"/api/images/{iid}/overview", params={"model": "resnet18"}).json()
        assert body["traced"] is True
        names = [n["layer"] for n in body["nodes"]]
        ran, want, want_skips = autograd_edges(net, names, (3, 224, 224))
        assert names == ran  # a BasicBlock runs its relu twice: named once, where it first runs
        edges = {(e["from"], e["to"]) for e in body["edges"]}
        assert edges == want
        got_skips = {(e["from"], e["to"]) for e in body["edges"] if e["kind"] == "skip"}
        # the identity shortcuts of the 5 blocks without a downsampling branch (the 3 others: a conv on the shortcut)
        assert got_skips == want_skips and len(got_skips) == 5
        assert {t for _, t in got_skips} == {f"layer{i}.{j}.relu" for i, j in [(1, 0), (1, 1), (2, 1), (3, 1), (4, 1)]}
        assert all((f"layer{i}.0.downsample.1", f"layer{i}.0.relu") in edges for i in (2, 3, 4))
        layer_groups = [g["name"] for g in body["groups"] if re.fullmatch(r"layer\d\.\d", g["name"])]
        assert len(layer_groups) == 8
        page = c.get(f"/images/{iid}/overview", params={"model": "resnet18"})
        assert page.status_code == 200 and 'style="' not in page.text
        assert page.text.count('class="ov-group"') == len(body["groups"])
        assert ("+ shortcut" in page.text) or ("ov-from_skip" in page.text) or ("ov-skip" in page.text)
        # the top channel's thumbnail on the shared scale
        first = next(n for n in body["nodes"] if len(n["shape"]) == 3)
        png = c.get(f"/api/images/{iid}/activations/{first['layer']}", params={
            "model": "resnet18", "channel": first["top_channels"][0]["channel"], "format": "png", "scale": "global"})
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"

"""Loading paths of the zoo: torchvision through the hub cache, our safetensors, damaged files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from fastapi.testclient import TestClient

from app.config import ROOT, Settings
from app.core.zoo import ModelLoadError, Zoo, discover, load_model, torchvision_spec
from app.main import create_app
from conftest import make_photo


def test_torchvision_model_loads_from_the_hub_cache_without_network(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), ckpt / "resnet18-f37072fd.pth")
    spec = torchvision_spec("resnet18")
    assert spec.preprocess.crop == 224 and spec.preprocess.resize == 256 and len(spec.categories) == 1000
    assert spec.categories[0] == "tench"
    lm = load_model(spec)
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(lm.module(x), reference.eval()(x))
    assert lm.first_conv == "conv1"


def test_torchvision_model_through_settings(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ckpt / "resnet18-f37072fd.pth")
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=["resnet18"],
                 default_model="resnet18")
    zoo = Zoo.load(discover(s.models_dir, s.torchvision_models, effnet=False))
    with TestClient(create_app(s, zoo=zoo)) as c:
        iid = c.post("/api/images", files={"file": ("a.jpg", make_photo(300, 200), "image/jpeg")}).json()["id"]
        preds = c.get(f"/api/images/{iid}/predictions", params={"model": "resnet18"}).json()["predictions"]
        assert len(preds) == 5
        # the in-place ReLU / residual add must not alter what we report for bn layers
        bn = c.get(f"/api/images/{iid}/activations/layer1.0.bn2", params={"model": "resnet18"}).json()
        assert min(bn["min"]) < 0


def test_missing_torchvision_weights_are_reported_not_fatal(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    zoo = Zoo.load([torchvision_spec("alexnet")])
    assert "alexnet" not in zoo and "torch hub cache" in zoo.errors["alexnet"]


def test_damaged_weights_fail_at_start_with_a_clear_error(tmp_path: Path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "lenet", models / "lenet")
    w = models / "lenet" / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    s = Settings(data_dir=tmp_path / "data", models_dir=models)
    with pytest.raises(ModelLoadError, match="damaged"), TestClient(create_app(s)):
        pass


def test_efficientnet_is_in_the_default_zoo():
    names = [s.name for s in discover(ROOT / "models")]
    assert names[:2] == ["lenet", "cifarnet"] or names[0] == "lenet"
    assert "efficientnet-lite0" in names

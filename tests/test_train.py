"""The trainer: data from an ImageFolder zip, seeded, resumable, writes weights + card."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from app.cli.main import main as cli
from app.core.data import open_dataset
from conftest import make_photo


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    """A generated ImageFolder zip: 2 classes x (12 train + 4 test) 32x32 images."""
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", 12), ("test", 4)):
            for ci, cls in enumerate(("dark", "light")):
                for i in range(n):
                    zf.writestr(f"{split}/{cls}/{i:03d}.png", make_photo(32, 32, seed=100 * ci + i, fmt="PNG"))
    return path


def test_open_dataset_reads_zip_layout(tiny_zip: Path):
    ds = open_dataset(tiny_zip, "test")
    assert ds.classes == ["dark", "light"] and len(ds) == 8
    img, label = ds[5]
    assert img.size == (32, 32) and label == 1
    assert len(open_dataset(tiny_zip, "train", limit=5)) == 5


def test_interrupted_training_resumes_to_the_same_weights(tiny_zip: Path, tmp_path: Path):
    common = ["train", "--model", "lenet", "--data", str(tiny_zip), "--epochs", "2", "--threads", "1"]
    assert cli([*common, "--out", str(tmp_path / "a"), "--run-dir", str(tmp_path / "ra")]) == 0
    assert cli([*common, "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path / "rb"), "--stop-after", "1"]) == 0
    assert not (tmp_path / "b" / "weights.safetensors").exists()
    assert cli([*common, "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path / "rb")]) == 0
    wa, wb = load_file(str(tmp_path / "a" / "weights.safetensors")), load_file(str(tmp_path / "b" / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k].numpy(), wb[k].numpy(), err_msg=k)
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["epochs"] == 2 and card["parameters"] == 62958 - 850 + (84 * 2 + 2) and card["classes"] == ["dark", "light"]
    assert set(card["per_class_accuracy"]) == {"dark", "light"} and 0 <= card["test_accuracy"] <= 1
    assert len(card["dataset"]["sha256"]) == 64
    assert (tmp_path / "a" / "snapshots" / "epoch-001.safetensors").exists()


def test_whitening_filters_decorrelate_patches():
    """The stem's initial filters whiten 5x5 patches: the filtered patches' covariance is
    diag(l / (l + eps)) over the top principal directions (l from numpy's own eigh)."""
    import torch
    import torch.nn.functional as F

    from app.features.models.train import whitening_filters

    gen = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.randn(64, 3, 20, 20, generator=gen), 3, 1, 1) + 0.3 * torch.randn(64, 1, 20, 20, generator=gen)
    w = whitening_filters(x, 5, 8, eps=1e-4)
    assert w.shape == (8, 3, 5, 5)
    torch.testing.assert_close(w[4:], -w[:4])
    patches = F.unfold(x, 5).transpose(1, 2).reshape(-1, 75).double().numpy()
    patches -= patches.mean(0)
    evals = np.linalg.eigh(patches.T @ patches / len(patches))[0][::-1][:4]
    feats = patches @ w[:4].reshape(4, -1).double().numpy().T
    cov = feats.T @ feats / len(feats)
    np.testing.assert_allclose(cov, np.diag(evals / (evals + 1e-4)), atol=2e-3)


def test_alternating_flip_shows_each_image_both_ways():
    import torch

    from app.features.models.train import flip_plan

    base = torch.rand(1000, generator=torch.Generator().manual_seed(1)) < 0.5
    e0, e1, e2 = flip_plan(0, base), flip_plan(1, base), flip_plan(2, base)
    assert bool((e0 ^ e1).all()) and torch.equal(e0, e2) and 400 < int(e0.sum()) < 600


def test_cifarnet_recipe_resumes_to_the_same_weights(tiny_zip: Path, tmp_path: Path):
    """cifarnet's recipe (whitened stem, alternating flip, weight EMA) is seeded and resumable too;
    the shipped weights are the EMA's, which differ from the last trained ones."""
    import torch

    from app.features.models.train import RECIPES, train

    r = RECIPES["cifarnet"]
    assert r.whiten_stem and r.alternating_flip and r.ema_decay > 0
    common = dict(epochs=2, threads=1)
    train("cifarnet", str(tiny_zip), tmp_path / "a", tmp_path / "ra", **common)
    assert train("cifarnet", str(tiny_zip), tmp_path / "b", tmp_path / "rb", stop_after=1, **common) is None
    card = train("cifarnet", str(tiny_zip), tmp_path / "b", tmp_path / "rb", **common)
    assert card is not None and card["recipe"]["whiten_stem"] is True
    wa, wb = load_file(str(tmp_path / "a" / "weights.safetensors")), load_file(str(tmp_path / "b" / "weights.safetensors"))
    for k in wa:
        np.testing.assert_array_equal(wa[k].numpy(), wb[k].numpy(), err_msg=k)
    trained = torch.load(tmp_path / "ra" / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(trained["fc.weight"], wa["fc.weight"])
    ema = torch.load(tmp_path / "ra" / "checkpoint.pt", weights_only=True)["ema"]
    torch.testing.assert_close(ema["module.fc.weight"], wa["fc.weight"])


def test_warm_restart_starts_from_trained_weights_and_counts_them(tiny_zip: Path, tmp_path: Path):
    """--init: a further cycle from trained weights; the card adds the earlier epochs and wall time."""
    common = ["train", "--model", "lenet", "--data", str(tiny_zip), "--threads", "1"]
    assert cli([*common, "--epochs", "2", "--out", str(tmp_path / "a"), "--run-dir", str(tmp_path / "ra")]) == 0
    first = json.loads((tmp_path / "a" / "card.json").read_text())
    # zero learning rate: the restart must hand on exactly the weights it started from
    assert cli([*common, "--epochs", "1", "--lr", "0", "--init", str(tmp_path / "a" / "weights.safetensors"),
                "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path / "rb")]) == 0
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["epochs"] == 3 and card["warm_start"]["epochs"] == 2
    assert card["wall_time_s"] >= first["wall_time_s"]
    assert card["warm_start"]["test_accuracy"] == first["test_accuracy"]
    wa, wb = load_file(str(tmp_path / "a" / "weights.safetensors")), load_file(str(tmp_path / "b" / "weights.safetensors"))
    for k in ("conv1.weight", "fc3.weight", "out.bias"):
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), atol=1e-3, err_msg=k)

"""The trainer: data from an ImageFolder zip, seeded, resumable, writes weights + card."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from app.cli import main as cli
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

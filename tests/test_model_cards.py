"""The committed weights reach the accuracy their cards claim, through the serving path.

Evaluates models/<name>/weights.safetensors on the CIFAR-10 test split of ../shared/data (never
copied into the repo), decoding with Pillow and preprocessing exactly as the server does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from app.config import ROOT
from app.core.data import open_dataset
from app.core.zoo import load_model, our_model_spec

DATA = Path(os.environ.get("CONVSCOPE_CIFAR10", ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
MODELS = [n for n in ("lenet", "cifarnet") if (ROOT / "models" / n / "card.json").exists()]


@pytest.fixture(scope="module")
def test_split() -> tuple[list, torch.Tensor]:
    if not DATA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CIFAR-10 archive missing at {DATA}")
        pytest.skip(f"CIFAR-10 archive not found at {DATA}")
    ds = open_dataset(DATA, "test")
    images = [ds[i][0] for i in range(len(ds))]
    labels = torch.tensor([s.label for s in ds.samples])
    return images, labels


def test_both_models_have_cards():
    assert MODELS == ["lenet", "cifarnet"]


@pytest.mark.parametrize("name", MODELS)
def test_card_accuracy_is_reproduced(name: str, test_split):
    images, labels = test_split
    card = json.loads((ROOT / "models" / name / "card.json").read_text())
    lm = load_model(our_model_spec(ROOT / "models" / name))
    pre = lm.spec.preprocess
    correct = torch.zeros(len(card["classes"]))
    n = len(correct)
    cm = torch.zeros(n * n, dtype=torch.long)
    with torch.inference_mode():
        for i in range(0, len(images), 500):
            x = torch.cat([pre.tensor(im) for im in images[i:i + 500]])
            pred = lm.module(x).argmax(1)
            y = labels[i:i + 500]
            correct += torch.bincount(y[pred == y], minlength=len(correct)).float()
            cm += torch.bincount(y * n + pred, minlength=n * n)
    total = torch.bincount(labels, minlength=len(correct)).float()
    acc = float(correct.sum() / total.sum())
    assert abs(acc - card["test_accuracy"]) <= 0.005, (acc, card["test_accuracy"])
    for c, a in zip(card["classes"], (correct / total).tolist()):
        assert abs(a - card["per_class_accuracy"][c]) <= 0.01, (c, a)
    if "confusion_matrix" in card:  # the card's matrix (the trainer's evaluation) against this one, through the server
        theirs = torch.tensor(card["confusion_matrix"])
        assert theirs.sum(1).tolist() == torch.bincount(labels, minlength=n).tolist()
        assert int((theirs - cm.reshape(n, n)).abs().sum()) <= 0.01 * len(labels)
    assert card["dataset"]["sha256"] == "1f246f18ee1c4b008b72b11e5d912c2b6a325d41b34a6c0136bab1e640200198"
    if name == "lenet":
        assert card["parameters"] == 62958


def test_cifarnet_reaches_ninety_percent():
    """Issue 2 asks >= 90 % on the CIFAR-10 test split (the card's figure is checked against a fresh
    evaluation of the committed weights in the test above)."""
    card = json.loads((ROOT / "models" / "cifarnet" / "card.json").read_text())
    assert card["test_accuracy"] >= 0.90

"""Charts against independent computations: the confusion matrix against a plain image-by-image evaluation
of a tiny model on images made here, the trainer's recorded history against the card and the curves drawn
from it, the per-class bars and matrix cells against the card, the layer view's columns against the
activations."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.core import metrics
from app.features.models.charts import class_charts, training_charts
from conftest import make_photo

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def _circles(svg: ET.Element, series: str) -> list[tuple[float, float]]:
    g = next(g for g in svg.iter("g") if g.get("data-series") == series)
    return [(float(c.get("data-x")), float(c.get("data-y"))) for c in g.iter("circle")]


def test_confusion_matrix_equals_a_plain_evaluation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    x = torch.randint(0, 256, (23, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([i % 3 for i in range(23)])
    ev = metrics.evaluate(model, x, y, 3, MEAN, STD, batch_size=5)
    plain = [[0] * 3 for _ in range(3)]
    loss = 0.0
    with torch.no_grad():
        for i in range(len(x)):  # one image at a time, normalised by hand
            xi = (x[i:i + 1].float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
            logits = model(xi)
            plain[int(y[i])][int(logits.argmax())] += 1
            loss += float(nn.functional.cross_entropy(logits, y[i:i + 1]))
    assert ev.confusion == plain
    assert [sum(r) for r in ev.confusion] == np.bincount(y.numpy()).tolist() == ev.class_counts
    assert ev.accuracy == pytest.approx(sum(plain[k][k] for k in range(3)) / 23)
    assert ev.per_class == pytest.approx([plain[k][k] / sum(plain[k]) for k in range(3)])
    assert ev.loss == pytest.approx(loss / 23, rel=1e-5)


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", 10), ("test", 5)):
            for ci, cls in enumerate(("dark", "light")):
                for i in range(n):
                    zf.writestr(f"{split}/{cls}/{i:03d}.png", make_photo(32, 32, seed=100 * ci + i, fmt="PNG"))
    return path


def test_trainer_records_history_and_confusion_matrix(tiny_zip: Path, tmp_path: Path):
    from app.core import nets
    from app.core.data import load_uint8, open_dataset
    from app.core.zoo import load_safetensors
    from app.features.models.train import train

    card = train("lenet", str(tiny_zip), tmp_path / "m", tmp_path / "r", epochs=3, threads=1)
    assert card is not None
    hist = card["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert hist[0]["train_loss"] is None and all(h["train_loss"] > 0 and h["lr"] > 0 for h in hist[1:])
    assert [h["wall_time_s"] for h in hist] == sorted(h["wall_time_s"] for h in hist)
    assert hist[-1]["test_accuracy"] == card["test_accuracy"]
    # the card's matrix: rows sum to the class counts, diagonal / total is the stated accuracy ...
    cm = card["confusion_matrix"]
    assert [sum(r) for r in cm] == [5, 5]
    assert round(sum(cm[k][k] for k in range(2)) / 10, 4) == card["test_accuracy"]
    # ... and it is what a plain evaluation of the saved weights finds
    model = nets.build("lenet", 2)
    model.load_state_dict(load_safetensors(tmp_path / "m" / "weights.safetensors"))
    model.eval()
    x, y = load_uint8(open_dataset(tiny_zip, "test"), 32)
    plain = [[0, 0], [0, 0]]
    with torch.no_grad():
        for i in range(len(x)):
            plain[int(y[i])][int(model(metrics.normalize(x[i:i + 1], card["mean"], card["std"])).argmax())] += 1
    assert plain == cm
    # the curves drawn from the card are its history, point for point
    acc_svg, loss_svg, lr_svg = (_svg(c) for c in training_charts(card, "en", mark_epoch=2))
    assert _circles(acc_svg, "test_accuracy") == [(h["epoch"], h["test_accuracy"]) for h in hist]
    assert _circles(acc_svg, "train_accuracy") == [(h["epoch"], h["train_accuracy"]) for h in hist[1:]]
    assert _circles(loss_svg, "train_loss") == [(h["epoch"], h["train_loss"]) for h in hist[1:]]
    assert _circles(loss_svg, "test_loss") == [(h["epoch"], h["test_loss"]) for h in hist]
    assert _circles(lr_svg, "lr") == [(h["epoch"], h["lr"]) for h in hist[1:]]
    assert next(e for e in acc_svg.iter("line") if e.get("class") == "mark").get("data-x") == "2"


def test_curve_points_are_placed_by_their_values():
    card = {"history": [{"epoch": e, "test_accuracy": a, "test_loss": 1 - a} for e, a in ((0, 0.1), (5, 0.5), (10, 0.9))],
            "dataset": {"test_images": 10}}
    acc = _svg(training_charts(card, "es")[0])
    pts = [c for c in acc.iter("circle")]
    cx = [float(c.get("cx")) for c in pts]
    cy = [float(c.get("cy")) for c in pts]
    assert cx[1] - cx[0] == pytest.approx(cx[2] - cx[1], abs=0.2)  # epochs evenly spaced
    # y is linear in accuracy on a 0..1 axis: 0.5 lies halfway between 0.1 and 0.9
    assert cy[1] == pytest.approx((cy[0] + cy[2]) / 2, abs=0.2) and cy[0] > cy[2]
    assert "época" in str(training_charts(card, "es")[0])


def test_class_charts_draw_the_cards_matrix():
    cm = [[8, 1, 1], [2, 7, 1], [0, 3, 7]]
    card = {"classes": ["cat", "dog", "ship"], "confusion_matrix": cm}
    ch = class_charts(card, "en")
    assert ch is not None and ch["accuracy"] == pytest.approx(22 / 30)
    cells = {(int(r.get("data-true")), int(r.get("data-pred"))): int(r.get("data-count"))
             for r in _svg(ch["confusion"]).iter("rect")}
    assert cells == {(i, j): cm[i][j] for i in range(3) for j in range(3)}
    bars = {r.get("data-key"): float(r.get("data-value")) for r in _svg(ch["bars"]).iter("rect")}
    assert bars == pytest.approx({"cat": 0.8, "dog": 0.7, "ship": 0.7})
    assert "22 of 30" in ch["note"]


def test_shipped_cards_have_consistent_charts():
    from app.config import ROOT

    cards = {n: json.loads((ROOT / "models" / n / "card.json").read_text()) for n in ("lenet", "cifarnet")}
    assert all("confusion_matrix" in c and "history" in c for c in cards.values())
    for card in cards.values():
        cm = card["confusion_matrix"]
        assert [sum(r) for r in cm] == [card["dataset"]["test_images"] // 10] * 10
        assert sum(cm[k][k] for k in range(10)) / sum(map(sum, cm)) == pytest.approx(card["test_accuracy"], abs=6e-5)
        for k, c in enumerate(card["classes"]):
            assert cm[k][k] / sum(cm[k]) == pytest.approx(card["per_class_accuracy"][c], abs=6e-5)
        assert card["history"][-1]["epoch"] == card["epochs"]
        assert card["history"][-1]["test_accuracy"] == pytest.approx(card["test_accuracy"], abs=6e-5)


def test_model_page_and_timeline_draw_charts(client: TestClient):
    page = client.get("/models/cifarnet").text
    assert '<pre class="card">' in page  # the raw card stays, folded away
    r = client.post("/api/images", files={"file": ("p.jpg", make_photo(64, 48), "image/jpeg")})
    iid = r.json()["id"]
    layer = client.get(f"/images/{iid}/layers/conv1", params={"model": "lenet"})
    assert layer.status_code == 200
    svg = layer.text[layer.text.index('<svg class="chart chart-columns"'):]
    svg = svg[:svg.index("</svg>") + 6]
    values = [float(r.get("data-value")) for r in _svg(svg).iter("rect")]
    chans = [int(r.get("data-channel")) for r in _svg(svg).iter("rect")]
    act = np.load(__import__("io").BytesIO(client.get(f"/api/images/{iid}/activations/conv1",
                                                      params={"model": "lenet", "format": "npy"}).content))
    means = act.reshape(act.shape[0], -1).mean(1)
    assert sorted(chans) == list(range(act.shape[0])) and values == sorted(values, reverse=True)
    assert values == pytest.approx([float(means[c]) for c in chans], rel=1e-4, abs=1e-6)

"""Learned vs hand-made filters: the ranking and its cosines against this test's own computation (the lecture's
kernels written out again, resized with this test's own bilinear code), planted filters, the captions in both
languages, the filters view, and the likeness over the training snapshots against the snapshot files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import load_file

from app.config import Settings
from app.core.likeness import likeness
from app.core.zoo import Zoo
from app.main import create_app

HAND = {  # the lecture's hand-made filters (app/core/lecture.py), written out again
    "vertical_edges": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], float),
    "horizontal_edges": np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], float),
    "sobel_x": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float),
    "sobel_y": np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float),
    "blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], float) / 16,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
}
EDGES = {"vertical_edges", "horizontal_edges", "sobel_x", "sobel_y"}


def resize(k: np.ndarray, n: int) -> np.ndarray:
    """Bilinear with the corners aligned: output i samples input i * (3 - 1) / (n - 1)."""
    if k.shape[0] == n:
        return k
    s = np.arange(n) * (k.shape[0] - 1) / (n - 1)
    i0 = np.minimum(np.floor(s).astype(int), k.shape[0] - 2)
    t = s - i0
    rows = k[i0] * (1 - t)[:, None] + k[i0 + 1] * t[:, None]
    return rows[:, i0] * (1 - t) + rows[:, i0 + 1] * t


def own_cosines(w: np.ndarray) -> list[dict[str, float]]:
    out = []
    for f in w.astype(np.float64):
        cos = {}
        for name, k in HAND.items():
            h = np.stack([resize(k, f.shape[1])] * f.shape[0])
            cos[name] = float((f * h).sum() / (np.linalg.norm(f) * np.linalg.norm(h)))
        out.append(cos)
    return out


def own_best(cos: dict[str, float]) -> tuple[str, float]:
    sims = {n: abs(c) if n in EDGES else c for n, c in cos.items()}
    best = max(sims, key=lambda n: sims[n])
    return best, sims[best]


def test_planted_filters_are_found() -> None:
    w = torch.randn(4, 3, 5, 5) * 0.01
    w[1] = torch.from_numpy(np.stack([resize(HAND["vertical_edges"], 5)] * 3))
    w[2] = -torch.from_numpy(np.stack([resize(HAND["horizontal_edges"], 5)] * 3))
    w[3] = torch.from_numpy(np.stack([resize(HAND["blur"], 5)] * 3)) + 0.001
    ranked = likeness(w)
    by = {r.filter: r for r in ranked}
    assert by[1].match == "vertical_edges" and by[1].similarity == pytest.approx(1.0) and not by[1].inverted
    assert by[2].match == "horizontal_edges" and by[2].similarity == pytest.approx(1.0) and by[2].inverted
    assert by[3].match == "blur" and by[3].similarity > 0.99
    assert ranked[-1].filter == 0  # random noise is least like anything


@pytest.mark.parametrize("model", ["lenet", "cifarnet"])
def test_likeness_json_against_own_cosines(client: TestClient, zoo: Zoo, model: str) -> None:
    lm = zoo.get(model)
    w = dict(lm.module.named_modules())[lm.first_conv].weight.detach().numpy()
    body = client.get(f"/api/models/{model}/filters/likeness").json()
    assert body["layer"] == lm.first_conv and len(body["filters"]) == w.shape[0]
    own = own_cosines(w)
    sims = []
    for f in body["filters"]:
        mine = own[f["filter"]]
        assert f["cosines"] == pytest.approx(mine, abs=1e-6)
        name, sim = own_best(mine)
        assert f["match"] == name and f["similarity"] == pytest.approx(sim, abs=1e-6)
        assert f["inverted"] == (name in EDGES and mine[name] < 0)
        sims.append(f["similarity"])
        en, es = f["caption"]["en"], f["caption"]["es"]
        assert en.startswith(f"filter {f['filter']} ≈ ") and en.endswith(f"{sim:.2f}")
        assert es.startswith(f"filtro {f['filter']} ≈ ") and es.endswith(f"{sim:.2f}".replace(".", ","))
    assert sims == sorted(sims, reverse=True)
    assert body["mean_best"] == pytest.approx(np.mean(sims))
    for lang, word in (("en", "Learned vs hand-made filters"), ("es", "Filtros aprendidos frente a filtros hechos a mano")):
        page = client.get(f"/models/{model}/filters", params={"lang": lang})
        assert page.status_code == 200 and word in page.text and 'style="' not in page.text
        top = body["filters"][0]
        assert top["caption"][lang] in page.text
    later = "conv2" if model == "lenet" else "block1.conv1"  # only the first layer is compared
    assert "lk-top" not in client.get(f"/models/{model}/filters", params={"layer": later}).text


def test_likeness_over_the_training_snapshots(tmp_path, zoo: Zoo) -> None:  # noqa: ANN001
    models = Path(__file__).resolve().parents[1] / "models"
    s = Settings(data_dir=tmp_path / "data", models_dir=models, torchvision_models=[], default_model="lenet")
    with TestClient(create_app(s, zoo=zoo)) as c:
        body = c.get("/api/models/lenet/filters/likeness").json()
        snaps = sorted((models / "lenet" / "snapshots").glob("epoch-*.safetensors"))
        assert [st["snapshot"] for st in body["over_training"]] == [p.stem for p in snaps] + ["final"]
        for st, p in zip(body["over_training"], snaps, strict=False):
            w = load_file(p)["conv1.weight"].astype(np.float32)
            best = [own_best(cos)[1] for cos in own_cosines(w)]
            assert st["mean_best"] == pytest.approx(np.mean(best), abs=1e-4)
            assert st["best"] == pytest.approx(max(best), abs=1e-4)
        for lang, word in (("en", "while it learns"), ("es", "mientras aprende")):
            page = c.get("/models/lenet/timeline", params={"step": 1, "lang": lang}).text
            assert word in page and page.count("<meter") >= len(snaps) + 1 and 'style="' not in page
            assert ("filter " if lang == "en" else "filtro ") in page

"""Comparing two analyses layer by layer: two photos through one model, one photo through two models,
or one photo through two checkpoints of a model.

Layers are paired by name when both models have the same layers (same model, or two checkpoints),
otherwise by position. Pairs of the same shape get difference statistics and a |a−b| grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
import torch

from app.core import imaging
from app.core.inference import Analysis, top_k
from app.core.probe import LayerInfo
from app.core.zoo import LoadedModel
from app.features.analysis.service import Engine
from app.store.database import ImageRecord


@dataclass
class Sides:
    """The two things compared: a photo and a model (variant) on each side, and the query that named them."""
    rec_a: ImageRecord
    rec_b: ImageRecord
    lm_a: LoadedModel
    lm_b: LoadedModel
    query: dict[str, str]


async def analyses(engine: Engine, s: Sides) -> tuple[Analysis, Analysis]:
    """The analyses of side A and side B (cached by the engine)."""
    return await engine.analysis_async(s.lm_a, s.rec_a), await engine.analysis_async(s.lm_b, s.rec_b)


def side_summary(s: Sides, which: str, an: Analysis, k: int = 5) -> dict[str, object]:
    """One side ("a" or "b"): its photo, its model and the top ``k`` predictions."""
    rec, lm = (s.rec_a, s.lm_a) if which == "a" else (s.rec_b, s.lm_b)
    return {"image": rec.id, "model": lm.name, "title": lm.spec.title, "filename": rec.filename,
            "predictions": [vars(p) for p in top_k(an.probabilities, lm.spec.categories, k)]}


@dataclass(frozen=True)
class Pair:
    index: int
    a: LayerInfo | None
    b: LayerInfo | None

    @property
    def same_shape(self) -> bool:
        return self.a is not None and self.b is not None and self.a.output_shape == self.b.output_shape


def pair_layers(lm_a: LoadedModel, lm_b: LoadedModel) -> tuple[list[Pair], str]:
    """Layer pairs and how they were paired ("name" or "position")."""
    names_a, names_b = [li.name for li in lm_a.layers], [li.name for li in lm_b.layers]
    if names_a == names_b:
        return [Pair(i, a, b) for i, (a, b) in enumerate(zip(lm_a.layers, lm_b.layers))], "name"
    return [Pair(i, a, b) for i, (a, b) in enumerate(zip_longest(lm_a.layers, lm_b.layers))], "position"


def diff_stats(x: torch.Tensor, y: torch.Tensor, top: int = 5) -> dict[str, object]:
    """Difference statistics of two same-shape activations."""
    a = x.detach().float().reshape(x.shape[0], -1).numpy()
    b = y.detach().float().reshape(y.shape[0], -1).numpy()
    d = np.abs(a - b)
    per_channel = d.mean(1)
    scale = float((np.abs(a).mean() + np.abs(b).mean()) / 2)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float((a * b).sum() / (na * nb)) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    order = np.argsort(-per_channel)[:top]
    return {"mean_abs_diff": float(d.mean()), "max_abs_diff": float(d.max()),
            "relative_diff": float(d.mean() / scale) if scale > 0 else 0.0, "cosine": cos,
            "per_channel_mean_abs_diff": per_channel.astype(np.float32).round(6).tolist(),
            "most_changed_channels": [{"channel": int(c), "mean_abs_diff": float(per_channel[c])} for c in order]}


def _as_maps(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float()
    return t[:, None, None] if t.dim() == 1 else t


def shared_grids(x: torch.Tensor, y: torch.Tensor) -> tuple[bytes, bytes, bytes]:
    """PNG grids of a, b (each channel on the scale shared by a and b) and |a−b| (0 = dark, per-channel max)."""
    a, b = _as_maps(x), _as_maps(y)
    af, bf = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    lo = torch.minimum(af.min(1).values, bf.min(1).values)[:, None, None]
    hi = torch.maximum(af.max(1).values, bf.max(1).values)[:, None, None]
    span = (hi - lo).clamp(min=1e-12)
    d = (a - b).abs()
    dmax = d.reshape(d.shape[0], -1).max(1).values.clamp(min=1e-12)[:, None, None]
    scale = imaging.tile_scale(a.shape[1], a.shape[2], 48)
    out = []
    for m in ((a - lo) / span, (b - lo) / span, d / dmax):
        out.append(imaging.png_bytes(imaging.mosaic(imaging.viridis_indices(m.numpy()), scale=scale)))
    return out[0], out[1], out[2]


def layer_pair(pairs: list[Pair], layer: str | None, index: int | None) -> Pair:
    for p in pairs:
        if index is not None and p.index == index:
            return p
        if layer is not None and ((p.a and p.a.name == layer) or (p.b and p.b.name == layer)):
            return p
    raise KeyError(layer if layer is not None else index)


def layer_rows(pairs: list[Pair], an_a: Analysis, an_b: Analysis) -> list[dict[str, object]]:
    rows = []
    for p in pairs:
        row: dict[str, object] = {"index": p.index, "a": p.a.name if p.a else None, "b": p.b.name if p.b else None,
                                  "type_a": p.a.type if p.a else None, "type_b": p.b.type if p.b else None,
                                  "shape_a": list(p.a.output_shape) if p.a else None,
                                  "shape_b": list(p.b.output_shape) if p.b else None, "same_shape": p.same_shape}
        if p.same_shape:
            row.update(diff_stats(an_a.activations[p.a.name], an_b.activations[p.b.name]))  # type: ignore[union-attr]
        rows.append(row)
    return rows

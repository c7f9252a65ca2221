"""One forward pass that yields the prediction and every layer's activation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from app.core.probe import capture, forward_until
from app.core.zoo import LoadedModel


@dataclass(frozen=True)
class Prediction:
    """One class of the top-k."""

    index: int
    label: str
    probability: float


def top_k(probabilities: torch.Tensor, categories: Sequence[str], k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes, most probable first."""
    k = max(1, min(k, probabilities.numel()))
    p, i = probabilities.topk(k)
    return [Prediction(j, categories[j], q) for q, j in zip(p.tolist(), i.tolist())]


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel minimum, maximum and mean of one layer's activation."""

    min: list[float]
    max: list[float]
    mean: list[float]


@dataclass(frozen=True)
class Analysis:
    """What one image does in one model: class probabilities and each layer's output (batch dim removed)."""

    probabilities: torch.Tensor
    activations: dict[str, torch.Tensor]

    def top(self, categories: Sequence[str], k: int = 5) -> list[Prediction]:
        return top_k(self.probabilities, categories, k)

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() for a in self.activations.values())


Stats = tuple[np.ndarray, np.ndarray, np.ndarray]  # per channel: min, max, mean (float32)


@dataclass(frozen=True)
class Overview:
    """What one image does in one model, in brief: class probabilities and, for every layer, the
    per-channel min/max/mean of its output (the outputs themselves are not kept)."""

    probabilities: torch.Tensor
    stats: dict[str, Stats]

    def top(self, categories: Sequence[str], k: int = 5) -> list[Prediction]:
        return top_k(self.probabilities, categories, k)

    @property
    def nbytes(self) -> int:
        return self.probabilities.numel() * 4 + sum(a.nbytes for st in self.stats.values() for a in st)


def channel_stats(act: torch.Tensor) -> ChannelStats:
    """Stats over the spatial positions of each channel ((C,H,W)); a vector counts as C channels of 1."""
    lo, hi, mean = channel_stats_arrays(act)
    return ChannelStats(min=lo.tolist(), max=hi.tolist(), mean=mean.tolist())


def channel_stats_arrays(act: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, max, mean) per channel as float32 arrays — the fast path behind :func:`channel_stats`.

    ``amin``/``amax``/``mean`` are torch's multi-threaded reductions (2-3x faster than NumPy's along
    an axis; ``torch.min(dim)`` and ``aminmax`` also find indices or run single-threaded: slower).
    """
    t = act.detach().float().reshape(act.shape[0], -1)
    return t.amin(1).numpy(), t.amax(1).numpy(), t.mean(1).numpy()


@torch.inference_mode()
def analyze_batch(lm: LoadedModel, batch: torch.Tensor, layers: Sequence[str] | None = None) -> list[Analysis]:
    """Forward a preprocessed batch (N,3,H,W), capturing ``layers`` (default: every layer)."""
    names = [li.name for li in lm.layers] if layers is None else list(layers)
    # Some models change a layer's output in place later (ReLU(inplace), x += identity): copy those.
    with lm.lock.shared(), capture(lm.module, names, clone=lm.clone_layers) as acts:
        logits = lm.module(batch)
    probs = torch.softmax(logits.float(), dim=1)
    if batch.shape[0] == 1:
        return [Analysis(probabilities=probs[0], activations={k: v[0] for k, v in acts.items()})]
    # Own copies per image, so that evicting one cached analysis frees its memory.
    return [Analysis(probabilities=probs[i].clone(), activations={k: v[i].clone() for k, v in acts.items()})
            for i in range(batch.shape[0])]


@torch.inference_mode()
def overview_batch(lm: LoadedModel, batch: torch.Tensor) -> list[Overview]:
    """Probabilities and every layer's per-channel stats for a preprocessed batch, one per image.

    One pass of ``lm.summary``: traced when the model has it (no Python between layers), the stats
    taken right after each layer, and no layer's output kept (the pass reuses their memory)."""
    with lm.lock.shared():
        out = lm.summary(batch)
    probs = torch.softmax(out[0].float(), dim=1)
    arrays = [t.numpy() for t in out[1:]]  # (N, C) each: min, max, sum of layer 1, then layer 2...
    means: dict[int, np.ndarray] = {}  # a layer that hands on another's tensor has the same sums: divide once
    for j, li in enumerate(lm.layers):
        sums = out[3 + 3 * j]
        if id(sums) not in means:  # sum / positions in float32, as torch's mean computes it
            means[id(sums)] = arrays[3 * j + 2] / np.float32(math.prod(li.output_shape[1:]))
    names = [li.name for li in lm.layers]
    own = batch.shape[0] > 1
    return [Overview(probabilities=probs[i].clone() if own else probs[i],
                     stats={n: (arrays[3 * j][i], arrays[3 * j + 1][i], means[id(out[3 + 3 * j])][i])
                            for j, n in enumerate(names)})
            for i in range(batch.shape[0])]


def overview_of(lm: LoadedModel, a: Analysis) -> Overview:
    """The overview of a kept full analysis (stats from its activations)."""
    memo: dict[tuple[object, ...], Stats] = {}
    stats = {}
    for li in lm.layers:
        act = a.activations[li.name]
        # Pass-through layers (Identity, Dropout in eval) hand on the very same tensor: stats once.
        key = (act.data_ptr(), tuple(act.shape), act.stride())
        if key not in memo:
            memo[key] = channel_stats_arrays(act)
        stats[li.name] = memo[key]
    return Overview(probabilities=a.probabilities, stats=stats)


@torch.inference_mode()
def layer_batch(lm: LoadedModel, batch: torch.Tensor, layer: str) -> list[torch.Tensor]:
    """One layer's output for a preprocessed batch, one tensor per image; the pass stops at that layer.

    Equal to the activation :func:`analyze_batch` keeps, for a layer whose module runs once per pass
    (``lm.reused_layers`` names the others); the layers after it are never computed.
    """
    with lm.lock.shared(), forward_until(lm.module, layer) as run:
        out = run(batch)
    return list(out.unbind(0))


@torch.inference_mode()
def predict_batch(lm: LoadedModel, batch: torch.Tensor) -> list[torch.Tensor]:
    """Class probabilities for a preprocessed batch, one tensor per image (no hooks: the traced pass
    when the model has one, which needs no GIL between layers)."""
    with lm.lock.shared():
        logits = lm.plain_pass(batch)
    probs = torch.softmax(logits.float(), dim=1)
    return list(probs.unbind(0))


def analyze(lm: LoadedModel, img: Image.Image, layers: Sequence[str] | None = None) -> Analysis:
    """Preprocess one picture and analyse it."""
    return analyze_batch(lm, lm.spec.preprocess.tensor(img), layers)[0]

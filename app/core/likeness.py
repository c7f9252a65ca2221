"""Learned vs hand-made filters: how much each learned first-layer filter looks like the lecture's hand-made ones
(:data:`app.core.lecture.HAND_FILTERS`: edges, Sobel, blur, sharpen).

A hand-made filter is a grey kernel; on a colour photo it is the same kernel on every input channel. So a
learned filter ``W`` (C, kh, kw) is compared with ``H`` = the hand kernel repeated over the C channels, by the
cosine of the two as vectors: ``<W, H> / (|W| |H|)``. A filter that reacts to colour (red against green) rather
than to brightness is then far from every hand-made one, as it should be. A 3×3 hand kernel is resized to the
learned size (bilinear, corners aligned: a 5×5 vertical-edge filter is ``[1, .5, 0, -.5, -1]`` in every row).

Edge filters (weights adding up to 0) answer an edge whichever way round it goes: their similarity is
``|cos|`` (a negative cosine is the same edge, dark and light swapped, and is said so); blur and sharpen
keep the sign (an inverted blur is no blur).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.core.lecture import HAND_FILTERS

# the single-kernel hand-made filters of the lecture that a learned filter is compared with
COMPARED = ("vertical_edges", "horizontal_edges", "sobel_x", "sobel_y", "blur", "sharpen")


def hand_kernel(name: str, kh: int, kw: int) -> np.ndarray:
    """The hand-made filter ``name`` as a float (kh, kw) kernel (its divisor applied, resized when needed)."""
    f = HAND_FILTERS[name]
    k = np.asarray(f.kernels[0], dtype=np.float64) / f.divisor
    if k.shape != (kh, kw):
        t = torch.from_numpy(k)[None, None]
        k = torch.nn.functional.interpolate(t, size=(kh, kw), mode="bilinear", align_corners=True)[0, 0].numpy()
    return k


def is_edge(name: str) -> bool:
    """A hand-made filter whose weights add up to 0: it finds edges, in either direction."""
    return abs(float(np.sum(HAND_FILTERS[name].kernels[0]))) < 1e-9


@dataclass(frozen=True)
class Likeness:
    """One learned filter against every compared hand-made filter."""

    filter: int
    cosines: dict[str, float]  # signed cosine per hand-made filter
    match: str  # the most similar hand-made filter
    similarity: float  # its similarity (|cos| for an edge filter, cos otherwise)
    inverted: bool  # the match is an edge filter with a negative cosine (dark and light swapped)


def similarity(name: str, cos: float) -> float:
    return abs(cos) if is_edge(name) else cos


def likeness(weight: torch.Tensor) -> list[Likeness]:
    """Every filter of a conv weight (K, C, kh, kw) against the hand-made filters, ranked: most similar first
    (ties: the lower filter first)."""
    w = weight.detach().double().cpu().numpy()
    k, c, kh, kw = w.shape
    flat = w.reshape(k, -1)
    norms = np.linalg.norm(flat, axis=1)
    out = []
    hands = {n: np.tile(hand_kernel(n, kh, kw)[None], (c, 1, 1)).reshape(-1) for n in COMPARED}
    for i in range(k):
        cos = {n: float(flat[i] @ h / (norms[i] * np.linalg.norm(h))) if norms[i] > 0 else 0.0
               for n, h in hands.items()}
        best = max(COMPARED, key=lambda n: similarity(n, cos[n]))
        out.append(Likeness(i, cos, best, similarity(best, cos[best]), is_edge(best) and cos[best] < 0))
    return sorted(out, key=lambda x: (-x.similarity, x.filter))


def summary(ranked: list[Likeness]) -> dict[str, float]:
    """The mean similarity of every filter's best match, and the best one's (to follow it over training)."""
    if not ranked:
        return {"mean_best": 0.0, "best": 0.0}
    return {"mean_best": float(np.mean([r.similarity for r in ranked])), "best": ranked[0].similarity}

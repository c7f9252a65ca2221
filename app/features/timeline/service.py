"""Checkpoint timeline logic: the strongest channels of one layer at one training snapshot."""

from __future__ import annotations

import torch


def strongest_channels(act: torch.Tensor, n: int = 6) -> list[tuple[int, float, float]]:
    """The ``n`` channels with the highest maximum, strongest first: (channel, max, mean)."""
    flat = act.detach().float().reshape(act.shape[0], -1)
    mx = flat.amax(1)
    order = mx.argsort(descending=True)[:n]
    return [(int(c), float(mx[c]), float(flat[c].mean())) for c in order]

"""Pictures of a network's insides: a layer's activations (a grid of channels, one channel enlarged,
or a vector of cells), the per-channel tiles of a layer page, and the grid of a conv layer's filters."""

from __future__ import annotations

import torch

from app.core import imaging
from app.core.zoo import LoadedModel
from app.web.templating import fmt_num


def activation_png(act: torch.Tensor, channel: int | None = None) -> bytes:
    """A layer's activation (C, H, W) or (F,) as a PNG: a grid of channels, or ``channel`` alone, enlarged."""
    if channel is not None:
        img = imaging.channel_image(act[channel]) if act.dim() == 3 else imaging.vector_image(act[channel:channel + 1])
    elif act.dim() == 3:
        img = imaging.activation_grid(act)
    else:
        img = imaging.vector_image(act)
    return imaging.png_bytes(img)


def filters_png(weight: torch.Tensor, view: str) -> bytes:
    """Conv weights (K, C, kh, kw) as a PNG grid: colour patches (``rgb``) or one tile per input channel."""
    return imaging.png_bytes(imaging.filter_grid(weight, view=view))


def layer_tiles(lm: LoadedModel, act: torch.Tensor, layer: str, lang: str = "en") -> dict[str, object]:
    """The layer page's context: one inline PNG tile per channel with its range (written for ``lang``), or
    a vector's cells."""
    info = lm.layer(layer)
    ctx: dict[str, object] = {"info": info, "layer": layer}
    if act.dim() == 3:
        lo, hi = imaging.channel_ranges(act)
        tiles = []
        idx = imaging.channel_indices(act)
        for c in range(act.shape[0]):
            png = imaging.png_bytes(imaging.mosaic(idx[c:c + 1], cols=1, pad=0))
            tiles.append({"c": c, "src": imaging.png_data_uri(png), "lo": fmt_num(float(lo[c]), lang),
                          "hi": fmt_num(float(hi[c]), lang)})
        ctx.update(kind="maps", tiles=tiles, h=act.shape[1], w=act.shape[2])
    else:
        v = act.flatten()
        ctx.update(kind="vector", n=v.numel(), lo=fmt_num(float(v.min()), lang),
                   hi=fmt_num(float(v.max()), lang),
                   src=imaging.png_data_uri(imaging.png_bytes(imaging.vector_image(v))))
    return ctx

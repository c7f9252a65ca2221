"""Pictures of a network's insides: a layer's activations (a grid of channels, one channel enlarged,
or a vector of cells), the per-channel tiles of a layer page, and the grid of a conv layer's filters."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.core import imaging
from app.core.zoo import LoadedModel
from app.web.templating import fmt_num


def activation_png(act: torch.Tensor, channel: int | None = None, scale: str = "channel",
                   network: tuple[float, float] | None = None) -> bytes:
    """A layer's activation (C, H, W) or (F,) as a PNG: a grid of channels, or ``channel`` alone, enlarged;
    coloured on the ``scale`` of :func:`app.core.imaging.scale_ranges` (a vector: its own range, or the network's)."""
    if scale != "channel" and act.dim() == 3:
        lo, hi = imaging.scale_ranges(act, scale, network)
        idx = imaging.scaled_indices(act, lo, hi)
        if channel is not None:
            return imaging.png_bytes(imaging.mosaic(idx[channel:channel + 1], cols=1, pad=0,
                                                    scale=imaging.tile_scale(*act.shape[1:], target=256)))
        return imaging.png_bytes(imaging.mosaic(idx, scale=imaging.tile_scale(act.shape[1], act.shape[2], 64)))
    if scale == "global" and act.dim() == 1 and network is not None:
        v = act if channel is None else act[channel:channel + 1]
        idx = imaging.scaled_indices(v[None], *(np.array([x], np.float32) for x in network))[0]
        return imaging.png_bytes(imaging.mosaic(idx[:, None, None], cols=min(64, len(v)), scale=6, pad=1))
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


def overlay_png(photo: Image.Image, act: torch.Tensor, channel: int, scale: str = "channel",
                network: tuple[float, float] | None = None, opacity: float = 0.6) -> bytes:
    """One channel of a (C, H, W) activation over the network's input picture (its size), on the ``scale``."""
    lo, hi = imaging.scale_ranges(act, scale, network)
    m = imaging.normalized(act[channel:channel + 1], lo[channel:channel + 1], hi[channel:channel + 1])[0]
    return imaging.png_bytes(imaging.overlay(photo, m, opacity))


def layer_tiles(lm: LoadedModel, act: torch.Tensor, layer: str, lang: str = "en", scale: str = "channel",
                network: tuple[float, float] | None = None) -> dict[str, object]:
    """The layer page's context: one inline PNG tile per channel with its range (written for ``lang``), or
    a vector's cells; the tiles coloured on ``scale`` (whose range, when shared, is ``scale_lo``/``scale_hi``)."""
    info = lm.layer(layer)
    ctx: dict[str, object] = {"info": info, "layer": layer, "scale": scale}
    if act.dim() == 3:
        lo, hi = imaging.channel_ranges(act)
        tiles = []
        s_lo, s_hi = imaging.scale_ranges(act, scale, network)
        idx = imaging.scaled_indices(act, s_lo, s_hi)
        if scale != "channel":
            ctx.update(scale_lo=fmt_num(float(s_lo[0]), lang), scale_hi=fmt_num(float(s_hi[0]), lang))
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

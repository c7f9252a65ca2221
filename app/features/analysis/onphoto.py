"""A layer's activation on the photo: the PNGs on a colour scale (per channel, shared per layer, or shared by the
whole network for this photo), one channel's map laid over the network's input picture, and the exact receptive
box of each position (:mod:`app.core.receptive`) that the page draws on the photo when a position is hovered
or focused.

The routes call these; the engine (:mod:`.service`) draws and caches the plain PNGs.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import torch

from app.core.imaging import SCALES, scale_ranges
from app.core.inference import Overview
from app.core.receptive import LayerField, UnsupportedLayerError, receptive_fields
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.analysis import draw
from app.features.analysis.service import Engine
from app.features.units import check_channel
from app.runtime.blocking import run_blocking
from app.store.database import ImageRecord

DEFAULT_OPACITY = 0.6

_fields: dict[tuple[str, str], dict[str, LayerField | None]] = {}
_lock = threading.Lock()


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise BadParameterError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    return scale


def network_range(ov: Overview) -> tuple[float, float]:
    """The photo's smallest and largest value over every layer of the network (the ``global`` scale)."""
    return (min(float(st[0].min()) for st in ov.stats.values()),
            max(float(st[1].max()) for st in ov.stats.values()))


def bounds(act: torch.Tensor, channel: int | None, scale: str, network: tuple[float, float] | None) -> tuple[float, float]:
    """The values at the two ends of the colour scale of ``act`` (of its ``channel`` on the channel scale)."""
    lo, hi = scale_ranges(act if act.dim() == 3 else act.reshape(1, -1), scale, network)
    i = channel if channel is not None and scale == "channel" and act.dim() == 3 else 0
    return float(lo[i]), float(hi[i])


async def global_range(engine: Engine, lm: LoadedModel, rec: ImageRecord) -> tuple[float, float]:
    _, r = await engine.overview_then(lm, rec, network_range)
    return r


async def scale_context(engine: Engine, lm: LoadedModel, rec: ImageRecord, scale: str) -> tuple[float, float] | None:
    """The network's range when ``scale`` is global (else None: the layer's own values give the range)."""
    return await global_range(engine, lm, rec) if check_scale(scale) == "global" else None


async def activation_png(engine: Engine, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int | None, *,
                         scale: str = "channel", overlay: bool = False, opacity: float = DEFAULT_OPACITY) -> bytes:
    """The PNG of ``GET /api/images/{id}/activations/{layer}?format=png``: the layer's grid or one channel on
    ``scale``, or with ``overlay`` that channel over the network's input picture."""
    info = lm.layer(layer)
    network = await scale_context(engine, lm, rec, scale)
    if overlay:
        if channel is None or not info.is_spatial:
            raise BadParameterError("overlay=true needs a channel of a layer with a spatial map (C, H, W)")
        check_channel(channel, info.channels)
        act = await engine.layer_activation_async(lm, rec, layer)
        photo = await run_blocking(engine.network_input, lm, rec)
        return await engine.gate.run(functools.partial(draw.overlay_png, photo, act, channel, scale, network, opacity))
    data = await run_blocking(engine.cached_activation_png, lm, rec, layer, channel, scale)
    if data is None:  # the forward pass (batched) outside the slot that draws the PNG
        act = await engine.layer_activation_async(lm, rec, layer)
        data = await engine.gate.run(functools.partial(engine.activation_png, lm, rec, layer, channel, act,
                                                       scale=scale, network=network))
    return data


def fields(lm: LoadedModel) -> dict[str, LayerField | None]:
    """Every layer's receptive fields at the model's input size, computed once per (model, weights)."""
    key = (lm.name, lm.weights_sha256)
    with _lock:
        hit = _fields.get(key)
    if hit is None:
        hit = receptive_fields(lm.private_copy(), lm.spec.preprocess.input_size)
        with _lock:
            _fields[key] = hit
    return hit


def layer_field(lm: LoadedModel, layer: str) -> LayerField:
    info = lm.layer(layer)
    try:
        f = fields(lm).get(layer)
    except UnsupportedLayerError:
        f = None
    if f is None or not info.is_spatial:
        raise BadParameterError(f"layer {layer!r} has no receptive fields on the photo "
                                "(only layers with a spatial map (C, H, W) whose geometry can be derived)")
    return f


def receptive(lm: LoadedModel, layer: str, y: int | None = None, x: int | None = None) -> dict[str, Any]:
    """The JSON of ``GET /api/models/{model}/receptive``: per output row the input rows ``[y0, y1)`` its units
    depend on, per column the input columns ``[x0, x1)`` (a position's box is its row's and its column's),
    and with ``y`` and ``x`` that position's box and its textbook field (which may run past the image)."""
    f = layer_field(lm, layer)
    h, w = f.shape
    out: dict[str, Any] = {
        "model": lm.name, "layer": layer, "input_size": list(f.image_size), "shape": [h, w],
        "rows": [[int(f.y.lo[i]), int(f.y.hi[i]) + 1] for i in range(h)],
        "cols": [[int(f.x.lo[i]), int(f.x.hi[i]) + 1] for i in range(w)], "box": None, "field": None}
    if (y is None) != (x is None):
        raise BadParameterError("give both y and x (a position of the layer's map), or neither")
    if y is not None and x is not None:
        if not (0 <= y < h and 0 <= x < w):
            raise BadParameterError(f"position ({y}, {x}) is outside the layer's {h}×{w} map: y 0 to {h - 1}, "
                                    f"x 0 to {w - 1}")
        out.update(y=y, x=x, box=list(f.box(y, x)), field=list(f.field(y, x)))
    return out


def data_attrs(lm: LoadedModel, layer: str) -> dict[str, str] | None:
    """The receptive rows and columns as the page's compact data attributes ("y0,y1 y0,y1 ..."), or None."""
    try:
        r = receptive(lm, layer)
    except BadParameterError:
        return None
    return {"rows": " ".join(f"{a},{b}" for a, b in r["rows"]), "cols": " ".join(f"{a},{b}" for a, b in r["cols"]),
            "in_h": str(r["input_size"][0]), "in_w": str(r["input_size"][1])}

"""The real arithmetic of one unit of a layer for a photo (:mod:`app.core.arithmetic`), with the
activation that follows it (ReLU after a convolution) and, for the last layer, the softmax.

One pass as far as the layer, in a compute slot; nothing is kept (a click asks for one number).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from app.core.arithmetic import ELEMENTWISE, UnsupportedUnitError, computing_module, explain, layer_io
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.analysis.service import Engine
from app.features.overview.service import graph_of
from app.features.units import check_channel
from app.store.database import ImageRecord


def _following_activation(lm: LoadedModel, layer: str, value: float) -> dict[str, Any] | None:
    """The elementwise activation that reads only this layer's output (ReLU after a conv), applied."""
    g = graph_of(lm)
    after = [e.target for e in g.edges if e.source == layer]
    if len(after) != 1 or g.sources(after[0]) != [layer]:
        return None
    mod = computing_module(lm.module, after[0])
    if not isinstance(mod, ELEMENTWISE) or isinstance(mod, nn.Identity | nn.Dropout):
        return None
    with torch.inference_mode():
        out = float(mod(torch.tensor([value], dtype=torch.float32))[0])
    return {"layer": after[0], "function": type(mod).__name__, "input": value, "output": out}


def compute(engine: Engine, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int,
            y: int | None, x: int | None) -> dict[str, Any]:
    """The arithmetic of ``layer``'s unit (channel, y, x) for the photo (blocking: one partial pass)."""
    info = lm.layer(layer)
    if layer in lm.reused_layers:
        raise BadParameterError(f"layer {layer!r} runs more than once per pass: its arithmetic is not written out")
    x_in = lm.spec.preprocess.tensor(engine.picture(rec))
    with lm.lock.shared():
        inp, out = layer_io(lm.module, x_in, layer)
    mod = computing_module(lm.module, layer)
    last = layer == lm.layers[-1].name
    try:
        res = explain(mod, inp, out, channel, y, x, last=last, categories=list(lm.spec.categories))
    except UnsupportedUnitError as e:
        raise BadParameterError(str(e)) from None
    then = None if last or "pre_activation" not in res else _following_activation(lm, layer, res["served"])
    return {"image": rec.id, "model": lm.name, "layer": layer, "shape": list(info.output_shape),
            "input_shape": list(inp.shape), **res, "then": then}


async def arithmetic(engine: Engine, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int,
                     y: int | None, x: int | None) -> dict[str, Any]:
    """:func:`compute` in a compute slot of the engine (the channel checked first, as on every route)."""
    info = lm.layer(layer)
    if info.output_shape:
        check_channel(channel, info.output_shape[0], layer, "channel" if len(info.output_shape) == 3 else "unit")
    return await engine.gate.run(compute, engine, lm, rec, layer, channel, y, x)

"""Predictions and analyses with channels switched off (:mod:`app.core.ablation`): eager passes of the
served module with zeroing hooks, in a compute slot, nothing kept (the engine's caches hold the intact
network's results only). The ``ablate`` parameter's errors list the layer's channels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from app.core.ablation import AblationError, ablated, parse_ablation
from app.core.inference import Overview, channel_stats_arrays
from app.core.probe import UnknownLayerError, capture
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.analysis.service import Engine
from app.store.database import ImageRecord


def parse(lm: LoadedModel, text: str | Sequence[str]) -> dict[str, list[int]]:
    """The checked ``ablate`` value: 404 for an unknown layer (listing the layers), 422 for a bad channel."""
    try:
        return parse_ablation(text, {li.name: li.channels for li in lm.layers})
    except KeyError as e:
        raise UnknownLayerError(str(e.args[0]), [li.name for li in lm.layers],
                                "ablate takes layer:channel items, for example conv1:3,conv1:5", owner=lm.name) from None
    except AblationError as e:
        raise BadParameterError(str(e)) from None


def _input(engine: Engine, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
    return lm.spec.preprocess.tensor(engine.picture(rec))


@torch.inference_mode()
def _probabilities(engine: Engine, lm: LoadedModel, rec: ImageRecord, off: dict[str, list[int]]) -> torch.Tensor:
    x = _input(engine, lm, rec)
    with lm.lock.shared(), ablated(lm.module, off):
        logits = lm.module(x)
    return torch.softmax(logits.float(), dim=1)[0]


@torch.inference_mode()
def _overview(engine: Engine, lm: LoadedModel, rec: ImageRecord, off: dict[str, list[int]]) -> Overview:
    x = _input(engine, lm, rec)
    names = [li.name for li in lm.layers]
    with lm.lock.shared(), ablated(lm.module, off), capture(lm.module, names, clone=lm.clone_layers) as acts:
        logits = lm.module(x)
    return Overview(probabilities=torch.softmax(logits.float(), dim=1)[0],
                    stats={n: channel_stats_arrays(acts[n][0]) for n in names})


async def probabilities(engine: Engine, lm: LoadedModel, rec: ImageRecord, off: dict[str, list[int]]) -> torch.Tensor:
    """Class probabilities with the channels ``off`` zeroed."""
    return await engine.gate.run(_probabilities, engine, lm, rec, off)


async def overview(engine: Engine, lm: LoadedModel, rec: ImageRecord, off: dict[str, list[int]]) -> Overview:
    """Probabilities and every layer's per-channel stats with the channels ``off`` zeroed."""
    return await engine.gate.run(_overview, engine, lm, rec, off)

"""JSON (and raw array / PNG) faces of a photo's analysis: predictions, every layer's stats, one layer's activation."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app.core.inference import Overview, channel_stats, top_k
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.features.ablation import service as ablation
from app.features.analysis import onphoto
from app.features.analysis.schemas import ActivationOut, AnalysisOut, PredictionsOut
from app.features.analysis.service import Engine, npy_bytes
from app.features.units import check_channel
from app.http.representation import FormatQ, fresh, pick_format
from app.http.responses import ERRORS, NPY, PNG, ImageId, ModelQ, fast_json
from app.runtime.blocking import run_blocking
from app.store.database import ImageRecord

router = APIRouter(prefix="/api", tags=["api"])

ScaleQ = Annotated[Literal["channel", "layer", "global"], Query(
    description="PNG colour scale: each channel its own min-max (channel), one range for the layer (layer), "
                "or one range for the whole network on this photo (global)")]
OverlayQ = Annotated[bool, Query(description="PNG of one channel (channel= needed) laid over the network's input "
                                             "picture, upsampled to its size")]
OpacityQ = Annotated[float, Query(ge=0, le=1, description="the overlay's opacity: 0 the photo alone, 1 the map alone")]
AblateQ = Annotated[str | None, Query(max_length=20_000, description="channels switched off for this pass: "
                                      "layer:channel items, comma-separated (conv1:3,conv1:5)")]


def _subject(request: Request, engine: Engine, image_id: str, model: str | None, ablate: str | None
             ) -> tuple[ImageRecord, LoadedModel, dict[str, list[int]] | None]:
    """The photo, the model, the channels switched off; a 304 when the browser has this answer already."""
    rec = engine.image(image_id)
    lm = engine.pick(model)
    fresh(request, lm.weights_sha256, rec.sha256)
    return rec, lm, ablation.parse(lm, ablate) if ablate else None


@router.get("/images/{image_id}/predictions", response_model=PredictionsOut, responses=ERRORS,
            summary="Top-k labels and probabilities")
async def get_predictions(request: Request, engine: EngineDep, image_id: ImageId, model: ModelQ = None,
                          k: Annotated[int, Query(ge=1, le=1000)] = 5, ablate: AblateQ = None) -> Response:
    rec, lm, off = _subject(request, engine, image_id, model, ablate)
    probs = await (ablation.probabilities(engine, lm, rec, off) if off else engine.predictions(lm, rec))
    # the shape of PredictionsOut, written directly (no second validation of our own output)
    return fast_json({"image": rec.id, "model": lm.name,
                      "predictions": [vars(p) for p in top_k(probs, lm.spec.categories, k)],
                      **({"ablated": off} if off else {})})


def _analysis_response(lm: LoadedModel, rec: ImageRecord, ov: Overview, *, k: int,
                       ablated: dict[str, list[int]] | None = None) -> Response:
    layers = [{"name": li.name, "type": li.type, "shape": list(li.output_shape), "min": ov.stats[li.name][0],
               "max": ov.stats[li.name][1], "mean": ov.stats[li.name][2]} for li in lm.layers]
    return fast_json({"image": rec.id, "model": lm.name, "layers": layers,
                      "predictions": [vars(p) for p in ov.top(lm.spec.categories, k)],
                      **({"ablated": ablated} if ablated else {})})


@router.get("/images/{image_id}/analysis", response_model=AnalysisOut, responses=ERRORS,
            summary="Predictions plus every layer's shape and per-channel min/max/mean")
async def get_analysis(request: Request, engine: EngineDep, image_id: ImageId, model: ModelQ = None,
                       k: Annotated[int, Query(ge=1, le=1000)] = 5, ablate: AblateQ = None) -> Response:
    rec, lm, off = _subject(request, engine, image_id, model, ablate)
    if off:
        ov = await ablation.overview(engine, lm, rec, off)
        return await run_blocking(functools.partial(_analysis_response, lm, rec, ov, k=k, ablated=off))
    # JSON of a large model's stats takes milliseconds (efficientnet-lite0: 1.7 MB): off the loop,
    # in the thread that computes the overview
    _, response = await engine.overview_then(lm, rec, functools.partial(_analysis_response, lm, rec, k=k))
    return response


@router.get("/images/{image_id}/activations/{layer}", response_model=ActivationOut,
            responses={**ERRORS, 200: {"content": {**PNG["content"], **NPY["content"]}}},
            summary="One layer's activation: JSON values, raw .npy array, or a PNG (grid, channel, or over the photo)")
async def get_activation(request: Request, engine: EngineDep, image_id: ImageId,
                         layer: Annotated[str, Path(max_length=200)], model: ModelQ = None, format: FormatQ = None,
                         channel: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                         scale: ScaleQ = "channel", overlay: OverlayQ = False, opacity: OpacityQ = onphoto.DEFAULT_OPACITY,
                         ) -> Response:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    lm.layer(layer)
    format = pick_format(request, format)
    fresh(request, lm.weights_sha256, rec.sha256)
    if format == "png":
        data = await onphoto.activation_png(engine, lm, rec, layer, channel, scale=scale, overlay=overlay, opacity=opacity)
        return Response(data, media_type="image/png")
    act = await engine.layer_activation_async(lm, rec, layer)
    if channel is not None:
        check_channel(channel, act.shape[0], layer)
        act = act[channel]
    if format == "npy":
        fname = f"{rec.id}-{lm.name}-{layer}.npy"
        return Response(npy_bytes(act), media_type="application/x-npy",
                        headers={"Content-Disposition": f'attachment; filename="{fname}"'})
    s = channel_stats(act if channel is None else act[None])
    return fast_json({"image": rec.id, "model": lm.name, "layer": layer, "shape": list(act.shape),
                      "dtype": str(act.dtype).removeprefix("torch."), "min": s.min, "max": s.max, "mean": s.mean,
                      "values": act.numpy() if act.dim() else float(act)})  # a vector layer's unit: one number

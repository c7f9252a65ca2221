"""JSON faces of the served models: the list, one model's layers, a conv layer's learned filters (and how much the
first layer's look like the lecture's hand-made ones), a layer's receptive fields."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app.deps import EngineDep
from app.features.analysis import onphoto
from app.features.analysis.service import npy_bytes
from app.features.models.likeness import likeness_json
from app.features.models.schemas import (
    FiltersOut,
    LikenessOut,
    ModelDetail,
    ModelSummary,
    ReceptiveOut,
    model_detail,
    model_summary,
)
from app.http.representation import FormatQ, fresh, pick_format
from app.http.responses import ERRORS, NPY, PNG, fast_json
from app.runtime.blocking import run_blocking

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/models", response_model=list[ModelSummary], summary="The served models")
async def list_models(engine: EngineDep) -> list[ModelSummary]:
    return [model_summary(m) for m in engine.zoo.models.values()]


@router.get("/models/{model}", response_model=ModelDetail, responses=ERRORS,
            summary="One model: layers with type, output shape and parameters")
async def get_model(engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> ModelDetail:
    return model_detail(engine.model(model))


@router.get("/models/{model}/filters", response_model=FiltersOut,
            responses={**ERRORS, 200: {"content": {**PNG["content"], **NPY["content"]}}},
            summary="Learned filters of a conv layer (default: the first) as JSON, a raw .npy array (K, C, kh, kw) "
                    "or a PNG grid")
async def get_filters(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                      layer: Annotated[str | None, Query(max_length=200)] = None,
                      format: FormatQ = None,
                      view: Literal["rgb", "channels"] = "rgb") -> Response:
    lm = engine.model(model)
    format = pick_format(request, format)
    fresh(request, lm.weights_sha256, private=False)
    if format == "png":
        return Response(engine.filters_png(lm, layer, view), media_type="image/png")
    w = engine.filters(lm, layer)
    if format == "npy":
        return Response(npy_bytes(w), media_type="application/x-npy")
    return fast_json({"model": lm.name, "layer": layer or lm.first_conv, "shape": list(w.shape),
                      "min": float(w.min()), "max": float(w.max()), "values": w.float().numpy()})


@router.get("/models/{model}/filters/likeness", response_model=LikenessOut, responses=ERRORS,
            summary="The first layer's filters ranked by cosine similarity to the lecture's hand-made filters")
async def get_likeness(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                       training: Annotated[bool, Query(description="also at every training snapshot")] = True) -> Response:
    lm = engine.model(model)
    return fast_json(await run_blocking(lambda: likeness_json(engine, lm, training=training)))


@router.get("/models/{model}/receptive", response_model=ReceptiveOut, responses=ERRORS,
            summary="A layer's exact receptive boxes on the network's input: per row and column, or one position's")
async def get_receptive(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                        layer: Annotated[str, Query(max_length=200)],
                        y: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                        x: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> Response:
    lm = engine.model(model)
    return fast_json(await run_blocking(onphoto.receptive, lm, layer, y, x))

"""JSON faces of the served models: the list, one model's layers, and a conv layer's learned filters."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.deps import EngineDep
from app.features.models.schemas import FiltersOut, ModelDetail, ModelSummary, model_detail, model_summary
from app.http.responses import ERRORS, PNG, fast_json

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/models", response_model=list[ModelSummary], summary="The served models")
async def list_models(engine: EngineDep) -> list[ModelSummary]:
    return [model_summary(m) for m in engine.zoo.models.values()]


@router.get("/models/{model}", response_model=ModelDetail, responses=ERRORS,
            summary="One model: layers with type, output shape and parameters")
async def get_model(engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> ModelDetail:
    return model_detail(engine.model(model))


@router.get("/models/{model}/filters", response_model=FiltersOut, responses={**ERRORS, 200: PNG},
            summary="Learned filters of a conv layer (default: the first) as JSON or a PNG grid")
async def get_filters(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                      layer: Annotated[str | None, Query(max_length=200)] = None,
                      format: Literal["json", "png"] = "json",
                      view: Literal["rgb", "channels"] = "rgb") -> Response:
    lm = engine.model(model)
    if format == "png":
        return Response(engine.filters_png(lm, layer, view), media_type="image/png")
    w = engine.filters(lm, layer)
    return fast_json({"model": lm.name, "layer": layer or lm.first_conv, "shape": list(w.shape),
                      "min": float(w.min()), "max": float(w.max()), "values": w.float().numpy()})

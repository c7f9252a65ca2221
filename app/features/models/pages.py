"""HTML faces of the served models: the list, one model's layers and card, a conv layer's learned filters (the first
layer's ranked by their likeness to the lecture's hand-made filters)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.core.imaging import png_data_uri
from app.deps import EngineDep
from app.features.models.charts import class_charts, history_note, training_charts
from app.features.models.likeness import page_context
from app.features.models.schemas import model_detail
from app.runtime.blocking import run_blocking
from app.web.templating import fmt_num, lang_of, render

router = APIRouter(include_in_schema=False)


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, engine: EngineDep) -> HTMLResponse:
    return render(request, "models.html", {"models": list(engine.zoo.models.values())})


@router.get("/models/{model}", response_class=HTMLResponse)
async def model_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    lm = engine.model(model)
    card, lang = lm.spec.card, lang_of(request)
    return render(request, "model.html", {"model": lm, "detail": model_detail(lm), "total": lm.total_parameters,
                                          "curves": training_charts(card, lang), "classes": class_charts(card, lang),
                                          "curves_note": history_note(card, lang) if card else ""})


@router.get("/models/{model}/filters", response_class=HTMLResponse)
async def filters_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str | None, Query(max_length=200)] = None,
                       view: Literal["rgb", "channels"] = "rgb") -> HTMLResponse:
    lm = engine.model(model)
    w = engine.filters(lm, layer)
    png = await engine.gate.run(engine.filters_png, lm, layer, view)
    first = layer in (None, lm.first_conv)
    lk = await run_blocking(page_context, engine, lm, lang_of(request)) if first else {}
    return render(request, "filters.html", {
        **lk, "model": lm, "layer": layer or lm.first_conv, "view": view, "src": png_data_uri(png), "shape": list(w.shape),
        "lo": fmt_num(float(w.min()), lang_of(request)),
        "hi": fmt_num(float(w.max()), lang_of(request))}, block="filters")

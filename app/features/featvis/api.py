"""JSON and PNG faces of feature visualization: one picture (cached, or 202 + the job that renders it)
and a layer's gallery."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.deps import EngineDep, FeatVisDep
from app.features.featvis.gallery import GalleryLayer, ModelName, Show, gallery, start_missing
from app.features.featvis.service import Kind, objective_of
from app.features.jobs.service import accepted
from app.http.responses import ERRORS, fast_json

router = APIRouter(prefix="/api", tags=["featvis"])


@router.get("/models/{model}/layers/{layer}/channels/{channel}/featvis", responses={
    **ERRORS, 200: {"content": {"image/png": {}, "application/json": {}}},
    202: {"description": "rendering: poll the job URL"}},
    summary="Feature visualization of a channel / neuron / unit / class / layer: cached result or 202 + job")
async def get_featvis(request: Request, engine: EngineDep, svc: FeatVisDep, model: Annotated[str, Path(max_length=64)],
                      layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                      objective: Kind = "channel", y: Annotated[int | None, Query(ge=0, le=4096)] = None,
                      x: Annotated[int | None, Query(ge=0, le=4096)] = None,
                      steps: Annotated[int | None, Query(ge=1, le=2048)] = None,
                      seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                      images: Annotated[int, Query(ge=1, le=4)] = 1,
                      diversity: Annotated[float, Query(ge=0, le=100)] = 0.0,
                      format: Literal["json", "png"] = "json") -> Response:
    lm, obj = objective_of(engine, model, layer, channel, objective, y, x)
    s = svc.settings_for(lm, steps=steps, seed=seed, images=images, diversity=diversity)
    hit = svc.cached(lm, obj, s)
    if hit is not None:
        png, meta = hit
        if format == "png":
            return Response(png, media_type="image/png")
        return fast_json({"status": "done", "image_url": str(request.url.include_query_params(format="png")), **meta})
    path = f"/models/{lm.name}/layers/{layer}/channels/{channel}/featvis"
    query = request.url.query
    return accepted(svc.start(lm, obj, s, result_url=f"/api{path}" + (f"?{query}" if query else ""),
                              page_url=path + (f"?{query}" if query else "")))


@router.post("/models/{model}/featvis", status_code=202, responses={
    **ERRORS, 200: {"description": "nothing to render: every picture is there"}},
    summary="Render in the background the pictures of a layer's channels (or of the classes) not rendered yet")
async def post_featvis_gallery(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName, layer: GalleryLayer = None,
                               show: Show = "channels") -> Response:
    g = gallery(request, engine, svc, model, layer, show)
    job = start_missing(request, svc, g)
    if job is None:
        return JSONResponse({"status": "done", "rendered": g["rendered"]})
    return accepted(job)


@router.get("/models/{model}/featvis", responses=ERRORS,
         summary="Which feature visualizations of a layer's channels (or of the classes) are rendered, with their URLs")
async def get_featvis_gallery(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName, layer: GalleryLayer = None,
                              show: Show = "channels") -> Response:
    g = gallery(request, engine, svc, model, layer, show)
    return fast_json({"model": model, "layer": g["layer"], "objective": g["objective"],
                      "settings": {"steps": g["steps"], "seed": g["seed"]}, "rendered": g["rendered"],
                      "items": [{"index": i["index"], "label": i["label"], "rendered": i["rendered"], "url": i["json"],
                                 "image_url": i["image"]} for i in g["items"]]})

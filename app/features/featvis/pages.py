"""HTML faces of feature visualization: one picture's page (with its job's progress) and the galleries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.core.featvis import OBJECTIVES
from app.deps import EngineDep, FeatVisDep
from app.features.featvis.gallery import GalleryLayer, ModelName, Show, gallery, start_missing
from app.features.featvis.service import Kind, objective_of
from app.web.templating import render, url_with

router = APIRouter(include_in_schema=False)


@router.get("/models/{model}/featvis", response_class=HTMLResponse)
async def featvis_gallery(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName, layer: GalleryLayer = None,
                          show: Show = "channels", job: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    g = gallery(request, engine, svc, model, layer, show)
    running = svc.jobs.get(job) if job else None
    return render(request, "featvis_gallery.html", {**g, "job": running if running and running.active else None},
                  block="gallery")


@router.post("/models/{model}/featvis", response_class=HTMLResponse)
async def featvis_gallery_render(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName,
                                 layer: GalleryLayer = None,
                                 show: Show = "channels") -> Response:
    """The gallery's button: htmx gets the job's progress panel; without JS, the gallery showing it."""
    g = gallery(request, engine, svc, model, layer, show)
    job = start_missing(request, svc, g)
    if request.headers.get("HX-Request") != "true":
        return RedirectResponse(url_with(request, f"/models/{model}/featvis", **g["self_params"],
                                         job=job.id if job else None), status_code=303)
    if job is None:
        return Response(status_code=200, headers={"HX-Redirect": g["self_url"]})
    return render(request, "partials/job.html", {"job": job, "done_url": g["self_url"]}, block="job")


ONE = "/models/{model}/layers/{layer}/channels/{channel}/featvis"
ModelP = Annotated[str, Path(max_length=64)]
LayerP = Annotated[str, Path(max_length=200)]
ChannelP = Annotated[int, Path(ge=0, le=100_000)]
StepsQ = Annotated[int | None, Query(ge=1, le=2048)]
SeedQ = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.post(ONE, response_class=HTMLResponse)
async def featvis_render(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelP, layer: LayerP,
                         channel: ChannelP, objective: Kind = "channel", steps: StepsQ = None, seed: SeedQ = 0) -> Response:
    """The page's render button (GETs never start work): htmx gets the section with the job's progress
    panel in it (it swaps the picture in when the job ends); without JS, the page showing it."""
    lm, obj = objective_of(engine, model, layer, channel, objective, None, None)
    s = svc.settings_for(lm, steps=steps, seed=seed)
    qs = {k: v for k, v in request.query_params.items() if k not in ("lang", "job")}
    page = url_with(request, request.url.path, **qs)
    job = None
    if svc.cached(lm, obj, s) is None:
        api_path = f"/api/models/{lm.name}/layers/{layer}/channels/{channel}/featvis"
        job = svc.start(lm, obj, s, result_url=url_with(request, api_path, **qs), page_url=page)
    if request.headers.get("HX-Request") != "true":
        return RedirectResponse(url_with(request, request.url.path, **qs, job=job.id if job else None), status_code=303)
    return await featvis_page(request, engine, svc, model, layer, channel, objective, steps, seed,
                              job.id if job else None)


@router.get(ONE, response_class=HTMLResponse)
async def featvis_page(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelP, layer: LayerP, channel: ChannelP,
                       objective: Kind = "channel", steps: StepsQ = None, seed: SeedQ = 0,
                       job: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    """The picture when rendered; else its job's progress (``job=``, after the render button) or the button."""
    lm, obj = objective_of(engine, model, layer, channel, objective, None, None)
    s = svc.settings_for(lm, steps=steps, seed=seed)
    hit = svc.cached(lm, obj, s)
    qs = {k: v for k, v in request.query_params.items() if k not in ("lang", "job")}
    api_path = f"/api/models/{lm.name}/layers/{layer}/channels/{channel}/featvis"
    running = svc.jobs.get(job) if job and hit is None else None
    return render(request, "featvis.html", {
        "model": lm, "obj": obj, "settings": s, "meta": hit[1] if hit else None,
        "job": running if running and running.kind == "featvis" else None,
        "objectives": OBJECTIVES, "layer": layer, "channel": channel,
        "image_url": url_with(request, api_path, **qs, format="png"),
        "self_url": url_with(request, request.url.path, **qs)}, block="featvis")

"""JSON and PNG faces of feature visualization: one picture (GET answers it when rendered, else 404 naming
the POST; POST renders it as a job: 202 + Location) and a layer's gallery (GET lists, POST renders the rest).
GETs never start work."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.deps import EngineDep, FeatVisDep
from app.features.featvis.gallery import GalleryLayer, ModelName, Show, gallery, start_missing
from app.features.featvis.schemas import FeatVisOut, GalleryDoneOut, GalleryOut
from app.features.featvis.service import FeatVisRequest, Kind, NotRendered, objective_of
from app.features.jobs.schemas import AcceptedOut
from app.features.jobs.service import accepted
from app.http.representation import FormatQ, fresh, pick_format
from app.http.responses import ERRORS, PNG, Problem, fast_json

router = APIRouter(prefix="/api", tags=["featvis"])
ONE = "/models/{model}/layers/{layer}/channels/{channel}/featvis"


def one_picture(request: Request, engine: EngineDep, svc: FeatVisDep, model: Annotated[str, Path(max_length=64)],
                layer: Annotated[str, Path(max_length=200)],
                channel: Annotated[str, Path(max_length=100, pattern=r"^[^/]+$",
                                             description="channel or unit index; with objective=class a class index "
                                                         "or name (cat)")],
                objective: Kind = "channel", y: Annotated[int | None, Query(ge=0, le=4096)] = None,
                x: Annotated[int | None, Query(ge=0, le=4096)] = None,
                steps: Annotated[int | None, Query(ge=1, le=2048)] = None,
                seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                images: Annotated[int, Query(ge=1, le=4)] = 1,
                diversity: Annotated[float, Query(ge=0, le=100)] = 0.0) -> FeatVisRequest:
    """The picture a request names (validated), and its URLs relative to this server."""
    lm, obj = objective_of(engine, model, layer, channel, objective, y, x)
    s = svc.settings_for(lm, steps=steps, seed=seed, images=images, diversity=diversity)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "format"])
    canon = channel if obj.kind == "layer" else obj.channel  # a class name becomes its index
    path = f"/models/{lm.name}/layers/{layer}/channels/{canon}/featvis" + (f"?{query}" if query else "")
    return FeatVisRequest(lm, obj, s, api_url=f"/api{path}", page_url=path)


OneDep = Annotated[FeatVisRequest, Depends(one_picture)]
NOT_RENDERED = {"model": Problem, "description": "unknown model or layer, or not rendered yet (code not_rendered: "
                                                 "POST the same URL to render it)"}


@router.get(ONE, response_model=None, responses={
    **ERRORS, 200: {"model": FeatVisOut, **PNG}, 404: NOT_RENDERED},
    summary="Feature visualization of a channel / neuron / unit / class / layer, once rendered (POST renders it)")
async def get_featvis(request: Request, svc: FeatVisDep, r: OneDep, format: FormatQ = None) -> Response:
    format = pick_format(request, format, ("json", "png"))
    hit = svc.cached(r.lm, r.obj, r.s)
    if hit is None:
        raise NotRendered(r.api_url)
    fresh(request, r.lm.weights_sha256, private=False)
    png, meta = hit
    if format == "png":
        return Response(png, media_type="image/png")
    sep = "&" if "?" in r.api_url else "?"
    return fast_json({"status": "done", "image_url": f"{r.api_url}{sep}format=png", **meta})


@router.post(ONE, status_code=202, response_model=AcceptedOut, responses={
    **ERRORS, 200: {"model": FeatVisOut, "description": "already rendered: the picture's metadata"},
    202: {"model": AcceptedOut, "description": "rendering: poll the job in Location; its result_url is the picture"}},
    summary="Render a feature visualization in the background (202 + Location of the job)")
async def post_featvis(svc: FeatVisDep, r: OneDep) -> Response:
    hit = svc.cached(r.lm, r.obj, r.s)
    if hit is not None:
        sep = "&" if "?" in r.api_url else "?"
        return fast_json({"status": "done", "image_url": f"{r.api_url}{sep}format=png", **hit[1]})
    return accepted(svc.start(r.lm, r.obj, r.s, result_url=r.api_url, page_url=r.page_url))


@router.post("/models/{model}/featvis", status_code=202, response_model=AcceptedOut, responses={
    **ERRORS, 200: {"model": GalleryDoneOut, "description": "nothing to render: every picture is there"},
    202: {"model": AcceptedOut, "description": "rendering: poll the job in Location"}},
    summary="Render in the background the pictures of a layer's channels (or of the classes) not rendered yet")
async def post_featvis_gallery(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName, layer: GalleryLayer = None,
                               show: Show = "channels") -> Response:
    g = gallery(request, engine, svc, model, layer, show)
    job = start_missing(request, svc, g)
    if job is None:
        return JSONResponse({"status": "done", "rendered": g["rendered"]})
    return accepted(job)


@router.get("/models/{model}/featvis", response_model=None, responses={**ERRORS, 200: {"model": GalleryOut}},
            summary="Which feature visualizations of a layer's channels (or of the classes) are rendered, with their URLs")
async def get_featvis_gallery(request: Request, engine: EngineDep, svc: FeatVisDep, model: ModelName, layer: GalleryLayer = None,
                              show: Show = "channels") -> Response:
    g = gallery(request, engine, svc, model, layer, show)
    return fast_json({"model": model, "layer": g["layer"], "objective": g["objective"],
                      "settings": {"steps": g["steps"], "seed": g["seed"]}, "rendered": g["rendered"],
                      "items": [{"index": i["index"], "label": i["label"], "rendered": i["rendered"], "url": i["json"],
                                 "image_url": i["image"]} for i in g["items"]]})

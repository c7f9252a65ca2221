"""Feature visualization (background jobs, cached) and attribution maps: JSON/PNG and HTML faces."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from app import i18n
from app.blocking import run_blocking
from app.core.featvis import OBJECTIVES
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.featvis_service import FeatVisService, last_spatial_conv, make_objective, overlay_png
from app.jobs import JobState
from app.routes.api import ERRORS, fast_json, pick_model
from app.services import BadParameterError, Engine, NotFoundError
from app.web import lang_of, render, url_with

api = APIRouter(prefix="/api", tags=["featvis"])
pages = APIRouter(include_in_schema=False)

i18n.register({
    "fv.title": ("Feature visualization: {what}", "Visualización de características: {what}"),
    "fv.help": ("An image optimised by gradient ascent to excite {kind} as much as possible, starting from "
                "noise, with jitter, scaling and rotation at each step so that it does not exploit single pixels.",
                "Una imagen optimizada por ascenso de gradiente para excitar {kind} al máximo: parte de ruido "
                "y en cada paso se desplaza, escala y gira para no aprovechar píxeles sueltos."),
    "fv.this.channel": ("this channel", "este canal"),
    "fv.this.neuron": ("this neuron", "esta neurona"),
    "fv.this.unit": ("this unit", "esta unidad"),
    "fv.this.class": ("this class", "esta clase"),
    "fv.this.layer": ("this layer", "esta capa"),
    "fv.kind.channel": ("channel", "canal"),
    "fv.kind.neuron": ("neuron", "neurona"),
    "fv.kind.unit": ("unit", "unidad"),
    "fv.kind.class": ("class", "clase"),
    "fv.kind.layer": ("whole layer", "capa entera"),
    "fv.what.channel": ("{layer} channel {c}", "{layer}, canal {c}"),
    "fv.what.neuron": ("{layer} channel {c} at ({y}, {x})", "{layer}, canal {c} en ({y}, {x})"),
    "fv.what.unit": ("{layer} unit {c}", "{layer}, unidad {c}"),
    "fv.what.class": ("{layer} class {c}", "{layer}, clase {c}"),
    "fv.what.layer": ("layer {layer} (DeepDream)", "capa {layer} (DeepDream)"),
    "fv.step": ("Step {step} of {total} · objective {value}", "Paso {step} de {total} · objetivo {value}"),
    "fv.queued": ("Waiting for a free worker…", "Esperando a que quede libre el proceso…"),
    "fv.cancel": ("Cancel", "Cancelar"),
    "fv.cancelled": ("Cancelled. Nothing was saved.", "Cancelado. No se guardó nada."),
    "fv.failed": ("The job failed: {msg}", "El trabajo falló: {msg}"),
    "fv.final": ("Objective on the final image: {value} (rose from {first} at the first step)",
                 "Objetivo en la imagen final: {value} (subió desde {first} en el primer paso)"),
    "fv.open": ("Feature visualization of channel {c}", "Visualización de características del canal {c}"),
    "fv.start": ("Render", "Generar"),
    "fv.objective": ("Objective", "Objetivo"),
    "fv.steps": ("Steps", "Pasos"),
    "fv.seed": ("Seed", "Semilla"),
    "fvg.title": ("Feature visualization · {model}", "Visualización de características · {model}"),
    "fvg.lead": ("What each channel of a layer responds to most, as an image optimised for it. Rendered pictures "
                 "are shown; open any other to render it (seconds for a small model, longer for a large one).",
                 "A qué responde más cada canal de una capa, como una imagen optimizada para él. Se muestran las "
                 "ya generadas; abre cualquier otra para generarla (segundos en un modelo pequeño, más en uno "
                 "grande)."),
    "fvg.layer": ("Layer", "Capa"),
    "fvg.show": ("Show", "Mostrar"),
    "fvg.channels": ("The layer's channels", "Los canales de la capa"),
    "fvg.classes": ("The classes (output)", "Las clases (salida)"),
    "fvg.go": ("Show", "Mostrar"),
    "fvg.count": ("{done} of {total} rendered.", "{done} de {total} generadas."),
    "fvg.cli": ("Render them all ahead of class:", "Para generarlas todas antes de la clase:"),
    "fvg.whole": ("The whole layer (DeepDream)", "La capa entera (DeepDream)"),
    "fvg.todo": ("not rendered yet: open it to render", "aún sin generar: ábrela para generarla"),
    "fvg.render_all": ("Render the {n} missing here", "Generar aquí las {n} que faltan"),
    "fvg.progress": ("Picture {step} of {total}", "Imagen {step} de {total}"),
    "fvg.done": ("{n} pictures rendered: show them", "{n} imágenes generadas: verlas"),
    "fvg.cancelled": ("Cancelled; the {n} pictures rendered so far are kept.",
                      "Cancelado; se guardan las {n} imágenes ya generadas."),
    "fvg.too_many": ("{n} pictures are too many to render from the browser (at most {limit} for this model): use "
                     "the command line, {cmd}",
                     "{n} imágenes son demasiadas para generarlas desde el navegador (como mucho {limit} en este "
                     "modelo): usa la línea de órdenes, {cmd}"),
    "attr.title": ("Why this prediction?", "¿Por qué esta predicción?"),
    "attr.help": ("Bright areas are the pixels the chosen class depends on most, by the chosen method.",
                  "Las zonas claras son los píxeles de los que más depende la clase elegida, según el método."),
    "attr.method": ("Method", "Método"),
    "attr.class": ("Class", "Clase"),
    "attr.show": ("Show", "Mostrar"),
    "attr.busy": ("Computing… occlusion runs the network once per window position: on a large model it takes "
                  "several seconds.",
                  "Calculando… la oclusión ejecuta la red una vez por cada posición de la ventana: en un modelo "
                  "grande tarda varios segundos."),
    "attr.scale": ("Scale: {lo} (dark) to {hi} (yellow)", "Escala: {lo} (oscuro) a {hi} (amarillo)"),
    "attr.saliency": ("Gradient saliency", "Saliencia por gradiente"),
    "attr.smoothgrad": ("SmoothGrad", "SmoothGrad"),
    "attr.gradcam": ("Grad-CAM", "Grad-CAM"),
    "attr.occlusion": ("Occlusion", "Oclusión"),
})


def service(request: Request) -> FeatVisService:
    st = request.app.state
    if getattr(st, "featvis", None) is None:
        st.featvis = FeatVisService(st.engine)
    return st.featvis  # type: ignore[no-any-return]


Kind = Literal["channel", "neuron", "unit", "class", "layer"]


def _objective(engine: Engine, model: str, layer: str, channel: int, objective: str, y: int | None, x: int | None):
    lm = engine.model(model)
    return lm, make_objective(lm, objective, layer, channel, y, x)


@api.get("/models/{model}/layers/{layer}/channels/{channel}/featvis", responses={
    **ERRORS, 200: {"content": {"image/png": {}, "application/json": {}}},
    202: {"description": "rendering: poll the job URL"}},
    summary="Feature visualization of a channel / neuron / unit / class / layer: cached result or 202 + job")
async def get_featvis(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                      layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                      objective: Kind = "channel", y: Annotated[int | None, Query(ge=0, le=4096)] = None,
                      x: Annotated[int | None, Query(ge=0, le=4096)] = None,
                      steps: Annotated[int | None, Query(ge=1, le=2048)] = None,
                      seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                      images: Annotated[int, Query(ge=1, le=4)] = 1,
                      diversity: Annotated[float, Query(ge=0, le=100)] = 0.0,
                      format: Literal["json", "png"] = "json") -> Response:
    svc = service(request)
    lm, obj = _objective(engine, model, layer, channel, objective, y, x)
    s = svc.settings_for(lm, steps=steps, seed=seed, images=images, diversity=diversity)
    hit = svc.cached(lm, obj, s)
    if hit is not None:
        png, meta = hit
        if format == "png":
            return Response(png, media_type="image/png")
        return fast_json({"status": "done", "image_url": str(request.url.include_query_params(format="png")), **meta})
    job = svc.start(lm, obj, s)
    return JSONResponse({"status": job.status, "job": job.public(), "job_url": f"/api/jobs/{job.id}"},
                        status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@api.get("/jobs/{job_id}", responses={404: ERRORS[404]}, summary="Progress of a background job")
async def get_job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    return JSONResponse(_job(request, job_id).public())


@api.delete("/jobs/{job_id}", responses={404: ERRORS[404]}, summary="Cancel a background job (stops within one step)")
async def cancel_job(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    return JSONResponse(_job(request, job_id, cancel=True).public())


def _job(request: Request, job_id: str, *, cancel: bool = False) -> JobState:
    jobs = service(request).jobs
    job = jobs.cancel(job_id) if cancel else jobs.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


@api.get("/jobs/{job_id}/preview.png", responses={404: ERRORS[404], 200: {"content": {"image/png": {}}}},
         response_class=Response, summary="The latest intermediate image of a feature visualization job")
async def job_preview(request: Request, job_id: Annotated[str, Path(max_length=64)]) -> Response:
    job = service(request).jobs.get(job_id)
    if job is None or job.preview is None:
        raise JobNotFound(job_id)
    return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})


class JobNotFound(NotFoundError):
    kind = "job"

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, hint="jobs are started by the featvis endpoints and kept while the server runs")


Method = Literal["saliency", "smoothgrad", "gradcam", "occlusion"]


async def _attribution(request: Request, engine: Engine, image_id: str, model: str | None, method: str,
                       target: int | None, layer: str | None, window: int, stride: int, fill: float, n: int,
                       sigma: float):
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    svc = service(request)
    args = (lm, rec, method, target, layer, window, stride, fill, n, sigma)
    amap = engine.attributions.get(svc.map_key(*args))  # the page's picture, right after its numbers: no second run
    if amap is None:
        amap = await engine.gate.run(svc.attribution, *args)
    return rec, lm, amap


@api.get("/images/{image_id}/attribution", responses={**ERRORS, 200: {"content": {"image/png": {}}}},
         summary="Attribution map for one prediction: saliency, SmoothGrad, Grad-CAM or occlusion (JSON or PNG overlay)")
async def get_attribution(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                          model: Annotated[str | None, Query(max_length=64)] = None, method: Method = "gradcam",
                          target: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                          layer: Annotated[str | None, Query(max_length=200)] = None,
                          window: Annotated[int, Query(ge=1, le=512)] = 8, stride: Annotated[int, Query(ge=1, le=512)] = 4,
                          fill: Annotated[float, Query(ge=-10, le=10)] = 0.0,
                          n: Annotated[int, Query(ge=1, le=64)] = 16, sigma: Annotated[float, Query(ge=0, le=1)] = 0.15,
                          format: Literal["json", "png"] = "json") -> Response:
    rec, lm, amap = await _attribution(request, engine, image_id, model, method, target, layer, window, stride, fill,
                                       n, sigma)
    if format == "png":
        return Response(await run_blocking(overlay_png, engine, lm, rec, amap), media_type="image/png")
    v = amap.values
    return fast_json({"image": rec.id, "model": lm.name, "method": amap.method, "target": amap.target,
                      "label": lm.spec.categories[amap.target], "settings": amap.settings, "shape": list(v.shape),
                      "min": float(v.min()), "max": float(v.max()), "values": v.float().numpy()})


Show = Literal["channels", "classes"]
ModelName = Annotated[str, Path(max_length=64)]
GalleryLayer = Annotated[str | None, Query(max_length=200, description="default: the last convolution")]


def _gallery(request: Request, engine: Engine, model: str, layer: str | None, show: str) -> dict[str, object]:
    """The feature visualizations of one layer's channels (or of the classes), each with its page and,
    when rendered with the default settings, its picture."""
    svc = service(request)
    lm = engine.model(model)
    if show == "classes":
        layer = lm.layers[-1].name
        kind, labels = "class", list(lm.spec.categories)
    else:
        layer = layer or last_spatial_conv(lm)
        info = lm.layer(layer)
        kind, labels = ("channel" if info.is_spatial else "unit"), [str(c) for c in range(info.channels)]
    s = svc.settings_for(lm)
    objs = [make_objective(lm, kind, layer, c) for c in range(len(labels))]
    whole = make_objective(lm, "layer", layer, 0) if show != "classes" else None
    done = svc.rendered(lm, objs + ([whole] if whole else []), s)
    whole_done = done.pop() if whole else False
    qs = {} if kind == "channel" else {"objective": kind}

    def item(c: int, rendered: bool) -> dict[str, object]:
        path = f"/models/{lm.name}/layers/{layer}/channels/{c}/featvis"
        api_url = f"/api{path}" + (f"?objective={kind}" if qs else "")
        return {"index": c, "label": labels[c], "rendered": rendered, "page": url_with(request, path, **qs),
                "json": api_url, "image": api_url + ("&" if qs else "?") + "format=png" if rendered else None}

    items = [item(c, d) for c, d in enumerate(done)]
    cmd = f"convscope featvis --model {lm.name} --layer {layer} --all" + (f" --objective {kind}" if qs else "")
    self_params = {"layer": layer} if show == "channels" else {"show": show}  # this gallery's own URL
    return {"model": lm, "layers": [li.name for li in lm.layers], "layer": layer, "objective": kind, "show": show,
            "items": items, "rendered": sum(done), "steps": s.steps, "seed": s.seed, "objs": objs, "settings": s,
            "missing": len(done) - sum(done), "limit": _render_limit(lm), "cmd": cmd,
            "self_url": url_with(request, f"/models/{lm.name}/featvis", **self_params), "self_params": self_params,
            "whole": None if whole is None else {
                "rendered": whole_done,
                "page": url_with(request, f"/models/{lm.name}/layers/{layer}/channels/0/featvis", objective="layer"),
                "image": f"/api/models/{lm.name}/layers/{layer}/channels/0/featvis?objective=layer&format=png"}}


def _render_limit(lm: LoadedModel) -> int:
    """How many pictures one browser request may queue: a 32x32 picture takes about a second here, a
    224x224 one tens of seconds."""
    return 256 if lm.spec.preprocess.crop <= 64 else 16


def _start_many(request: Request, g: dict[str, Any]) -> JobState | None:
    lm = g["model"]
    if g["missing"] > g["limit"]:
        raise BadParameterError(i18n.translator(lang_of(request))(
            "fvg.too_many", n=g["missing"], limit=g["limit"], cmd=g["cmd"]))
    todo = [o for o, it in zip(g["objs"], g["items"], strict=True) if not it["rendered"]]
    return service(request).start_many(lm, todo, g["settings"])


@api.post("/models/{model}/featvis", status_code=202, responses={
    **ERRORS, 200: {"description": "nothing to render: every picture is there"}},
    summary="Render in the background the pictures of a layer's channels (or of the classes) not rendered yet")
async def post_featvis_gallery(request: Request, engine: EngineDep, model: ModelName, layer: GalleryLayer = None,
                               show: Show = "channels") -> Response:
    g = _gallery(request, engine, model, layer, show)
    job = _start_many(request, g)
    if job is None:
        return JSONResponse({"status": "done", "rendered": g["rendered"]})
    return JSONResponse({"status": job.status, "job": job.public(), "job_url": f"/api/jobs/{job.id}"},
                        status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@api.get("/models/{model}/featvis", responses=ERRORS,
         summary="Which feature visualizations of a layer's channels (or of the classes) are rendered, with their URLs")
async def get_featvis_gallery(request: Request, engine: EngineDep, model: ModelName, layer: GalleryLayer = None,
                              show: Show = "channels") -> Response:
    g = _gallery(request, engine, model, layer, show)
    return fast_json({"model": model, "layer": g["layer"], "objective": g["objective"],
                      "settings": {"steps": g["steps"], "seed": g["seed"]}, "rendered": g["rendered"],
                      "items": [{"index": i["index"], "label": i["label"], "rendered": i["rendered"], "url": i["json"],
                                 "image_url": i["image"]} for i in g["items"]]})


# -- HTML faces ---------------------------------------------------------------------------------
@pages.get("/models/{model}/featvis", response_class=HTMLResponse)
async def featvis_gallery(request: Request, engine: EngineDep, model: ModelName, layer: GalleryLayer = None,
                          show: Show = "channels", job: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    g = _gallery(request, engine, model, layer, show)
    running = service(request).jobs.get(job) if job else None
    return render(request, "featvis_gallery.html", {**g, "job": running if running and running.active else None},
                  block="gallery")


@pages.post("/models/{model}/featvis", response_class=HTMLResponse)
async def featvis_gallery_render(request: Request, engine: EngineDep, model: ModelName, layer: GalleryLayer = None,
                                 show: Show = "channels") -> Response:
    """The gallery's button: htmx gets the job's progress panel; without JS, the gallery showing it."""
    g = _gallery(request, engine, model, layer, show)
    job = _start_many(request, g)
    if request.headers.get("HX-Request") != "true":
        return RedirectResponse(url_with(request, f"/models/{model}/featvis", **g["self_params"],
                                         job=job.id if job else None), status_code=303)
    if job is None:
        return Response(status_code=200, headers={"HX-Redirect": g["self_url"]})
    return render(request, "partials/job.html", {"job": job, "done_url": g["self_url"]}, block="job")


@pages.get("/models/{model}/layers/{layer}/channels/{channel}/featvis", response_class=HTMLResponse)
async def featvis_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                       objective: Kind = "channel", steps: Annotated[int | None, Query(ge=1, le=2048)] = None,
                       seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> HTMLResponse:
    svc = service(request)
    lm, obj = _objective(engine, model, layer, channel, objective, None, None)
    s = svc.settings_for(lm, steps=steps, seed=seed)
    hit = svc.cached(lm, obj, s)
    job = None if hit is not None else svc.start(lm, obj, s)
    qs = {k: v for k, v in request.query_params.items() if k != "lang"}
    return render(request, "featvis.html", {
        "model": lm, "obj": obj, "settings": s, "meta": hit[1] if hit else None, "job": job,
        "objectives": OBJECTIVES, "layer": layer, "channel": channel,
        "image_url": url_with(request, f"/api/models/{lm.name}/layers/{layer}/channels/{channel}/featvis",
                              **qs, format="png"),
        "self_url": url_with(request, request.url.path, **qs)}, block="featvis")


@pages.get("/jobs/{job_id}/panel", response_class=HTMLResponse)
async def job_panel(request: Request, job_id: Annotated[str, Path(max_length=64)],
                    done_url: Annotated[str, Query(max_length=500, pattern=r"^/[^/\\].*$|^/$")] = "/") -> Response:
    job = service(request).jobs.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    embedded = False
    if job.status == "done" and request.headers.get("HX-Request") == "true":
        # On the job's own page, reload it (as without JS). Embedded in another page (a channel's
        # view under a photo's analysis), the result takes the job's place there: navigating away
        # would lose what the user is looking at.
        here = request.headers.get("HX-Current-URL")
        if here is None or urlsplit(here).path == urlsplit(done_url).path:
            return Response(status_code=200, headers={"HX-Redirect": done_url})
        embedded = True
    return render(request, "partials/job.html", {"job": job, "done_url": done_url, "embedded": embedded}, block="job")


@pages.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def cancel_page(request: Request, job_id: Annotated[str, Path(max_length=64)],
                      back: Annotated[str, Query(max_length=500, pattern=r"^/[^/\\].*$|^/$")] = "/") -> Response:
    if service(request).jobs.cancel(job_id) is None:
        raise JobNotFound(job_id)
    if request.headers.get("HX-Request") == "true":
        job = service(request).jobs.get(job_id)
        return render(request, "partials/job.html", {"job": job, "done_url": back}, block="job")
    return RedirectResponse(back, status_code=303)


@pages.get("/images/{image_id}/attribution", response_class=HTMLResponse)
async def attribution_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                           model: Annotated[str | None, Query(max_length=64)] = None, method: Method = "gradcam",
                           target: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> HTMLResponse:
    rec, lm, amap = await _attribution(request, engine, image_id, model, method, target, None, 8 if lm_crop(engine, model) <= 64
                                       else 32, 4 if lm_crop(engine, model) <= 64 else 16, 0.0, 16, 0.15)
    v = amap.values
    return render(request, "attribution.html", {
        "rec": rec, "model": lm, "method": method, "methods": ("saliency", "smoothgrad", "gradcam", "occlusion"),
        "target": amap.target, "label": lm.spec.categories[amap.target], "categories": lm.spec.categories,
        "lo": f"{float(v.min()):.3g}", "hi": f"{float(v.max()):.3g}", "gradcam_layer": last_spatial_conv(lm),
        "png_url": f"/api/images/{rec.id}/attribution?model={lm.name}&method={method}&target={amap.target}"
                   f"&format=png" + ("" if lm.spec.preprocess.crop <= 64 else "&window=32&stride=16")},
        block="attribution")


def lm_crop(engine: Engine, model: str | None) -> int:
    return pick_model(engine, model).spec.preprocess.crop

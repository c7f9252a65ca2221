"""Max-activating examples: JSON + PNG faces under /api, HTML pages and the htmx partial.

JSON
  GET    /api/models/{m}/layers/{l}/channels/{c}/examples?mode=crop|image&k=9   the examples
  GET    /api/models/{m}/layers/{l}/channels/{c}/examples/{rank}.png?mode=       one crop (PNG)
  GET    /api/indexes                     built indexes, recent builds, data sets that can be indexed
  POST   /api/indexes                     start a build -> 202 + job
  GET    /api/indexes/{job}               progress of a build
  DELETE /api/indexes/{job}               cancel a build
HTML
  GET  /models/{m}/layers/{l}/channels/{c}/examples   the partial shown under a channel (htmx) or a page
  GET  /models/{m}/layers/{l}/channels/{c}            permalink of one channel
  GET  /models/{m}/layers/{l}/examples                the top example of every channel of a layer
  GET  /indexes, POST /indexes, GET /indexes/{job}    start a build and watch it (htmx polling, 1 s)

Every examples query takes optional ``dataset`` (a data set name, ``default``: the configured one),
``split`` and ``limit`` to pick among several indexes of the same model.
"""

from __future__ import annotations

import shlex
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from app import i18n
from app.core.examples import Example, ExamplesIndex
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.indexing import (
    GALLERY,
    BusyError,
    ExamplesService,
    IndexBuildingError,
    IndexMissingError,
    Job,
    Manifest,
    describe_missing,
    get_service,
)
from app.routes.api import ERRORS, PNG, Problem
from app.services import BadParameterError, Engine
from app.web import render, url_with

api = APIRouter(prefix="/api", tags=["examples"])
pages = APIRouter(include_in_schema=False)

ModelP = Annotated[str, Path(max_length=64, description="model name")]
LayerP = Annotated[str, Path(max_length=200, description="layer (named_modules path)")]
ChannelP = Annotated[int, Path(ge=0, le=100_000, description="channel (or unit of a vector layer)")]
ModeQ = Annotated[Literal["crop", "image"], Query(description="crop: receptive field around the maximum; "
                                                              "image: whole images ranked by mean activation")]
DatasetQ = Annotated[str | None, Query(max_length=200, description="data set name of the index ('default': the "
                                                                   "configured data set); default: the best one")]
SplitQ = Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_-]*$")]
LimitQ = Annotated[int | None, Query(ge=1, le=10_000_000)]

i18n.register({
    "ex.title": ("Images that excite {layer}, channel {c} most", "Imágenes que más excitan {layer}, canal {c}"),
    "ex.heading": ("Max-activating examples", "Ejemplos de máxima activación"),
    "ex.mode.crop": ("Receptive-field crops", "Recortes del campo receptivo"),
    "ex.mode.image": ("Whole images (mean activation)", "Imágenes completas (activación media)"),
    "ex.help.crop": ("Each crop is the part of the network input that the channel's strongest position sees "
                     "(its receptive field), enlarged. A dashed red edge marks where the field runs off the image.",
                     "Cada recorte es la parte de la entrada de la red que ve la posición más fuerte del canal "
                     "(su campo receptivo), ampliada. Un borde rojo discontinuo marca dónde el campo sale de la imagen."),
    "ex.help.image": ("The images with the highest mean activation of this channel over all positions.",
                      "Las imágenes con la mayor activación media de este canal sobre todas las posiciones."),
    "ex.help.vector": ("This layer is a vector: each unit sees the whole image.",
                       "Esta capa es un vector: cada unidad ve la imagen completa."),
    "ex.value": ("activation {v}", "activación {v}"),
    "ex.true": ("true", "real"),
    "ex.pred": ("predicted", "predicha"),
    "ex.off": ("field runs off: {sides}", "el campo sale por: {sides}"),
    "ex.source": ("Over {n} images of {src}", "Sobre {n} imágenes de {src}"),
    "ex.upscaled": ("The data set's images are smaller than {size}×{size} (e.g. CIFAR-10): the model's "
                    "preprocessing upscaled them, so they look blurry.",
                    "Las imágenes del conjunto de datos son menores que {size}×{size} (p. ej. CIFAR-10): el "
                    "preprocesado del modelo las amplió, por eso se ven borrosas."),
    "ex.missing": ("No examples index for this model yet.", "Todavía no hay índice de ejemplos para este modelo."),
    "ex.missing_cli": ("Build it on the command line:", "Constrúyelo en la línea de órdenes:"),
    "ex.build_here": ("Build it now", "Construirlo ahora"),
    "ex.building": ("The index is being built: {done} of {total} images.",
                    "Se está construyendo el índice: {done} de {total} imágenes."),
    "ex.permalink": ("Permalink of this channel", "Enlace permanente de este canal"),
    "ex.overview": ("Top example of every channel of {layer}", "Mejor ejemplo de cada canal de {layer}"),
    "ex.json": ("JSON", "JSON"),
    "ex.prev": ("Previous channel", "Canal anterior"),
    "ex.next": ("Next channel", "Canal siguiente"),
    "ex.layer_info": ("{type}, output {shape}; receptive field {fh}×{fw} pixels",
                      "{type}, salida {shape}; campo receptivo de {fh}×{fw} píxeles"),
    "ex.channel": ("Channel {c}", "Canal {c}"),
    "ex.unit": ("Unit {c}", "Unidad {c}"),
    "ex.alt": ("Example {r}: {label}, activation {v}", "Ejemplo {r}: {label}, activación {v}"),
    "ex.none": ("No image activates this channel in the index.", "Ninguna imagen del índice activa este canal."),
    "ix.title": ("Examples indexes", "Índices de ejemplos"),
    # the data sets a build may use (app.indexing.Indexing.datasets), by name
    "ds.default": ("the server's data set {file}", "el conjunto de datos del servidor, {file}"),
    "ds.gallery": ("the photos uploaded to this server (refreshed as uploads arrive)",
                   "las fotos subidas a este servidor (se actualiza al llegar otras)"),
    "ds.cifar10": ("CIFAR-10 through torchvision's download (needs internet the first time)",
                   "CIFAR-10 descargado por torchvision (necesita internet la primera vez)"),
    "ex.no_js": ("(JavaScript is off: use the links on the model page)",
                 "(JavaScript está desactivado: usa los enlaces de la página del modelo)"),
    "ix.lead": ("An index stores, for every layer and channel of a model, the data set images that excite it "
                "most. Building one runs the whole data set through the model once.",
                "Un índice guarda, para cada capa y canal de un modelo, las imágenes del conjunto de datos que "
                "más lo excitan. Construirlo pasa todo el conjunto de datos por el modelo una vez."),
    "ix.model": ("Model", "Modelo"),
    "ix.dataset": ("Data set", "Conjunto de datos"),
    "ix.split": ("Split", "Partición"),
    "ix.limit": ("Only the first N images (empty: all)", "Solo las primeras N imágenes (vacío: todas)"),
    "ix.start": ("Start the build", "Empezar la construcción"),
    "ix.built": ("Built indexes", "Índices construidos"),
    "ix.none": ("No index has been built yet.", "Todavía no se ha construido ningún índice."),
    "ix.jobs": ("Builds", "Construcciones"),
    "ix.upscale_note": ("The ImageNet model can index any folder: small images such as CIFAR-10 are upscaled by "
                        "its preprocessing (to 224×224), so its examples look blurry.",
                        "El modelo de ImageNet puede indexar cualquier carpeta: las imágenes pequeñas como CIFAR-10 "
                        "se amplían con su preprocesado (a 224×224), así que sus ejemplos se ven borrosos."),
    "ix.cli": ("Or on the command line:", "O en la línea de órdenes:"),
    "ix.images": ("images", "imágenes"),
    "ix.open": ("Open", "Abrir"),
    "job.title": ("Building the examples index", "Construyendo el índice de ejemplos"),
    "job.state.queued": ("waiting", "en espera"),
    "job.state.running": ("running", "en marcha"),
    "job.state.done": ("done", "terminado"),
    "job.state.failed": ("failed", "falló"),
    "job.state.cancelled": ("cancelled", "cancelado"),
    "job.progress": ("{done} of {total} images", "{done} de {total} imágenes"),
    "job.rate": ("{rate} images/s, about {eta} left", "{rate} imágenes/s, quedan unos {eta}"),
    "job.view": ("See the examples", "Ver los ejemplos"),
    "job.resumed": ("{n} were already indexed (checkpoint or earlier index)",
                    "{n} ya estaban indexadas (punto de control o índice anterior)"),
    "job.cancel": ("Cancel", "Cancelar"),
})


# --------------------------------------------------------------------------- JSON shapes


class ExampleOut(BaseModel):
    rank: int = Field(description="0 = strongest")
    value: float = Field(description="activation: the channel's maximum (crop) or mean (image)")
    index: int = Field(description="index of the image in the data set (sorted by class, then file name)")
    source: str = Field(description="data set name and the image's path inside it (gallery: the image id)")
    ref: str
    label: int | None = Field(description="true class index (null when unknown, e.g. gallery photos)")
    label_name: str | None
    predicted: int
    predicted_name: str | None
    box: list[int] = Field(description="x0, y0, x1, y1 (half-open) in network-input pixels: the pixels the unit "
                                       "depends on, clipped to the image")
    field: list[int] = Field(description="x0, y0, x1, y1 of the receptive field, may extend beyond the image")
    off_image: list[str] = Field(description="sides where the field runs off the image")
    url: str = Field(description="PNG of the crop (mode crop) or of the whole network input (mode image)")


class IndexOut(BaseModel):
    key: str
    model: str
    weights_sha256: str
    dataset: str
    kind: str
    split: str
    limit: int | None
    images: int
    k: int
    created: float
    seconds: float


class ExamplesOut(BaseModel):
    model: str
    layer: str
    channel: int
    mode: str
    kind: str = Field(description="map (C, H, W) or vector (F,)")
    input_size: list[int]
    index: IndexOut
    examples: list[ExampleOut]


class JobOut(BaseModel):
    id: str
    model: str
    dataset: str
    split: str
    limit: int | None
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int
    total: int
    percent: float
    images_per_s: float
    eta_s: float | None
    error: str | None
    url: str


class BuildIn(BaseModel):
    model: str = Field(max_length=64)
    dataset: str = Field("default", max_length=64, description="'default' (the configured data set), 'gallery' or "
                                                               "'cifar10'")
    split: str = Field("test", max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    limit: int | None = Field(None, ge=1, le=10_000_000)
    k: int = Field(9, ge=1, le=64)
    workers: int = Field(0, ge=0, le=4, description="DataLoader worker processes")


class DatasetOut(BaseModel):
    name: str
    description: str


class IndexesOut(BaseModel):
    indexes: list[IndexOut]
    jobs: list[JobOut]
    datasets: list[DatasetOut]


class MissingProblem(Problem):
    cli: str | None = None
    post: dict[str, object] | None = None


class BuildingProblem(Problem):
    job: JobOut | None = None


# --------------------------------------------------------------------------- helpers


def service(request: Request, engine: Engine) -> ExamplesService:
    return get_service(request.app.state, engine)


def job_out(j: Job) -> JobOut:
    return JobOut(id=j.id, model=j.model, dataset=j.dataset if j.dataset in (GALLERY, "cifar10") else
                  j.dataset.replace("\\", "/").rsplit("/", 1)[-1], split=j.split, limit=j.limit,
                  state=j.state, done=j.done, total=j.total, percent=round(j.percent, 2),  # type: ignore[arg-type]
                  images_per_s=round(j.rate, 1), eta_s=None if j.eta_s is None else round(j.eta_s, 1),
                  error=j.error, url=f"/api/indexes/{j.id}")


def index_out(m: Manifest) -> IndexOut:
    return IndexOut(key=m.key, model=m.model, weights_sha256=m.weights_sha256, dataset=m.dataset,
                    kind=str(m.source.get("kind")), split=m.split, limit=m.limit, images=m.count, k=m.k,
                    created=m.created, seconds=round(m.seconds, 2))


def _check_unit(lm: LoadedModel, layer: str, channel: int) -> None:
    """404 for a channel the layer does not have (the message gives the valid range)."""
    from fastapi import HTTPException

    info = lm.layer(layer)
    if len(info.output_shape) not in (1, 3):
        raise BadParameterError(f"layer {layer!r} has output {info.output_shape}; examples exist for (C, H, W) "
                                "and (F,) layers")
    n = info.output_shape[0]
    if not 0 <= channel < n:
        what = "unit" if len(info.output_shape) == 1 else "channel"
        raise HTTPException(404, f"unknown {what} {channel} of layer {layer!r}: it has {what}s 0 to {n - 1}")


def _q(dataset: str | None, split: str | None, limit: int | None, **more: object) -> dict[str, object]:
    return {k: v for k, v in {"dataset": dataset, "split": split, "limit": limit, **more}.items() if v is not None}


def png_url(m: str, layer: str, c: int, rank: int, mode: str, man: Manifest) -> str:
    from urllib.parse import urlencode

    q = {"mode": mode, "dataset": man.dataset, "split": man.split or None, "limit": man.limit}
    return (f"/api/models/{m}/layers/{layer}/channels/{c}/examples/{rank}.png?"
            + urlencode({k: v for k, v in q.items() if v is not None}))


def example_out(e: Example, m: str, layer: str, c: int, mode: str, man: Manifest) -> ExampleOut:
    return ExampleOut(rank=e.rank, value=e.value, index=e.index, source=f"{man.dataset}:{e.ref}", ref=e.ref,
                      label=e.label if e.label >= 0 else None, label_name=e.label_name, predicted=e.pred,
                      predicted_name=e.pred_name, box=list(e.box), field=list(e.field), off_image=list(e.off_image),
                      url=png_url(m, layer, c, e.rank, mode, man))


def _missing_json(model: str) -> JSONResponse:
    body = MissingProblem(detail=describe_missing(model), code="index_missing",
                          cli=f"convscope index --model {shlex.quote(model)} --data PATH --split test",
                          post={"model": model, "dataset": "default", "split": "test"})
    return JSONResponse(body.model_dump(), status_code=404)


def _building_json(e: IndexBuildingError) -> JSONResponse:
    body = BuildingProblem(detail=str(e), code="index_building", job=job_out(e.job))
    return JSONResponse(body.model_dump(), status_code=409, headers={"Retry-After": "2"})


# --------------------------------------------------------------------------- JSON routes


@api.get("/models/{model}/layers/{layer}/channels/{channel}/examples", response_model=ExamplesOut,
         responses={**ERRORS, 404: {"model": MissingProblem, "description": "unknown model/layer, or no index yet "
                                                                             "(the message says how to build it)"},
                    409: {"model": BuildingProblem, "description": "the index is being built"}},
         summary="The images (or receptive-field crops) that excite one channel most")
async def get_examples(request: Request, engine: EngineDep, model: ModelP, layer: LayerP, channel: ChannelP,
                       mode: ModeQ = "crop", k: Annotated[int, Query(ge=1, le=64)] = 9,
                       dataset: DatasetQ = None, split: SplitQ = None, limit: LimitQ = None) -> Response:
    lm = engine.model(model)
    _check_unit(lm, layer, channel)
    svc = service(request, engine)
    try:
        idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
    except IndexBuildingError as e:
        return _building_json(e)
    except IndexMissingError:
        return _missing_json(lm.name)
    if not idx.has_layer(layer):
        return JSONResponse({"detail": f"the index has no layer {layer!r}; rebuild it", "code": "index_missing"},
                            status_code=404)
    exs = idx.examples(layer, channel, mode, k)
    body = ExamplesOut(model=lm.name, layer=layer, channel=channel, mode=mode, kind=idx.layer(layer).kind,
                       input_size=list(lm.spec.preprocess.input_size), index=index_out(man),
                       examples=[example_out(e, lm.name, layer, channel, mode, man) for e in exs])
    return JSONResponse(body.model_dump())


@api.get("/models/{model}/layers/{layer}/channels/{channel}/examples/{rank}.png", response_class=Response,
         responses={**ERRORS, 200: PNG, 409: {"model": BuildingProblem}},
         summary="One example as PNG: the receptive-field crop (mode crop) or the network input (mode image)")
async def get_example_png(request: Request, engine: EngineDep, model: ModelP, layer: LayerP, channel: ChannelP,
                          rank: Annotated[int, Path(ge=0, le=63)], mode: ModeQ = "crop", dataset: DatasetQ = None,
                          split: SplitQ = None, limit: LimitQ = None) -> Response:
    lm = engine.model(model)
    _check_unit(lm, layer, channel)
    svc = service(request, engine)
    try:
        idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
        data = await engine.gate.run(svc.crop_png, lm, man, idx, layer, channel, mode, rank)
    except IndexBuildingError as e:
        return _building_json(e)
    except IndexMissingError as e:
        return JSONResponse({"detail": str(e), "code": "index_missing"}, status_code=404)
    return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


@api.get("/indexes", response_model=IndexesOut, responses=ERRORS,
         summary="Built indexes, recent builds and the data sets to index")
async def list_indexes(request: Request, engine: EngineDep,
                       model: Annotated[str | None, Query(max_length=64)] = None) -> IndexesOut:
    svc = service(request, engine)
    mans = svc.istore.manifests(model)
    return IndexesOut(indexes=[index_out(m) for m in mans],
                      jobs=[job_out(j) for j in reversed(svc.jobs.jobs.values())],
                      datasets=[DatasetOut(name=d.name, description=d.description) for d in svc.datasets()])


@api.post("/indexes", status_code=202, response_model=JobOut,
          responses={**ERRORS, 409: {"model": BuildingProblem, "description": "another build is running"}},
          summary="Start building an examples index (one build at a time); follow it at the returned url")
async def post_index(request: Request, engine: EngineDep, body: Annotated[BuildIn, Body()]) -> JSONResponse:
    lm = engine.model(body.model)
    svc = service(request, engine)
    try:
        job = svc.start(lm, body.dataset, body.split, body.limit, k=body.k, workers=body.workers)
    except BusyError as e:
        return JSONResponse(BuildingProblem(detail=str(e), code="busy", job=job_out(e.job)).model_dump(),
                            status_code=409, headers={"Retry-After": "5"})
    return JSONResponse(job_out(job).model_dump(), status_code=202, headers={"Location": f"/api/indexes/{job.id}"})


def _job(svc: ExamplesService, job_id: str) -> Job:
    job = svc.jobs.get(job_id)
    if job is None:
        from fastapi import HTTPException

        raise HTTPException(404, f"unknown build {job_id!r}; GET /api/indexes lists the recent ones")
    return job


@api.get("/indexes/{job_id}", response_model=JobOut, responses={**ERRORS, 404: {"model": Problem}},
         summary="Progress of a build")
async def get_job(request: Request, engine: EngineDep, job_id: Annotated[str, Path(max_length=64)]) -> JobOut:
    return job_out(_job(service(request, engine), job_id))


@api.delete("/indexes/{job_id}", status_code=202, response_model=JobOut,
            responses={**ERRORS, 404: {"model": Problem}},
            summary="Cancel a build (its checkpoint is kept: a new build resumes from it)")
async def cancel_job(request: Request, engine: EngineDep, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    svc = service(request, engine)
    _job(svc, job_id)
    job = svc.jobs.cancel(job_id)
    return JSONResponse(job_out(job).model_dump(), status_code=202)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- HTML


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _examples_ctx(request: Request, engine: Engine, lm: LoadedModel, layer: str, channel: int, mode: str,
                  dataset: str | None, split: str | None, limit: int | None) -> dict[str, object]:
    """Everything the examples partial needs; state missing / building / ready."""
    info = lm.layer(layer)
    svc = service(request, engine)
    ctx: dict[str, object] = {"model": lm, "layer": layer, "c": channel, "mode": mode, "info": info,
                              "q": _q(dataset, split, limit), "fmt": _fmt,
                              "cli": f"convscope index --model {shlex.quote(lm.name)} --data PATH --split test",
                              "datasets": svc.datasets()}
    try:
        idx, man = svc.lookup(lm, dataset, split, limit)
    except IndexBuildingError as e:
        ctx.update(state="building", job=e.job)
        return ctx
    except IndexMissingError:
        ctx.update(state="missing")
        return ctx
    if not idx.has_layer(layer):
        ctx.update(state="missing")
        return ctx
    exs = idx.examples(layer, channel, mode)
    ctx.update(state="ready", man=man, kind=idx.layer(layer).kind, upscaled=_upscaled(lm, man),
               examples=[{"e": e, "src": png_url(lm.name, layer, channel, e.rank, mode, man), "value": _fmt(e.value)}
                         for e in exs])
    return ctx


def _upscaled(lm: LoadedModel, man: Manifest) -> bool:
    """Whether the data set's images are smaller than the model's input (upscaled by its preprocessing)."""
    return bool(man.upscaled)


@pages.get("/models/{model}/layers/{layer}/channels/{channel}/examples", response_class=HTMLResponse)
async def examples_partial(request: Request, engine: EngineDep, model: ModelP, layer: LayerP, channel: ChannelP,
                           mode: ModeQ = "crop", dataset: DatasetQ = None, split: SplitQ = None,
                           limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    _check_unit(lm, layer, channel)
    ctx = await engine.gate.run(_examples_ctx, request, engine, lm, layer, channel, mode, dataset, split, limit)
    return render(request, "partials/examples.html", {"x": ctx}, block="examples")


@pages.get("/models/{model}/layers/{layer}/channels/{channel}", response_class=HTMLResponse)
async def channel_permalink(request: Request, engine: EngineDep, model: ModelP, layer: LayerP, channel: ChannelP,
                            dataset: DatasetQ = None, split: SplitQ = None, limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    _check_unit(lm, layer, channel)
    info = lm.layer(layer)
    crop = await engine.gate.run(_examples_ctx, request, engine, lm, layer, channel, "crop", dataset, split, limit)
    image = await engine.gate.run(_examples_ctx, request, engine, lm, layer, channel, "image", dataset, split, limit)
    crop["fixed"] = image["fixed"] = True
    fh, fw = _field_size(request, engine, lm, layer)
    return render(request, "examples/channel.html", {
        "model": lm, "layer": layer, "c": channel, "info": info, "crop": crop, "image": image,
        "channels": info.output_shape[0], "q": _q(dataset, split, limit), "fh": fh, "fw": fw}, block="permalink")


def _field_size(request: Request, engine: Engine, lm: LoadedModel, layer: str) -> tuple[int, int]:
    """Height and width of the layer's receptive field (of a central position), cached per model."""
    from app.core.receptive import receptive_fields

    cache = request.app.state.__dict__.setdefault("examples_fields", {})
    key = (lm.name, lm.weights_sha256)
    if key not in cache:
        cache[key] = receptive_fields(lm.private_copy(), lm.spec.preprocess.input_size)
    lf = cache[key].get(layer)
    if lf is None:
        return lm.spec.preprocess.crop, lm.spec.preprocess.crop
    yi, xi = lf.unit(0, (lf.y.n // 2) * lf.x.n + lf.x.n // 2) if lf.spatial else (0, 0)
    x0, y0, x1, y1 = lf.field(yi, xi)
    return y1 - y0, x1 - x0


@pages.get("/models/{model}/layers/{layer}/examples", response_class=HTMLResponse)
async def layer_overview(request: Request, engine: EngineDep, model: ModelP, layer: LayerP, mode: ModeQ = "crop",
                         dataset: DatasetQ = None, split: SplitQ = None, limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    info = lm.layer(layer)
    _check_unit(lm, layer, 0)
    svc = service(request, engine)
    ctx: dict[str, object] = {"model": lm, "layer": layer, "info": info, "mode": mode, "q": _q(dataset, split, limit),
                              "cli": f"convscope index --model {shlex.quote(lm.name)} --data PATH --split test",
                              "datasets": svc.datasets(), "fmt": _fmt,
                              "layers": [li for li in lm.layers if len(li.output_shape) in (1, 3)]}
    try:
        idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
    except IndexBuildingError as e:
        ctx.update(state="building", job=e.job)
    except IndexMissingError:
        ctx.update(state="missing")
    else:
        tiles = []
        if idx.has_layer(layer):
            for c in range(info.output_shape[0]):
                exs = idx.examples(layer, c, mode, 1)
                tiles.append({"c": c, "e": exs[0] if exs else None,
                              "src": png_url(lm.name, layer, c, 0, mode, man) if exs else None,
                              "value": _fmt(exs[0].value) if exs else ""})
        ctx.update(state="ready" if tiles else "missing", man=man, tiles=tiles, upscaled=_upscaled(lm, man))
    return render(request, "examples/layer.html", ctx, block="overview")


def _indexes_ctx(request: Request, engine: Engine, error: str | None = None) -> dict[str, object]:
    svc = service(request, engine)
    return {"models": list(engine.zoo.models.values()), "datasets": svc.datasets(),
            "manifests": svc.istore.manifests(), "jobs": list(reversed(svc.jobs.jobs.values())),
            "running": svc.jobs.running(), "error": error, "first_layer": _first_layer(engine)}


def _first_layer(engine: Engine) -> dict[str, str]:
    return {m.name: m.first_conv for m in engine.zoo.models.values()}


@pages.get("/indexes", response_class=HTMLResponse)
async def indexes_page(request: Request, engine: EngineDep) -> HTMLResponse:
    return render(request, "examples/indexes.html", _indexes_ctx(request, engine))


@pages.post("/indexes", response_class=HTMLResponse)
async def indexes_start(request: Request, engine: EngineDep, model: Annotated[str, Form(max_length=64)],
                        dataset: Annotated[str, Form(max_length=64)] = "default",
                        split: Annotated[str, Form(max_length=32, pattern=r"^[A-Za-z0-9_-]*$")] = "test",
                        limit: Annotated[str, Form(max_length=12)] = "") -> Response:
    lm = engine.model(model)
    lim = None
    if limit.strip():
        if not limit.strip().isdigit() or int(limit) < 1:
            raise BadParameterError("limit must be a positive whole number (or empty for all images)")
        lim = int(limit)
    svc = service(request, engine)
    try:
        job = svc.start(lm, dataset, split or "test", lim)
    except BusyError as e:
        return render(request, "examples/indexes.html", _indexes_ctx(request, engine, str(e)), status_code=409)
    target = url_with(request, f"/indexes/{job.id}")
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@pages.get("/indexes/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, engine: EngineDep, job_id: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    svc = service(request, engine)
    job = _job(svc, job_id)
    return render(request, "examples/job.html", {"job": job, "first_layer": _first_layer(engine),
                                                 "fmt_eta": _fmt_eta}, block="progress")


def _fmt_eta(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def include(app: object) -> None:
    """Add both routers to the app (called from app.routes_ext)."""
    app.include_router(api)  # type: ignore[attr-defined]
    app.include_router(pages)  # type: ignore[attr-defined]


__all__ = ["api", "pages", "include", "ExamplesIndex"]

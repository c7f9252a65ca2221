"""HTML faces: pages that work without JavaScript, with blocks that htmx loads as partials."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import torch
from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import i18n
from app.core import imaging
from app.core.inference import channel_stats, top_k
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.routes.api import model_detail, pick_model
from app.services import Engine, check_channel
from app.uploads import ensure_single_file, read_upload
from app.web import render, url_with

router = APIRouter(include_in_schema=False)

i18n.register({
    "home.title": ("Analyse a photo", "Analiza una foto"),
    "home.lead": ("Upload a photo and see what a trained convolutional network does with it: its prediction, "
                  "every layer's activations and the filters it learned.",
                  "Sube una foto y observa qué hace con ella una red convolucional entrenada: su predicción, "
                  "las activaciones de cada capa y los filtros que aprendió."),
    "home.file": ("Photo", "Foto"),
    "home.drop": ("Drop a photo here, or choose a file", "Suelta una foto aquí o elige un archivo"),
    "home.model": ("Model", "Modelo"),
    "home.submit": ("Analyse", "Analizar"),
    "home.limits": ("JPEG, PNG, WebP, BMP or GIF (first frame); at most {mb} MB and {side} pixels a side.",
                    "JPEG, PNG, WebP, BMP o GIF (primer fotograma); como máximo {mb} MB y {side} píxeles por lado."),
    "home.recent": ("Recent photos", "Fotos recientes"),
    "home.none": ("No photos yet.", "Todavía no hay fotos."),
    "img.title": ("What {model} sees", "Lo que ve {model}"),
    "img.input": ("Network input ({size}×{size})", "Entrada de la red ({size}×{size})"),
    "img.original": ("Your photo", "Tu foto"),
    "img.predictions": ("Top-5 predictions", "Las 5 predicciones principales"),
    "img.switch": ("Other model", "Otro modelo"),
    "img.show": ("Show", "Mostrar"),
    "img.layers": ("The network, layer by layer", "La red, capa a capa"),
    "img.total": ("Total parameters", "Parámetros en total"),
    "img.activations": ("Activations of every layer", "Activaciones de cada capa"),
    "img.activations_help": ("Open a layer to see one tile per channel. Each tile is scaled to its own minimum "
                             "and maximum (written under it); dark is low, yellow is high. Click a tile to enlarge it.",
                             "Abre una capa para ver un recuadro por canal. Cada recuadro usa su propio mínimo y "
                             "máximo (escritos debajo); oscuro es bajo, amarillo es alto. Pulsa un recuadro para ampliarlo."),
    "img.filters": ("Learned filters of the first layer", "Filtros aprendidos de la primera capa"),
    "layer.name": ("Layer", "Capa"),
    "layer.type": ("Type", "Tipo"),
    "layer.shape": ("Output shape", "Forma de salida"),
    "layer.params": ("Parameters", "Parámetros"),
    "layer.load": ("Open the activations of {layer}", "Abrir las activaciones de {layer}"),
    "layer.loading": ("Loading…", "Cargando…"),
    "layer.channel": ("Channel {c}", "Canal {c}"),
    "layer.vector": ("A vector of {n} values (one cell each), scaled from {lo} to {hi}.",
                     "Un vector de {n} valores (una celda cada uno), escalado de {lo} a {hi}."),
    "layer.download": ("Download", "Descargar"),
    "chan.title": ("{layer}, channel {c}", "{layer}, canal {c}"),
    "chan.scale": ("Scale: {lo} (dark) to {hi} (yellow)", "Escala: {lo} (oscuro) a {hi} (amarillo)"),
    "chan.values": ("Values", "Valores"),
    "chan.mean": ("mean {mean}", "media {mean}"),
    # our models' titles where they have words (app.core.zoo names them in English)
    "model.title.lenet": ("LeNet (the lecture network) · CIFAR-10", "LeNet (la red de la clase) · CIFAR-10"),
    "chan.examples": ("Data set images that excite channel {c} most", "Imágenes del conjunto que más excitan el canal {c}"),
    "chan.too_big": ("{h}×{w} values: download them as .npy or JSON.", "{h}×{w} valores: descárgalos como .npy o JSON."),
    "filt.rgb": ("Colour patches", "Parches de color"),
    "filt.channels": ("Per input channel (R, G, B rows)", "Por canal de entrada (filas R, G, B)"),
    "filt.help": ("Each filter is scaled on its own, grey is zero: the colour and orientation it responds to show directly.",
                  "Cada filtro tiene su propia escala y el gris es cero: se ven el color y la orientación a los que responde."),
    "filt.help_channels": ("One row per filter, one tile per input channel; mid-green is zero.",
                           "Una fila por filtro y un recuadro por canal de entrada; el verde medio es cero."),
    "models.title": ("Served models", "Modelos disponibles"),
    "models.accuracy": ("Test accuracy", "Exactitud en test"),
    "models.classes": ("Classes", "Clases"),
    "models.source": ("Source", "Origen"),
    "model.card": ("Model card", "Ficha del modelo"),
})


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _models(engine: Engine) -> list[LoadedModel]:
    return list(engine.zoo.models.values())


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, engine: EngineDep, model: Annotated[str | None, Query(max_length=64)] = None,
               error: str | None = None) -> HTMLResponse:
    lm = pick_model(engine, model)
    s = engine.settings
    return render(request, "index.html", {
        "models": _models(engine), "model": lm, "recent": engine.store.list_images(12),
        "max_mb": s.max_upload_bytes // (1024 * 1024), "max_side": s.max_side, "error": error})


@router.post("/images", response_class=HTMLResponse)
async def upload_page(request: Request, engine: EngineDep, file: Annotated[UploadFile, File()],
                      model: Annotated[str, Form(max_length=64)] = "") -> Response:
    lm = pick_model(engine, model or None)
    await ensure_single_file(request)
    data = await read_upload(file, engine.settings.max_upload_bytes)
    up = await engine.upload_gate.run(engine.ingest, data, file.filename or "upload")
    if up.created:
        from app.indexing import notify_upload  # gallery indexes catch up in the background

        notify_upload(request.app.state, engine)
    target = url_with(request, f"/images/{up.record.id}", model=lm.name)
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/images/{image_id}", response_class=HTMLResponse)
async def image_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                     model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    probs = await engine.predictions(lm, rec)
    detail = model_detail(lm)
    return render(request, "image.html", {
        "rec": rec, "model": lm, "models": _models(engine), "detail": detail,
        "predictions": top_k(probs, lm.spec.categories, 5), "total": lm.total_parameters,
        "input_size": lm.spec.preprocess.crop})


def _layer_context(lm: LoadedModel, act: torch.Tensor, layer: str) -> dict[str, object]:
    info = lm.layer(layer)
    ctx: dict[str, object] = {"info": info, "layer": layer}
    if act.dim() == 3:
        lo, hi = imaging.channel_ranges(act)
        tiles = []
        idx = imaging.channel_indices(act)
        for c in range(act.shape[0]):
            png = imaging.png_bytes(imaging.mosaic(idx[c:c + 1], cols=1, pad=0))
            tiles.append({"c": c, "src": _data_uri(png), "lo": _fmt(float(lo[c])), "hi": _fmt(float(hi[c]))})
        ctx.update(kind="maps", tiles=tiles, h=act.shape[1], w=act.shape[2])
    else:
        v = act.flatten()
        ctx.update(kind="vector", n=v.numel(), lo=_fmt(float(v.min())), hi=_fmt(float(v.max())),
                   src=_data_uri(imaging.png_bytes(imaging.vector_image(v))))
    return ctx


@router.get("/images/{image_id}/layers/{layer}", response_class=HTMLResponse)
async def layer_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                     layer: Annotated[str, Path(max_length=200)],
                     model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    lm.layer(layer)
    a = await engine.analysis_async(lm, rec)
    ctx = await engine.gate.run(_layer_context, lm, a.activations[layer], layer)
    return render(request, "layer.html", {"rec": rec, "model": lm, **ctx}, block="layer")


@router.get("/images/{image_id}/layers/{layer}/channels/{channel}", response_class=HTMLResponse)
async def channel_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                       model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    info = lm.layer(layer)
    check_channel(channel, info.channels)
    a = await engine.analysis_async(lm, rec)
    act = a.activations[layer]
    m = act[channel] if act.dim() == 3 else act[channel:channel + 1][None]
    st = channel_stats(m[None])
    values = m.tolist() if m.numel() <= 32 * 32 else None
    return render(request, "channel.html", {
        "rec": rec, "model": lm, "info": info, "layer": layer, "c": channel,
        "src": _data_uri(await engine.gate.run(engine.activation_png, lm, rec, layer, channel, a)),
        "lo": _fmt(st.min[0]), "hi": _fmt(st.max[0]), "mean": _fmt(st.mean[0]), "values": values,
        "h": m.shape[0], "w": m.shape[1], "fmt": _fmt}, block="channel")


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, engine: EngineDep) -> HTMLResponse:
    return render(request, "models.html", {"models": _models(engine)})


@router.get("/models/{model}", response_class=HTMLResponse)
async def model_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    lm = engine.model(model)
    return render(request, "model.html", {"model": lm, "detail": model_detail(lm), "total": lm.total_parameters})


@router.get("/models/{model}/filters", response_class=HTMLResponse)
async def filters_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str | None, Query(max_length=200)] = None,
                       view: Literal["rgb", "channels"] = "rgb") -> HTMLResponse:
    lm = engine.model(model)
    w = engine.filters(lm, layer)
    png = await engine.gate.run(engine.filters_png, lm, layer, view)
    return render(request, "filters.html", {
        "model": lm, "layer": layer or lm.first_conv, "view": view, "src": _data_uri(png), "shape": list(w.shape),
        "lo": _fmt(float(w.min())), "hi": _fmt(float(w.max()))}, block="filters")


@router.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    """Browsers ask for it on documents without a <link rel=icon> (e.g. an opened PNG)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)

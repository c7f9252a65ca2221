"""Checkpoint timeline: scrub across a model's training snapshots.

GET /api/models/{model}/snapshots lists them; /models/{model}/timeline?image=&layer=&step= is the page
(a range input; htmx swaps the frame and pushes the URL, so every position is a permalink);
``snapshot=epoch-003`` may name the position instead of ``step``.
"""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app import i18n
from app.core.inference import top_k
from app.deps import EngineDep
from app.routes.api import ERRORS
from app.snapshots import normalize_snapshot, snapshot_zoo
from app.web import render

api = APIRouter(prefix="/api", tags=["snapshots"])
pages = APIRouter(include_in_schema=False)

i18n.register({
    "tl.title": ("Training timeline of {model}", "Evolución del entrenamiento de {model}"),
    "tl.lead": ("Move the slider to load the weights saved during training and watch the first-layer filters, "
                "the activations and the prediction change.",
                "Mueve el control para cargar los pesos guardados durante el entrenamiento y observa cómo cambian "
                "los filtros de la primera capa, las activaciones y la predicción."),
    "tl.slider": ("Training epoch", "Época de entrenamiento"),
    "tl.epoch": ("Epoch {e}", "Época {e}"),
    "tl.final": ("Final weights", "Pesos finales"),
    "tl.none": ("This model has no training snapshots.", "Este modelo no tiene instantáneas de entrenamiento."),
    "tl.filters": ("First-layer filters", "Filtros de la primera capa"),
    "tl.filters_alt": ("{n} learned filters of {layer} at {when}", "{n} filtros aprendidos de {layer} en {when}"),
    "tl.photo": ("Photo", "Foto"),
    "tl.nophoto": ("(none: only filters)", "(ninguna: solo filtros)"),
    "tl.layer": ("Layer", "Capa"),
    "tl.show": ("Show", "Mostrar"),
    "tl.activations": ("Activations of {layer}", "Activaciones de {layer}"),
    "tl.grid_alt": ("{n} channels of {layer} at {when}; strongest channels listed in the table below",
                    "{n} canales de {layer} en {when}; los canales más activos están en la tabla de abajo"),
    "tl.timeline": ("Training timeline", "Evolución del entrenamiento"),
})


@api.get("/models/{model}/snapshots", responses=ERRORS, summary="The training snapshots of a model (read-only variants)")
async def list_snapshots(engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> dict[str, object]:
    zoo = snapshot_zoo(engine)
    snaps = zoo.snapshots(model)
    return {"model": model.split("@")[0], "snapshots": [
        {"id": s.id, "epoch": s.epoch, "variant": s.variant, "bytes": s.bytes, "dtype": "float16 (served as float32)",
         "filters": f"/api/models/{s.variant}/filters?format=png"} for s in snaps]}


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pages.get("/models/{model}/timeline", response_class=HTMLResponse)
async def timeline_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                        image: Annotated[str | None, Query(max_length=64)] = None,
                        layer: Annotated[str | None, Query(max_length=200)] = None,
                        step: Annotated[int | None, Query(ge=0, le=10_000)] = None,
                        snapshot: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    zoo = snapshot_zoo(engine)
    base = zoo.get(model.split("@")[0])
    snaps = zoo.snapshots(base.name)
    stops = [s.id for s in snaps] + ["final"]
    if step is None:
        want = "final" if snapshot in (None, "", "final") else normalize_snapshot(snapshot)
        if want != "final":
            zoo.snapshot(base.name, want)  # 404 with the valid ones
        step = stops.index(want)
    step = min(step, len(stops) - 1)
    lm = zoo.variant(base.name, stops[step])
    when = _when(request, snaps, step)
    chosen = layer or lm.first_conv
    lm.layer(chosen)
    w = engine.filters(lm, None)
    ctx: dict[str, object] = {
        "base": base, "lm": lm, "stops": stops, "step": step, "snaps": snaps, "when": when, "layer": chosen,
        "filters_src": _uri(await engine.gate.run(engine.filters_png, lm, None, "rgb")), "n_filters": w.shape[0],
        "images": engine.store.list_images(30), "image": image, "rec": None}
    if image:
        rec = engine.image(image)
        an = await engine.analysis_async(lm, rec)
        act = an.activations[chosen]
        flat = act.detach().float().reshape(act.shape[0], -1)
        mx = flat.amax(1)
        order = mx.argsort(descending=True)[:6]
        ctx.update(rec=rec, predictions=top_k(an.probabilities, lm.spec.categories, 5),
                   grid_src=_uri(await engine.gate.run(engine.activation_png, lm, rec, chosen)),
                   channels=act.shape[0],
                   top=[{"c": int(c), "max": f"{float(mx[c]):.3g}", "mean": f"{float(flat[c].mean()):.3g}"} for c in order])
    return render(request, "timeline.html", ctx, block="frame")


def _when(request: Request, snaps: list[object], step: int) -> str:
    from app.web import lang_of

    _ = i18n.translator(lang_of(request))
    if step >= len(snaps):
        return _("tl.final")
    return _("tl.epoch", e=snaps[step].epoch)  # type: ignore[attr-defined]

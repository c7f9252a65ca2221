"""Compare two analyses side by side: /compare (HTML), /compare/layer (one layer's grids), /api/compare (JSON).

    ?a=<id>&b=<id>&model=m                         two photos, one model
    ?image=<id>&model_a=m1&model_b=m2              one photo, two models
    ?image=<id>&model=m&checkpoint_a=epoch-001&checkpoint_b=final   one photo, two checkpoints
``snapshot=`` sets both checkpoints at once; ``model=name@epoch-003`` also works.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import i18n
from app.blocking import run_blocking
from app.compare import layer_pair, layer_rows, pair_layers, shared_grids
from app.core.inference import Analysis, top_k
from app.core.probe import UnknownLayerError
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.routes.api import ERRORS, fast_json, pick_model
from app.services import BadParameterError, Engine
from app.snapshots import snapshot_zoo
from app.store import ImageRecord
from app.web import lang_of, render, render_error, url_with

api = APIRouter(prefix="/api", tags=["compare"])
pages = APIRouter(include_in_schema=False)

i18n.register({
    "cmp.title": ("Compare", "Comparar"),
    "cmp.lead": ("Two analyses side by side, layer by layer. For layers of the same shape, |a−b| shows where "
                 "they differ (dark = equal, yellow = the channel's largest difference).",
                 "Dos análisis lado a lado, capa a capa. En las capas de igual forma, |a−b| muestra dónde "
                 "difieren (oscuro = igual, amarillo = la mayor diferencia del canal)."),
    "cmp.side_a": ("A", "A"),
    "cmp.side_b": ("B", "B"),
    "cmp.diff": ("|A − B|", "|A − B|"),
    "cmp.layer": ("Layer", "Capa"),
    "cmp.shape": ("Shape", "Forma"),
    "cmp.mean_abs": ("Mean |A−B|", "Media |A−B|"),
    "cmp.relative": ("Relative", "Relativa"),
    "cmp.cosine": ("Cosine similarity", "Similitud coseno"),
    "cmp.open": ("Show {layer}", "Ver {layer}"),
    "cmp.paired_by_position": ("The two models have different layers: they are paired by position.",
                               "Los dos modelos tienen capas distintas: se emparejan por posición."),
    "cmp.shared_scale": ("A and B use one scale per channel, shared by both.",
                         "A y B usan una escala por canal, común a ambos."),
    "cmp.grid_alt": ("{side}: {layer}, {n} channels", "{side}: {layer}, {n} canales"),
    "cmp.most_changed": ("Channels that changed most", "Canales que más cambian"),
    "cmp.channel": ("Channel", "Canal"),
    "cmp.form": ("Choose what to compare", "Elige qué comparar"),
    "cmp.image_a": ("Photo A", "Foto A"),
    "cmp.image_b": ("Photo B", "Foto B"),
    "cmp.model_a": ("Model A", "Modelo A"),
    "cmp.model_b": ("Model B", "Modelo B"),
    "cmp.ckpt_a": ("Checkpoint A", "Punto de control A"),
    "cmp.ckpt_b": ("Checkpoint B", "Punto de control B"),
    "cmp.go": ("Compare", "Comparar"),
    "cmp.final": ("final", "final"),
    "cmp.no_diff": ("different shapes: no difference", "formas distintas: sin diferencia"),
    "cmp.no_photos": ("There is nothing to compare yet: upload a photo on the start page, then come back.",
                      "Aún no hay nada que comparar: sube una foto en la página de inicio y vuelve."),
})

Id = Annotated[str | None, Query(max_length=64)]
Name = Annotated[str | None, Query(max_length=64)]
Ckpt = Annotated[str | None, Query(max_length=32)]


@dataclass
class Sides:
    rec_a: ImageRecord
    rec_b: ImageRecord
    lm_a: LoadedModel
    lm_b: LoadedModel
    query: dict[str, str]


def sides(engine: EngineDep, a: Id = None, b: Id = None, image: Id = None, model: Name = None,
          model_a: Name = None, model_b: Name = None, checkpoint_a: Ckpt = None, checkpoint_b: Ckpt = None,
          snapshot: Ckpt = None) -> Sides:
    ia, ib = a or image, b or image
    if not ia or not ib:
        raise NoPhotosNamed("name two photos (a= and b=) or one (image=); GET /api/images lists them")
    zoo = snapshot_zoo(engine)
    ma = pick_model(engine, model_a or model).name
    mb = pick_model(engine, model_b or model).name
    lm_a = zoo.variant(ma, checkpoint_a or snapshot)
    lm_b = zoo.variant(mb, checkpoint_b or snapshot)
    q = {k: v for k, v in {"a": a, "b": b, "image": image, "model": model, "model_a": model_a, "model_b": model_b,
                           "checkpoint_a": checkpoint_a, "checkpoint_b": checkpoint_b, "snapshot": snapshot}.items()
         if v}
    return Sides(engine.image(ia), engine.image(ib), lm_a, lm_b, q)


class NoPhotosNamed(BadParameterError):
    pass


@functools.wraps(sides)
def sides_or_none(*args: Any, **kwargs: Any) -> Sides | None:
    """:func:`sides`, or None when no photo is named (the page then picks the latest uploads)."""
    try:
        return sides(*args, **kwargs)
    except NoPhotosNamed:
        return None


SidesDep = Annotated[Sides, Depends(sides)]
PageSidesDep = Annotated[Sides | None, Depends(sides_or_none)]
SIDE_CHOICES = ("model", "model_a", "model_b", "checkpoint_a", "checkpoint_b", "snapshot")


async def _analyses(engine: Engine, s: Sides) -> tuple[Analysis, Analysis]:
    return await engine.analysis_async(s.lm_a, s.rec_a), await engine.analysis_async(s.lm_b, s.rec_b)


def _side(s: Sides, which: str, an: Analysis, k: int = 5) -> dict[str, object]:
    rec, lm = (s.rec_a, s.lm_a) if which == "a" else (s.rec_b, s.lm_b)
    return {"image": rec.id, "model": lm.name, "title": lm.spec.title, "filename": rec.filename,
            "predictions": [vars(p) for p in top_k(an.probabilities, lm.spec.categories, k)]}


@api.get("/compare", responses=ERRORS, summary="Two analyses layer by layer, with per-layer difference statistics")
async def compare_api(engine: EngineDep, s: SidesDep) -> Response:
    an_a, an_b = await _analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    rows = await run_blocking(layer_rows, pairs, an_a, an_b)
    return fast_json({"a": _side(s, "a", an_a), "b": _side(s, "b", an_b), "paired_by": how, "layers": rows})


@pages.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, engine: EngineDep, s: PageSidesDep) -> Response:
    if s is None:  # no photo named: the two latest uploads (the latest twice if only one), else say what to do
        latest = engine.store.list_images(2)
        if not latest:
            return render_error(request, 409, i18n.translator(lang_of(request))("cmp.no_photos"))
        keep = {k: v for k, v in request.query_params.items() if k in SIDE_CHOICES}
        return RedirectResponse(url_with(request, "/compare", a=latest[0].id, b=latest[-1].id, **keep), status_code=303)
    an_a, an_b = await _analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    rows = await run_blocking(layer_rows, pairs, an_a, an_b)
    zoo = snapshot_zoo(engine)
    base_a, base_b = s.lm_a.name.split("@")[0], s.lm_b.name.split("@")[0]
    return render(request, "compare.html", {
        "s": s, "side_a": _side(s, "a", an_a), "side_b": _side(s, "b", an_b), "rows": rows, "paired_by": how,
        "q": s.query, "models": list(engine.zoo.models.values()), "images": engine.store.list_images(30),
        "snaps_a": zoo.snapshots(base_a), "snaps_b": zoo.snapshots(base_b), "base_a": base_a, "base_b": base_b,
        "fmt": lambda v: f"{v:.3g}"})


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pages.get("/compare/layer", response_class=HTMLResponse)
async def compare_layer(request: Request, engine: EngineDep, s: SidesDep,
                        index: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                        layer: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    an_a, an_b = await _analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    try:
        p = layer_pair(pairs, layer, index)
    except KeyError:
        raise UnknownLayerError(str(layer if layer is not None else index), [li.name for li in s.lm_a.layers]) from None
    ctx: dict[str, object] = {"p": p, "s": s, "q": s.query, "fmt": lambda v: f"{v:.3g}"}
    if p.same_shape:
        ga, gb, gd = await engine.gate.run(shared_grids, an_a.activations[p.a.name], an_b.activations[p.b.name])  # type: ignore[union-attr]
        from app.compare import diff_stats

        ctx.update(src_a=_uri(ga), src_b=_uri(gb), src_d=_uri(gd),
                   stats=diff_stats(an_a.activations[p.a.name], an_b.activations[p.b.name]))  # type: ignore[union-attr]
    else:
        ctx.update(src_a=_uri(await engine.gate.run(engine.activation_png, s.lm_a, s.rec_a, p.a.name)) if p.a else None,
                   src_b=_uri(await engine.gate.run(engine.activation_png, s.lm_b, s.rec_b, p.b.name)) if p.b else None,
                   src_d=None, stats=None)
    return render(request, "compare_layer.html", ctx, block="pair")

"""HTML face of comparing two analyses: /compare (the layer table) and /compare/layer (one layer's grids).

Both take the parameters of :func:`app.features.compare.api.sides`; /compare without a photo named
redirects to the two latest uploads.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import i18n
from app.core.imaging import png_data_uri
from app.core.probe import UnknownLayerError
from app.deps import EngineDep
from app.features.compare.api import NoPhotosNamed, SidesDep, sides
from app.features.compare.service import (
    Sides,
    analyses,
    diff_stats,
    layer_pair,
    layer_rows,
    pair_layers,
    shared_grids,
    side_summary,
)
from app.runtime.blocking import run_blocking
from app.web.templating import lang_of, render, render_error, url_with

router = APIRouter(include_in_schema=False)


@functools.wraps(sides)
def sides_or_none(*args: Any, **kwargs: Any) -> Sides | None:
    """:func:`sides`, or None when no photo is named (the page then picks the latest uploads)."""
    try:
        return sides(*args, **kwargs)
    except NoPhotosNamed:
        return None


PageSidesDep = Annotated[Sides | None, Depends(sides_or_none)]
SIDE_CHOICES = ("model", "model_a", "model_b", "checkpoint_a", "checkpoint_b", "snapshot")


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, engine: EngineDep, s: PageSidesDep) -> Response:
    if s is None:  # no photo named: the two latest uploads (the latest twice if only one), else say what to do
        latest = engine.store.list_images(2)
        if not latest:
            return render_error(request, 409, i18n.translator(lang_of(request))("cmp.no_photos"))
        keep = {k: v for k, v in request.query_params.items() if k in SIDE_CHOICES}
        return RedirectResponse(url_with(request, "/compare", a=latest[0].id, b=latest[-1].id, **keep), status_code=303)
    an_a, an_b = await analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    rows = await run_blocking(layer_rows, pairs, an_a, an_b)
    zoo = engine.zoo
    base_a, base_b = s.lm_a.name.split("@")[0], s.lm_b.name.split("@")[0]
    return render(request, "compare.html", {
        "s": s, "side_a": side_summary(s, "a", an_a), "side_b": side_summary(s, "b", an_b), "rows": rows,
        "paired_by": how, "q": s.query, "models": list(engine.zoo.models.values()), "images": engine.store.list_images(30),
        "snaps_a": zoo.snapshots(base_a), "snaps_b": zoo.snapshots(base_b), "base_a": base_a, "base_b": base_b})


@router.get("/compare/layer", response_class=HTMLResponse)
async def compare_layer(request: Request, engine: EngineDep, s: SidesDep,
                        index: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                        layer: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    an_a, an_b = await analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    try:
        p = layer_pair(pairs, layer, index)
    except KeyError:
        raise UnknownLayerError(str(layer if layer is not None else index), [li.name for li in s.lm_a.layers],
                                owner=s.lm_a.name) from None
    ctx: dict[str, object] = {"p": p, "s": s, "q": s.query}  # numbers: the template's |sig
    if p.same_shape:
        ga, gb, gd = await engine.gate.run(shared_grids, an_a.activations[p.a.name], an_b.activations[p.b.name])  # type: ignore[union-attr]
        ctx.update(src_a=png_data_uri(ga), src_b=png_data_uri(gb), src_d=png_data_uri(gd),
                   stats=diff_stats(an_a.activations[p.a.name], an_b.activations[p.b.name]))  # type: ignore[union-attr]
    else:
        ctx.update(src_a=png_data_uri(await engine.gate.run(engine.activation_png, s.lm_a, s.rec_a, p.a.name))
                   if p.a else None,
                   src_b=png_data_uri(await engine.gate.run(engine.activation_png, s.lm_b, s.rec_b, p.b.name))
                   if p.b else None,
                   src_d=None, stats=None)
    return render(request, "compare_layer.html", ctx, block="pair")

"""HTML face of a network's overview for one photo: /images/{id}/overview, a page of its own and the block
that the photo's page loads with htmx at its top (blocks collapsible without JavaScript: <details>); its thumbnails
on a colour scale (``scale=channel|layer|global``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.core.imaging import SCALES
from app.deps import EngineDep
from app.features.analysis.onphoto import network_range
from app.features.overview.service import sections
from app.web.templating import fmt_num, lang_of, render

router = APIRouter(include_in_schema=False)


@router.get("/images/{image_id}/overview", response_class=HTMLResponse)
async def overview_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                        model: Annotated[str | None, Query(max_length=64)] = None,
                        scale: Annotated[Literal["channel", "layer", "global"], Query()] = "channel") -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    ov, rows = await engine.overview_then(lm, rec, lambda ov: sections(lm, ov))
    lo, hi = network_range(ov)
    lang = lang_of(request)
    return render(request, "overview.html", {"rec": rec, "model": lm, "rows": rows, "scale": scale, "scales": SCALES,
                                             "scale_lo": fmt_num(lo, lang), "scale_hi": fmt_num(hi, lang)},
                  block="overview")

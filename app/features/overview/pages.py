"""HTML face of a network's overview for one photo: /images/{id}/overview, a page of its own and the block
that the photo's page loads with htmx at its top (blocks collapsible without JavaScript: <details>)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import EngineDep
from app.features.overview.service import sections
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/images/{image_id}/overview", response_class=HTMLResponse)
async def overview_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                        model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    _, rows = await engine.overview_then(lm, rec, lambda ov: sections(lm, ov))
    return render(request, "overview.html", {"rec": rec, "model": lm, "rows": rows}, block="overview")

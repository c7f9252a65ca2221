"""HTML face of a unit's real arithmetic: /images/{id}/arithmetic?model=&layer=&channel=&y=&x=, a page of its
own and the block a channel view loads with htmx when a position of its map is chosen (link or form)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import EngineDep
from app.features.arithmetic.service import arithmetic
from app.web.templating import render

router = APIRouter(include_in_schema=False)

SHOWN_CHANNELS = 8  # input channels whose window and kernel are drawn; the others show their partial sum


@router.get("/images/{image_id}/arithmetic", response_class=HTMLResponse)
async def arithmetic_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                          layer: Annotated[str, Query(max_length=200)], channel: Annotated[int, Query(ge=0, le=100_000)],
                          model: Annotated[str | None, Query(max_length=64)] = None,
                          y: Annotated[int | None, Query(ge=0, le=100_000)] = None,
                          x: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    a = await arithmetic(engine, lm, rec, layer, channel, y, x)
    return render(request, "arithmetic.html", {"rec": rec, "model": lm, "a": a, "shown": SHOWN_CHANNELS},
                  block="arithmetic")

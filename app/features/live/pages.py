"""HTML face of the live webcam: the page /live (model, layer and weights to show; the camera runs in the browser).

The frames travel over the WebSocket of :mod:`app.features.live.socket`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import EngineDep
from app.features.live.service import default_layer
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/live", response_class=HTMLResponse)
async def live_page(request: Request, engine: EngineDep, model: Annotated[str | None, Query(max_length=64)] = None,
                    layer: Annotated[str | None, Query(max_length=200)] = None,
                    snapshot: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    zoo = engine.zoo
    base = engine.pick(model)
    lm = zoo.variant(base.name, snapshot)
    chosen = layer or default_layer(lm)
    lm.layer(chosen)
    snaps = zoo.snapshots(base.name)
    return render(request, "live.html", {
        "models": list(engine.zoo.models.values()), "model": base, "lm": lm, "layer": chosen,
        "snapshots": snaps, "snapshot": snapshot or "", "layers": lm.layers})

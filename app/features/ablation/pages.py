"""HTML face of switching channels off: /images/{id}/ablation?model=&ablate=conv1:3&ablate=conv1:5 shows the
predictions with those channels zeroed beside the intact network's (the block a layer view's toggles load)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.core.inference import top_k
from app.deps import EngineDep
from app.features.ablation import service as ablation
from app.web.templating import render

router = APIRouter(include_in_schema=False)


@router.get("/images/{image_id}/ablation", response_class=HTMLResponse)
async def ablation_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                        model: Annotated[str | None, Query(max_length=64)] = None,
                        ablate: Annotated[list[str] | None, Query(max_length=20_000)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    off = ablation.parse(lm, ablate or [])
    before = await engine.predictions(lm, rec)
    after = await ablation.probabilities(engine, lm, rec, off) if off else before
    top = top_k(before, lm.spec.categories, 5)
    rows = [{"label": p.label, "before": p.probability, "after": float(after[p.index])} for p in top]
    return render(request, "ablation.html", {"rec": rec, "model": lm, "off": off, "rows": rows,
                                             "after_top": top_k(after, lm.spec.categories, 1)[0]}, block="ablation")

"""JSON face of a network's overview for one photo: GET /api/images/{id}/overview."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import EngineDep
from app.features.overview.schemas import OverviewOut
from app.features.overview.service import overview
from app.http.responses import ERRORS, ImageId, ModelQ, fast_json

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/images/{image_id}/overview", response_model=OverviewOut, responses=ERRORS,
            summary="The whole network for a photo: layers in data-flow order, edges (skips too), blocks, top channels")
async def get_overview(engine: EngineDep, image_id: ImageId, model: ModelQ = None) -> Response:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    _, body = await engine.overview_then(lm, rec, lambda ov: overview(lm, ov, rec))
    return fast_json(body)

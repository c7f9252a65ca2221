"""JSON face of a unit's real arithmetic: GET /api/images/{id}/arithmetic?model=&layer=&channel=&y=&x=."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import EngineDep
from app.features.arithmetic.schemas import ArithmeticOut
from app.features.arithmetic.service import arithmetic
from app.http.responses import ERRORS, ImageId, ModelQ, fast_json

router = APIRouter(prefix="/api", tags=["api"])

Pos = Annotated[int | None, Query(ge=0, le=100_000, description="row (y) or column (x) of the unit; maps only")]


@router.get("/images/{image_id}/arithmetic", response_model=ArithmeticOut, responses=ERRORS,
            summary="How one unit's number was computed from the layer before, with the trained weights")
async def get_arithmetic(engine: EngineDep, image_id: ImageId, layer: Annotated[str, Query(max_length=200)],
                         channel: Annotated[int, Query(ge=0, le=100_000)], model: ModelQ = None,
                         y: Pos = None, x: Pos = None) -> Response:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    return fast_json(await arithmetic(engine, lm, rec, layer, channel, y, x))

"""JSON face of the checkpoint timeline: GET /api/models/{model}/snapshots lists a model's training snapshots."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.deps import EngineDep
from app.features.timeline.schemas import SnapshotsOut
from app.http.responses import ERRORS

router = APIRouter(prefix="/api", tags=["snapshots"])


@router.get("/models/{model}/snapshots", response_model=SnapshotsOut, responses=ERRORS,
            summary="The training snapshots of a model (read-only variants)")
async def list_snapshots(engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> dict[str, object]:
    zoo = engine.zoo
    snaps = zoo.snapshots(model)
    return {"model": model.split("@")[0], "snapshots": [
        {"id": s.id, "epoch": s.epoch, "variant": s.variant, "bytes": s.bytes, "dtype": "float16 (served as float32)",
         "filters": f"/api/models/{s.variant}/filters?format=png"} for s in snaps]}

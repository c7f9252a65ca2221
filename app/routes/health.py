"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and the store writable")
async def readyz(engine: EngineDep) -> JSONResponse:
    models = engine.zoo.names()
    writable = engine.store.writable()
    ready = bool(models) and writable
    body = {"status": "ready" if ready else "not ready", "models": models, "model_errors": engine.zoo.errors,
            "store_writable": writable}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/api/stats", summary="Serving counters: batches and their mean size, overload refusals, caches")
async def stats(engine: EngineDep) -> dict[str, object]:
    return engine.stats()

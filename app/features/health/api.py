"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import EngineDep
from app.runtime.blocking import run_blocking

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and the store writable")
async def readyz(engine: EngineDep) -> JSONResponse:
    models = engine.zoo.names()
    writable = await run_blocking(engine.store.writable)  # a write and an fsync: never on the event loop
    ready = bool(models) and writable
    body = {"status": "ready" if ready else "not ready", "models": models, "model_errors": engine.zoo.errors,
            "store_writable": writable}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/api/stats", summary="Serving counters: batches and their mean size, overload refusals, caches")
async def stats(engine: EngineDep) -> dict[str, object]:
    return await run_blocking(engine.stats)  # it sums the store's disk usage

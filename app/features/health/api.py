"""Liveness and readiness probes."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import EngineDep
from app.features.health.schemas import HealthOut, ReadyOut, StatsOut
from app.http.responses import BASE_ERRORS
from app.runtime.blocking import run_blocking

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, responses=BASE_ERRORS, summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, responses={
    **BASE_ERRORS, 503: {"model": ReadyOut, "description": "not ready: no model loaded or the store not writable"}},
    summary="Readiness: models loaded and the store writable")
async def readyz(engine: EngineDep) -> JSONResponse:
    models = engine.zoo.names()
    writable = await run_blocking(engine.store.writable)  # a write and an fsync: never on the event loop
    ready = bool(models) and writable
    body = {"status": "ready" if ready else "not ready", "models": models, "model_errors": engine.zoo.errors,
            "store_writable": writable, "worker": os.getpid()}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/api/stats", response_model=StatsOut, responses=BASE_ERRORS,
            summary="Serving counters: batches and their mean size, overload refusals, caches")
async def stats(engine: EngineDep) -> dict[str, object]:  # response_model checks it: a small dict
    return await run_blocking(engine.stats)  # it sums the store's disk usage

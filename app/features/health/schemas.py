"""Shapes of the probes and the serving counters (/healthz, /readyz, /api/stats)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class ReadyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "models": ["cifarnet", "resnet18"], "model_errors": {}, "store_writable": True,
         "worker": 4242}]})

    status: Literal["ready", "not ready"]
    models: list[str] = Field(description="the models that loaded")
    model_errors: dict[str, str] = Field(description="models that failed to load, with the reason")
    store_writable: bool
    worker: int = Field(description="the process id of the worker that answered (`convscope serve --workers N`)")


class BatcherStats(BaseModel):
    batches: int
    items: int
    mean_batch: float | None


class StatsOut(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "predictions": {"batches": 12, "items": 30, "mean_batch": 2.5},
        "analyses": {"batches": 4, "items": 4, "mean_batch": 1.0}, "overload_refusals": 0, "analyses_kept": 4,
        "pictures_kept": 20, "probabilities_kept": 6, "inputs_kept": 6, "attributions_kept": 1,
        "decoders_replaced": 0, "disk": {"database_bytes": 98304, "blob_bytes": 1048576}, "gc": None}]})

    predictions: BatcherStats
    analyses: BatcherStats
    overload_refusals: int = Field(description="requests refused with 503 since start")
    decoders_replaced: int = Field(description="decoding processes killed over their ceiling")
    disk: dict[str, int] = Field(description="bytes the store takes: database_bytes, blob_bytes")
    gc: Any = Field(description="garbage-collector pauses while serving (null when not watched)")

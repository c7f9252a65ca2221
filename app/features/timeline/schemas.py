"""Shapes of the checkpoint timeline API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SnapshotOut(BaseModel):
    id: str = Field(description="e.g. epoch-003 or final")
    epoch: int | None
    variant: str = Field(description="the model name that serves this snapshot (model@id)")
    bytes: int
    dtype: str
    filters: str = Field(description="its first layer's filters (PNG)")


class SnapshotsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"model": "cifarnet", "snapshots": [
        {"id": "epoch-001", "epoch": 1, "variant": "cifarnet@epoch-001", "bytes": 412345,
         "dtype": "float16 (served as float32)", "filters": "/api/models/cifarnet@epoch-001/filters?format=png"}]}]})

    model: str
    snapshots: list[SnapshotOut]

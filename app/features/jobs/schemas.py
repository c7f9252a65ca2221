"""The JSON shape of every background job (the same for index builds and feature visualizations)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.jobs import Job


class JobOut(BaseModel):
    id: str
    kind: str = Field(description="index, featvis (one picture) or featvis-many (a layer's missing pictures)")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int = Field(description="units done: images (index), optimisation steps (featvis), pictures (featvis-many)")
    total: int
    percent: float
    resumed_from: int = Field(description="units already done when this run started (a resumed checkpoint)")
    rate: float = Field(description="units per second since the job started")
    eta_s: float | None = Field(description="seconds left at the current rate, while the job is active")
    value: float | None = Field(description="the objective's latest value (feature visualization)")
    message: str
    error: str | None
    params: dict[str, Any] = Field(description="what the job works on (model, data set, layer...)")
    created: float = Field(description="Unix time")
    started: float | None
    finished: float | None
    url: str = Field(description="this job")
    result_url: str | None = Field(description="where the finished job's result is served")
    page_url: str | None = Field(description="the page that shows the finished result")
    preview_url: str | None = Field(description="the latest intermediate picture, while one exists")


class JobsOut(BaseModel):
    jobs: list[JobOut]


def job_out(job: Job) -> JobOut:
    return JobOut(**job.public())

"""The JSON shape of every background job (the same for index builds and feature visualizations)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.jobs import Job

JOB_EXAMPLE = {
    "id": "3f9c2a1b7d4e", "kind": "featvis", "state": "running", "done": 64, "total": 256, "percent": 25.0,
    "resumed_from": 0, "rate": 41.5, "eta_s": 4.6, "value": 3.12, "message": "", "error": None,
    "params": {"model": "cifarnet", "objective": "channel 7 of conv2", "steps": 256, "seed": 0},
    "created": 1765000000.0, "started": 1765000000.1, "finished": None, "url": "/api/jobs/3f9c2a1b7d4e",
    "result_url": "/api/models/cifarnet/layers/conv2/channels/7/featvis",
    "page_url": "/models/cifarnet/layers/conv2/channels/7/featvis", "preview_url": "/api/jobs/3f9c2a1b7d4e/preview.png"}


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

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
    model_config = ConfigDict(json_schema_extra={"examples": [{"jobs": [JOB_EXAMPLE]}]})

    jobs: list[JobOut]


class AcceptedOut(BaseModel):
    """The 202 of a request that started (or joined) a job; Location holds the job's URL."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "queued", "job": {**JOB_EXAMPLE, "state": "queued"}, "job_url": "/api/jobs/3f9c2a1b7d4e"}]})

    status: Literal["queued", "running", "done", "failed", "cancelled"] = Field(description="the job's state")
    job: JobOut
    job_url: str = Field(description="the job (also in Location): poll it until its state is done, then follow "
                                     "its result_url")


def job_out(job: Job) -> JobOut:
    return JobOut(**job.public())

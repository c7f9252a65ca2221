"""JSON faces of the one job model: list, progress, cancel and the latest preview of any background job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.deps import JobsDep
from app.features.jobs.schemas import JobOut, JobsOut, job_out
from app.features.jobs.service import JobNotFound, find_job
from app.http.responses import ERRORS, PNG

router = APIRouter(prefix="/api", tags=["jobs"])
JobId = Annotated[str, Path(max_length=64)]


@router.get("/jobs", response_model=JobsOut, summary="Background jobs of every kind, newest first")
async def list_jobs(jobs: JobsDep, kind: Annotated[str | None, Query(max_length=32)] = None,
                    limit: Annotated[int, Query(ge=1, le=256)] = 50) -> JobsOut:
    return JobsOut(jobs=[job_out(j) for j in jobs.list(kind)[:limit]])


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: ERRORS[404]},
            summary="Progress of a background job (index build or feature visualization)")
async def get_job(jobs: JobsDep, job_id: JobId) -> JobOut:
    return job_out(find_job(jobs, job_id))


@router.delete("/jobs/{job_id}", response_model=JobOut, status_code=202, responses={404: ERRORS[404]},
               summary="Cancel a background job (it stops within one step or batch)")
async def cancel_job(jobs: JobsDep, job_id: JobId) -> JobOut:
    return job_out(find_job(jobs, job_id, cancel=True))


@router.get("/jobs/{job_id}/preview.png", responses={404: ERRORS[404], 200: PNG},
            response_class=Response, summary="The latest intermediate picture of a job (feature visualization)")
async def job_preview(jobs: JobsDep, job_id: JobId) -> Response:
    job = find_job(jobs, job_id)
    if job.preview is None:
        raise JobNotFound(job_id)
    return Response(job.preview, media_type="image/png", headers={"Cache-Control": "no-store"})

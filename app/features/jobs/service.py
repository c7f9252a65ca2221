"""Jobs for the routes: looking one up (an unknown id is a 404 that says where jobs come from) and the
202 answer of a request that started one."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from app.core.errors import NotFoundError
from app.jobs import Job, JobQueue


class JobNotFound(NotFoundError):
    kind = "job"

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, hint="jobs are started by POST /api/indexes and the featvis endpoints, and kept "
                                      "while the server runs; GET /api/jobs lists them")


def find_job(jobs: JobQueue, job_id: str, *, cancel: bool = False) -> Job:
    job = jobs.cancel(job_id) if cancel else jobs.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def accepted(job: Job) -> JSONResponse:
    """202 for work that runs as a job: the job (the one shape of /api/jobs) and its URL in Location."""
    return JSONResponse({"status": job.state, "job": job.public(), "job_url": f"/api/jobs/{job.id}"},
                        status_code=202, headers={"Location": f"/api/jobs/{job.id}"})

"""HTML faces of the one job model: a job's page, its progress panel (polled by htmx) and cancel."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import JobsDep
from app.features.jobs.service import find_job
from app.web.templating import is_htmx, render

router = APIRouter(include_in_schema=False)
JobId = Annotated[str, Path(max_length=64)]
LocalUrl = Annotated[str | None, Query(max_length=500, pattern=r"^/[^/\\].*$|^/$")]


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, jobs: JobsDep, job_id: JobId) -> HTMLResponse:
    """The job's own page: its progress panel (which polls while the job runs), also without JavaScript."""
    job = find_job(jobs, job_id)
    return render(request, "pages/job.html", {"job": job, "done_url": job.page_url}, block="job")


@router.get("/jobs/{job_id}/panel", response_class=HTMLResponse)
async def job_panel(request: Request, jobs: JobsDep, job_id: JobId, done_url: LocalUrl = None) -> Response:
    job = find_job(jobs, job_id)
    done_url = done_url or job.page_url or f"/jobs/{job.id}"
    embedded = False
    if job.state == "done" and is_htmx(request) and job.kind != "index":
        # On the job's own page, reload it (as without JS). Embedded in another page (a channel's
        # view under a photo's analysis), the result takes the job's place there: navigating away
        # would lose what the user is looking at.
        here = request.headers.get("HX-Current-URL")
        if here is None or urlsplit(here).path == urlsplit(done_url).path:
            return Response(status_code=200, headers={"HX-Redirect": done_url})
        embedded = True
    return render(request, "partials/job.html", {"job": job, "done_url": done_url, "embedded": embedded}, block="job")


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def cancel_page(request: Request, jobs: JobsDep, job_id: JobId, back: LocalUrl = None) -> Response:
    job = find_job(jobs, job_id, cancel=True)
    back = back or job.page_url or f"/jobs/{job.id}"
    if is_htmx(request):
        return render(request, "partials/job.html", {"job": job, "done_url": back}, block="job")
    return RedirectResponse(back, status_code=303)

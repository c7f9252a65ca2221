"""HTML faces of the sample photos: a one-click example is a plain form POST (no script needed) that stores the
photo through the normal upload path and opens its page; /samples lists every photo with its credit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import EngineDep, ServicesDep
from app.features.samples.service import catalogue, store_sample
from app.web.templating import render, url_with

router = APIRouter(include_in_schema=False)
LECTURE_PAGES = ("lecture/3", "lecture/8")


@router.get("/samples", response_class=HTMLResponse)
async def samples_page(request: Request, engine: EngineDep) -> HTMLResponse:
    return render(request, "samples.html", {"samples": list(catalogue().values()), "model": engine.pick(None)})


@router.post("/samples/{name}", response_class=HTMLResponse)
async def open_sample(request: Request, engine: EngineDep, services: ServicesDep,
                      name: Annotated[str, Path(max_length=64)], model: Annotated[str, Form(max_length=64)] = "",
                      then: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Store the sample (once per content, like any upload) and open its page (``then``: a path below the
    photo's page, e.g. ``layers/conv1``, or a lecture page that shows the photo, ``lecture/8``)."""
    lm = engine.pick(model or None)
    rec = await store_sample(services, name)
    if then in LECTURE_PAGES:  # the lecture's pages that take a photo
        return RedirectResponse(url_with(request, f"/{then}", image=rec.id), status_code=303)
    suffix = "/" + then.strip("/") if then and all(part.replace(".", "").replace("_", "").isalnum()
                                                   for part in then.strip("/").split("/")) else ""
    return RedirectResponse(url_with(request, f"/images/{rec.id}{suffix}", model=lm.name), status_code=303)

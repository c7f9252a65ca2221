"""HTML faces of the stored photos: the home page with its upload form and recent photos, the form's POST (which
opens the photo's page, or with ``then=arithmetic`` its first layer's arithmetic: the lecture's "use my photo")."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import EngineDep, ServicesDep
from app.features.samples.service import catalogue
from app.http.uploads import ensure_single_file, read_upload
from app.web.templating import render, url_with

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, engine: EngineDep, model: Annotated[str | None, Query(max_length=64)] = None,
               error: str | None = None) -> HTMLResponse:
    lm = engine.pick(model)
    s = engine.settings
    return render(request, "index.html", {
        "models": list(engine.zoo.models.values()), "model": lm, "recent": engine.store.list_images(12),
        "max_mb": s.max_upload_bytes // (1024 * 1024), "max_side": s.max_side, "error": error,
        "samples": list(catalogue().values())})


@router.post("/images", response_class=HTMLResponse)
async def upload_page(request: Request, engine: EngineDep, services: ServicesDep, file: Annotated[UploadFile, File()],
                      model: Annotated[str, Form(max_length=64)] = "",
                      then: Annotated[Literal["photo", "arithmetic"], Form()] = "photo") -> Response:
    lm = engine.pick(model or None)
    await ensure_single_file(request)
    data = await read_upload(file, engine.settings.max_upload_bytes)
    up = await services.ingest(data, file.filename or "upload")
    target = url_with(request, f"/images/{up.record.id}", model=lm.name)
    if then == "arithmetic":  # the lecture's "use my photo": the first layer's real arithmetic, at the centre
        _, h, w = lm.layer(lm.first_conv).output_shape
        target = url_with(request, f"/images/{up.record.id}/arithmetic", model=lm.name, layer=lm.first_conv,
                          channel=0, y=h // 2, x=w // 2)
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/favicon.ico")
async def favicon() -> RedirectResponse:
    """Browsers ask for it on documents without a <link rel=icon> (e.g. an opened PNG)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)

"""Deleting an upload from its page: POST /images/{id}/delete -> everything derived from it goes, back home.

(The JSON face is ``DELETE /api/images/{id}``.)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import EngineDep
from app.features.privacy.service import purge
from app.runtime.blocking import run_blocking
from app.web.templating import url_with

router = APIRouter(include_in_schema=False)


@router.post("/images/{image_id}/delete")
async def delete_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)]) -> Response:
    engine.image(image_id)  # 404 for an unknown id
    await run_blocking(purge, engine, image_id)
    target = url_with(request, "/")
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)

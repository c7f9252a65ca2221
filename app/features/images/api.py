"""JSON faces of the stored photos: upload, list, metadata, the picture itself (original or web-sized), delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from app.core.imaging import png_bytes
from app.deps import EngineDep, ServicesDep
from app.features.images.schemas import ImageOut, image_out
from app.features.images.service import SizeName, rendition
from app.http.responses import BINARY, ERRORS, PNG, UPLOAD_ERRORS, ImageId, ModelQ
from app.http.uploads import ensure_single_file, read_upload
from app.runtime.blocking import run_blocking

router = APIRouter(prefix="/api", tags=["api"])
WEBP = {"content": {"image/webp": {"schema": BINARY}}}
SizeQ = Annotated[SizeName | None, Query(description="thumb (lists, galleries), display or display2x (the photo page, "
                                                       "1x and 2x screens): a WebP; without it the stored original")]


@router.post("/images", status_code=201, response_model=ImageOut, responses={
    200: {"model": ImageOut, "description": "the same bytes were uploaded before"}, **UPLOAD_ERRORS},
    summary="Upload a photo (multipart field `file`); stored once by content hash")
async def upload_image(request: Request, engine: EngineDep, services: ServicesDep,
                       file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, GIF, HEIC or AVIF")]) -> JSONResponse:
    await ensure_single_file(request)
    data = await read_upload(file, engine.settings.max_upload_bytes)
    up = await services.ingest(data, file.filename or "upload")
    return JSONResponse(image_out(up.record).model_dump(), status_code=201 if up.created else 200,
                        headers={"Location": f"/api/images/{up.record.id}"})


@router.get("/images", response_model=list[ImageOut], responses={422: ERRORS[422]},
            summary="Stored uploads, newest first")
async def list_images(engine: EngineDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[ImageOut]:
    return [image_out(r) for r in engine.store.list_images(limit, offset)]


@router.get("/images/{image_id}", response_model=ImageOut, responses=ERRORS, summary="One upload's metadata")
async def get_image(engine: EngineDep, image_id: ImageId) -> ImageOut:
    return image_out(engine.image(image_id))


@router.get("/images/{image_id}/file", responses={**ERRORS, 200: {"content": {**PNG["content"], **WEBP["content"]}}},
            response_class=Response,
            summary="The stored picture (PNG); with `size` a WebP the size a page shows it; with `model` the network's input")
async def get_image_file(request: Request, engine: EngineDep, image_id: ImageId, model: ModelQ = None,
                         size: SizeQ = None) -> Response:
    rec = engine.image(image_id)
    # A user's photo: cached by this browser only, and checked again each time (a deleted photo disappears).
    etag = f'"{rec.sha256[:32]}{"-" + model if model else "-" + size if size else ""}"'
    headers = {"Cache-Control": "private, no-cache", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if model is not None:
        return Response(png_bytes(engine.network_input(engine.model(model), rec)), media_type="image/png", headers=headers)
    if size is not None:
        return Response(await run_blocking(rendition, engine, rec, size), media_type="image/webp", headers=headers)
    return Response(engine.store.image_png(rec), media_type="image/png", headers=headers)


@router.delete("/images/{image_id}", status_code=204, responses=ERRORS, response_class=Response,
               summary="Delete an upload and everything derived from it")
async def delete_image(engine: EngineDep, services: ServicesDep, image_id: ImageId) -> Response:
    engine.image(image_id)
    services.delete(image_id)  # complete now: no answer lists the photo after this one
    return Response(status_code=204)

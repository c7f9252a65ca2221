"""JSON shape of a stored upload (its metadata and the address of its picture)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.store.database import ImageRecord


class ImageOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"id": "0aacbbeb7c4dc1ce",
         "width": 96,
         "height": 72,
         "sha256": "0aacbbeb7c4dc1ced9aec737eac39f8f6438054c4db36276f72d995db1a743d7",
         "original_width": 96,
         "original_height": 72,
         "format": "JPEG",
         "filename": "cat.jpg",
         "created": 1797000000.0,
         "url": "/api/images/0aacbbeb7c4dc1ce/file"}
    ]})

    id: str
    width: int
    height: int
    sha256: str = Field(description="sha256 of the uploaded bytes")
    original_width: int
    original_height: int
    format: str
    filename: str
    created: float
    url: str = Field(description="the stored picture (PNG, upright, no metadata)")


def image_out(rec: ImageRecord) -> ImageOut:
    return ImageOut(id=rec.id, width=rec.width, height=rec.height, sha256=rec.sha256,
                    original_width=rec.original_width, original_height=rec.original_height, format=rec.format,
                    filename=rec.filename, created=rec.created, url=f"/api/images/{rec.id}/file")

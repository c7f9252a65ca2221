"""Reading an uploaded file with a byte limit (the edge between HTTP and the core's decoder)."""

from __future__ import annotations

from fastapi import Request, UploadFile
from starlette.datastructures import UploadFile as StarletteUploadFile

from app.core.decode import ImageError

CHUNK = 256 * 1024


async def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes, or a 413 :class:`ImageError` as soon as more than ``max_bytes`` arrive."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = await file.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise ImageError("too_large", f"The file is larger than {max_bytes // (1024 * 1024)} MB. "
                             "Upload a smaller photo (or resize it first).", 413)
        parts.append(chunk)
    return b"".join(parts)


async def ensure_single_file(request: Request) -> None:
    """Refuse a request that carries more than one file (the form is already parsed and cached)."""
    form = await request.form()
    files = [v for _, v in form.multi_items() if isinstance(v, StarletteUploadFile)]
    if len(files) > 1:
        raise ImageError("too_many_files", f"The request carries {len(files)} files; send one photo per request "
                         "in the form field `file`.", 400)

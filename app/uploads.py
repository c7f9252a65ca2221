"""Reading an uploaded file with a byte limit (the edge between HTTP and the core's decoder)."""

from __future__ import annotations

from fastapi import UploadFile

from app.core.imaging import ImageError

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

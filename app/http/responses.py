"""The HTTP edge's shared pieces: the documented error body (Problem) and the error responses every
operation documents, the common path and query parameters, binary media types, and fast JSON (orjson,
which writes NumPy arrays directly)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field


# The JSON body of every error answer, as the OpenAPI schema documents it (app.errors writes it); no
# docstring: it would become the schema's description.
class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")
    code: str
    valid: list[str] | None = Field(None, description="the names that exist, for unknown names")


ERRORS = {404: {"model": Problem, "description": "unknown model, layer or image"},
          422: {"model": Problem, "description": "invalid parameter"},
          503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}
UPLOAD_ERRORS = {400: {"model": Problem, "description": "empty, truncated, several files or malformed multipart"},
                 413: {"model": Problem, "description": "over the size or pixel limits"},
                 415: {"model": Problem, "description": "not an accepted image format"},
                 422: {"model": Problem, "description": "no `file` field"},
                 429: {"model": Problem, "description": "too many uploads from this client (rate limit)"},
                 503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}

ModelQ = Annotated[str | None, Query(max_length=64, description="model name (default: the server's default model)")]
ImageId = Annotated[str, Path(max_length=64, description="image id from POST /api/images")]
PNG = {"content": {"image/png": {}}}
NPY = {"content": {"application/x-npy": {}}}


def fast_json(body: dict[str, object], status_code: int = 200) -> Response:
    """JSON through orjson, which writes NumPy arrays directly (activations are large)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")

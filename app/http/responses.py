"""The HTTP edge's shared pieces: the documented error body (Problem) and the error responses every
operation documents, the common path and query parameters, binary media types, and fast JSON (orjson,
which writes NumPy arrays directly)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


# The JSON body of every error answer, as the OpenAPI schema documents it (app.errors writes it); no
# docstring: it would become the schema's description.
class Problem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"detail": "unknown layer 'conv9' for model cifarnet; did you mean: conv1, conv2?", "code": "unknown_layer",
         "valid": ["conv1", "conv2", "fc"], "did_you_mean": ["conv1", "conv2"]}]})

    detail: str = Field(description="what went wrong and what to do")
    code: str = Field(description="stable code from the published list (README, 'Error codes')")
    valid: list[str] | None = Field(None, description="the names that exist, for unknown names (when there are many: "
                                                       "the closest few; see count and list_url); for unknown JSON "
                                                       "fields, the known ones")
    did_you_mean: list[str] | None = Field(None, description="the valid names closest to an unknown one")
    count: int | None = Field(None, description="how many names exist, when valid lists only a few")
    list_url: str | None = Field(None, description="where all the names are (GET)")
    valid_range: list[int] | None = Field(None, description="first and last valid value, for a number out of range")
    errors: list[dict[str, Any]] | None = Field(None, description="one entry per invalid field (invalid_request)")


class StrictBody(BaseModel):
    """A JSON request body that refuses fields it does not know (422 ``invalid_request``, type
    ``extra_forbidden``), naming them and listing the known ones; a typo is never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [n for n, f in cls.model_fields.items() for n in ((f.alias or n),)]
            unknown = [str(k) for k in data if k not in known]
            if unknown:
                raise PydanticCustomError("extra_forbidden", "unknown field {unknown}; the known fields are: {known}",
                                          {"unknown": ", ".join(unknown), "known": ", ".join(known)})
        return data


# Every request can be refused at the edge (app.http.security): a Host this server does not answer to.
BASE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Host not allowed (host_not_allowed) or a malformed request"}}
ERRORS = {**BASE_ERRORS, 404: {"model": Problem, "description": "unknown model, layer or image"},
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
BINARY = {"type": "string", "format": "binary"}
PNG = {"content": {"image/png": {"schema": BINARY}}}
NPY = {"content": {"application/x-npy": {"schema": BINARY}}}
ZIP = {"content": {"application/zip": {"schema": BINARY}}}


def fast_json(body: dict[str, object], status_code: int = 200) -> Response:
    """JSON through orjson, which writes NumPy arrays directly (activations are large)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")

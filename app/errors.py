"""The one error model: every error a client can cause becomes one problem (status, stable code, message
in the request's language, extra fields), answered as JSON ``{detail, code, ...}`` on API paths and as
the error page on HTML paths, by one handler.

Errors of the app's own services derive from :class:`AppError`. Errors raised by the core (which knows
nothing of HTTP) and by the framework are mapped here, in :func:`problem_of`: a name that does not exist
(404 ``unknown_<kind>`` with the valid names), a picture that cannot be used (its own status and code), a
lecture input the lecture cannot take (422 with the lecture's code), a full server (503 + Retry-After),
and request validation (422 ``invalid_request``). Wording lives in ``app/i18n/messages/errors.toml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import i18n
from app.core.decode import ImageError
from app.core.errors import NotFoundError
from app.core.lecture import LectureError
from app.runtime.gate import Overloaded
from app.web.templating import is_api, lang_of, render_error


class AppError(Exception):
    """An error of the app's services that a client caused: ``status`` and ``code`` per class, the
    message in English, optional ``extra`` fields for the JSON body, and optionally the catalog ``key``
    (with ``params``) that words it in the request's language."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, key: str | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.key = key
        self.params = dict(params or {})

    def text(self, lang: str) -> str:
        """The message in ``lang`` when the catalog words it, else the English message."""
        if self.key and lang != i18n.DEFAULT_LANG and i18n.has(self.key):
            return i18n.translator(lang)(self.key, **self.params)
        return str(self)


class BadParameterError(AppError, ValueError):
    """A parameter out of range or not allowed here (channel, k, view, objective...)."""

    status, code = 422, "bad_parameter"


class TooCostlyError(AppError):
    """Work whose cost, checked before it starts, is over its budget; the message names what fits."""

    status, code = 422, "too_costly"


@dataclass(frozen=True)
class Problem:
    """What one error answers, whatever raised it."""

    status: int
    code: str
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def lecture_error_text(e: LectureError, lang: str) -> str:
    """A lecture input error in ``lang`` (``lec.err.<code>``; parameter names translated too)."""
    _ = i18n.translator(lang)
    params: dict[str, Any] = dict(e.params)
    name = params.get("name")
    if isinstance(name, str) and i18n.has(f"lec.name.{name}"):
        params["name"] = _(f"lec.name.{name}")
    return _(f"lec.err.{e.code}", **params)


def _clean_loc(loc: Sequence[Any]) -> list[Any]:
    """Drop the request part (body/query) and pydantic's union-member labels (int, float…)."""
    out = [p for p in loc[1:] if not (isinstance(p, str) and (p in ("int", "float", "str", "bool", "list")
                                                             or "[" in p))]
    return out or list(loc[:1])


def validation_text(errors: Sequence[Any], lang: str) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message for request-validation errors in ``lang``, and the errors (one per field)."""
    _ = i18n.translator(lang)
    seen: dict[str, dict[str, Any]] = {}
    for err in errors:
        loc = _clean_loc(err.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        typ = err.get("type", "")
        key = f"err.validation.{typ}"
        msg = _("err.other", msg=err.get("msg", ""))
        if i18n.has(key):
            try:
                msg = _(key, **(err.get("ctx") or {}))
            except (KeyError, IndexError):
                pass
        seen[where] = {"loc": loc, "msg": msg, "type": typ}
    details = "; ".join(f"{w}: {e['msg']}" if w else e["msg"] for w, e in seen.items())
    return _("err.invalid_request", details=details), list(seen.values())


# Where the full list of each kind of name is (``{owner}``: the model a layer or class was looked up in).
LIST_URLS = {"model": "/api/models", "layer": "/api/models/{owner}", "class": "/api/models/{owner}",
             "image": "/api/images", "job": "/api/jobs", "snapshot": "/api/models/{owner}/snapshots"}


def _not_found(exc: NotFoundError, lang: str) -> Problem:
    """404 ``unknown_<kind>``: the closest names (did_you_mean), a short list (valid), and when the names
    are many, how many there are (count) and where all of them are (list_url)."""
    _ = i18n.translator(lang)
    extra: dict[str, Any] = {"valid": exc.shown} if exc.valid else {}
    if exc.suggestions:
        extra["did_you_mean"] = exc.suggestions
    detail = str(exc)
    url = LIST_URLS.get(exc.kind)
    if url and "{owner}" in url:
        url = url.format(owner=exc.owner) if exc.owner else None
    if len(exc.valid) > len(exc.shown):
        extra["count"] = len(exc.valid)
        if url:
            extra["list_url"] = url
            detail += f"; GET {url} lists them all"
    if lang != i18n.DEFAULT_LANG and i18n.has(f"err.unknown_{exc.kind}"):
        detail = _(f"err.unknown_{exc.kind}", name=exc.name, id=exc.name, valid=", ".join(exc.shown))
    return Problem(404, f"unknown_{exc.kind}", detail, extra)


def problem_of(exc: Exception, request: Request) -> Problem:
    """The one mapping from an exception to what the client is told."""
    lang = lang_of(request)
    _ = i18n.translator(lang)
    if isinstance(exc, AppError):
        return Problem(exc.status, exc.code, exc.text(lang), exc.extra, exc.headers)
    if isinstance(exc, LectureError):
        return Problem(422, exc.code, lecture_error_text(exc, lang))
    if isinstance(exc, NotFoundError):
        return _not_found(exc, lang)
    if isinstance(exc, ImageError):
        translated = lang != i18n.DEFAULT_LANG and i18n.has(f"err.image.{exc.code}")
        return Problem(exc.status, exc.code, _(f"err.image.{exc.code}") if translated else str(exc))
    if isinstance(exc, Overloaded):
        return Problem(503, "overloaded", str(exc), headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RequestValidationError):
        text, errors = validation_text(exc.errors(), lang)
        known = next((e["ctx"]["known"] for e in exc.errors() if e.get("type") == "extra_forbidden"
                      and "known" in (e.get("ctx") or {})), None)  # app.http.responses.StrictBody
        return Problem(422, "invalid_request", text, {"errors": errors, **({"valid": known.split(", ")} if known else {})})
    if isinstance(exc, StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and msg == "Not Found":
            msg = _("err.no_page", path=request.url.path)
        elif exc.status_code == 400 and "parsing the body" in msg:
            msg = ("The request body is not valid multipart/form-data. Send the photo as the form field "
                   "`file` (e.g. curl -F file=@photo.jpg).")
        return Problem(exc.status_code, "http_error", msg, headers=dict(getattr(exc, "headers", None) or {}))
    raise exc  # not a client's error: the server's own 500


HANDLED: tuple[type[Exception], ...] = (AppError, LectureError, NotFoundError, ImageError, Overloaded,
                                        RequestValidationError, StarletteHTTPException)


async def handle(request: Request, exc: Exception) -> Response:
    p = problem_of(exc, request)
    headers = p.headers or None
    if is_api(request):
        return JSONResponse({"detail": p.detail, "code": p.code, **p.extra}, status_code=p.status, headers=headers)
    return render_error(request, p.status, p.detail, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """The one handler, for every error family above."""
    for cls in HANDLED:
        app.add_exception_handler(cls, handle)

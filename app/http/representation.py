"""How array answers are represented and cached, the same on every route.

- **Formats**: an answer that is an array comes as ``json`` (values and stats), ``npy`` (the raw array, NumPy's
  format) or ``png`` (where it is a picture); ``?format=`` chooses, else the ``Accept`` header
  (``application/json``, ``application/x-npy``, ``image/png``), else JSON: :func:`pick_format`.
- **Caching**: an answer fixed by the weights' and the image's hashes calls :func:`fresh` with them. Its ETag
  hashes them with the URL and the representation asked for; an ``If-None-Match`` that matches answers ``304``
  before any work, and :class:`Conditional` (middleware) adds ``ETag``, ``Cache-Control`` and ``Vary: Accept`` to
  the route's 200.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.errors import BadParameterError

Format = Literal["json", "npy", "png"]
FormatQ = Annotated[Format | None, Query(description="json, npy (raw array) or png (a picture); default: by the "
                                                     "Accept header (application/json, application/x-npy, image/png), "
                                                     "else json")]
MEDIA: dict[str, Format] = {"application/json": "json", "application/x-npy": "npy", "image/png": "png"}


def _accepted(accept: str) -> list[str]:
    """Media types of an Accept header, best first (q-values; ties keep their order)."""
    out = []
    for i, part in enumerate(accept.split(",")):
        mt, *params = (p.strip() for p in part.split(";"))
        q = next((float(p[2:]) for p in params if p.startswith("q=") and p[2:].replace(".", "", 1).isdigit()), 1.0)
        if mt and q > 0:
            out.append((-q, i, mt.lower()))
    return [mt for _, _, mt in sorted(out)]


def pick_format(request: Request, format: str | None, allowed: tuple[Format, ...] = ("json", "npy", "png")) -> Format:
    """The representation to answer: ``format`` when given, else the first allowed type the Accept header
    names, else JSON (a browser's ``*/*`` included)."""
    if format is not None:
        if format not in allowed:
            raise BadParameterError(f"format {format!r} is not offered here; choose one of: {', '.join(allowed)}")
        return format  # type: ignore[return-value]
    for mt in _accepted(request.headers.get("accept", "")):
        if MEDIA.get(mt) in allowed:
            return MEDIA[mt]
    return "json"


class NotModified(Exception):
    """The client's copy is current: answered ``304`` with the validators, before any work."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("not modified")
        self.headers = headers


def _headers(etag: str, private: bool) -> dict[str, str]:
    # revalidated every time (a 304 costs nothing): a deleted photo's answers are never served from a cache
    return {"ETag": etag, "Cache-Control": f"{'private' if private else 'public'}, no-cache", "Vary": "Accept"}


def fresh(request: Request, *hashes: str, private: bool = True) -> None:
    """Mark this request's answer as fixed by ``hashes`` (the weights', the image's): ``304`` now when the
    client's ``If-None-Match`` matches, else ETag and Cache-Control on the 200 (``private``: a user's photo)."""
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    basis = "\n".join((__version__, request.url.path, query, request.headers.get("accept", ""), *hashes))
    opaque = f'"{hashlib.sha256(basis.encode()).hexdigest()[:32]}"'
    headers = _headers(f"W/{opaque}", private)  # weak: the same answer whether gzipped or not
    tags = [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]
    if opaque in tags or "*" in tags:
        raise NotModified(headers)
    request.state.cache_headers = headers


class Conditional:
    """ASGI middleware: a 200 whose route called :func:`fresh` gets its ETag and Cache-Control."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start" and msg["status"] == 200:
                extra = (scope.get("state") or {}).get("cache_headers")
                if extra:
                    ours = {k.lower().encode(): v.encode() for k, v in extra.items()}
                    msg["headers"] = [h for h in msg.get("headers", []) if h[0].lower() not in ours] + list(ours.items())
            await send(msg)

        await self.app(scope, receive, send_with_headers)


async def _not_modified(request: Request, exc: Exception) -> Response:
    return Response(status_code=304, headers=exc.headers if isinstance(exc, NotModified) else None)


def add_conditional(app: FastAPI) -> None:
    """The middleware and the 304 answer."""
    app.add_middleware(Conditional)
    app.add_exception_handler(NotModified, _not_modified)

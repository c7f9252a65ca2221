"""Static files a browser keeps: ``static_url('css/app.css')`` (a Jinja global) gives ``/static/css/app.css?v=<hash
of its content>``, and :class:`FingerprintedStatic` (the ``/static`` mount) answers a URL whose ``v`` is the file's
current hash with ``Cache-Control: public, max-age=31536000, immutable``: a page's CSS, scripts and htmx are
loaded once, and a changed file gets a new URL. Any other static URL (no ``v``, or a stale one) is checked again
each time (``no-cache``: ETag and Last-Modified make that a 304)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs

from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from app.config import package_path

STATIC = package_path("static")
IMMUTABLE = "public, max-age=31536000, immutable"


@lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]


def fingerprint(path: str) -> str | None:
    """The first 12 hex digits of the SHA-256 of ``static/<path>`` (None if there is no such file); read again
    only when the file's modification time or size changes."""
    try:
        st = (STATIC / path).stat()
    except OSError:
        return None
    return _digest(path, st.st_mtime_ns, st.st_size)


def static_url(path: str) -> str:
    """``css/app.css`` -> ``/static/css/app.css?v=<content hash>`` (a long-lived URL for that content)."""
    path = path.lstrip("/")
    digest = fingerprint(path)
    return f"/static/{path}" + (f"?v={digest}" if digest else "")


class FingerprintedStatic(StaticFiles):
    """StaticFiles whose fingerprinted URLs are cached for a year and never checked again."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            v = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v", [""])[0]
            fresh = bool(v) and v == fingerprint(path.replace("\\", "/"))
            response.headers["Cache-Control"] = IMMUTABLE if fresh else "no-cache"
        return response

"""Request-level protections, as ASGI middleware: body size while streaming, per-client upload rate."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file


async def _send_problem(send: Send, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})

# Sent on every response (app.http.limits.SecurityHeaders).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (+ multipart overhead) with a 413.

    A declared Content-Length over the limit is refused before any byte is read; a chunked body
    is counted while it streams in and cut off as soon as it passes the limit, so an oversized
    upload is never read to its end nor spooled to disk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limit = max_bytes + MULTIPART_OVERHEAD
        self.mb = max(1, max_bytes // (1024 * 1024))

    def _message(self) -> str:
        return f"The request body is larger than the {self.mb} MB limit. Upload a smaller photo (or resize it first)."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                await _send_problem(send, 400, "bad_request", "Invalid Content-Length header.")
                return
            if too_big:
                await _send_problem(send, 413, "too_large", self._message())
                return
        state = {"read": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                state["read"] += len(msg.get("body", b""))
                if state["read"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            if state["over"]:
                if msg["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_problem(send, 413, "too_large", self._message())
                return
            await send(msg)

        await self.app(scope, limited_receive, guarded_send)
        if state["over"] and not state["started"]:
            await _send_problem(send, 413, "too_large", self._message())


class UploadRateLimit:
    """At most ``per_minute`` uploads (POST to the upload routes) per client address; 0 disables it."""

    def __init__(self, app: ASGIApp, per_minute: int, paths: tuple[str, ...] = ("/api/images", "/images")) -> None:
        self.app = app
        self.per_minute = per_minute
        self.paths = paths
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.per_minute <= 0 or scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] not in self.paths):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("?", 0))[0]
        now = time.monotonic()
        with self._lock:
            q = self._hits[client]
            while q and now - q[0] > 60:
                q.popleft()
            if len(q) >= self.per_minute:
                retry = max(1, int(60 - (now - q[0])) + 1)
                allowed = False
            else:
                q.append(now)
                allowed = True
        if not allowed:
            await _send_problem(send, 429, "rate_limited",
                                f"Too many uploads from your address: at most {self.per_minute} a minute. "
                                f"Try again in {retry} s.", {"Retry-After": str(retry)})
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Add ``headers`` to every HTTP response that does not set them itself.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the
    rest of the app in a separate task with a memory stream per request, which costs more than
    everything else this layer does.
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                present = {k.lower() for k, _ in msg.get("headers") or []}
                msg["headers"] = list(msg.get("headers") or []) + [
                    (k, v) for k, v in self.headers if k not in present]
            await send(msg)

        await self.app(scope, receive, send_with_headers)

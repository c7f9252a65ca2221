"""Who may talk to the server, as ASGI middleware: a Host allowlist (DNS rebinding), same-origin checks for
every state-changing request and WebSocket (cross-site request forgery), and a cap on open connections.

Cross-site forgery: a browser tells where a request comes from (``Sec-Fetch-Site``, ``Origin``, else
``Referer``); a POST, PUT, PATCH or DELETE, and a WebSocket handshake, from another site is refused (403),
unless that origin is one of the configured CORS origins. Requests without any of these headers come from
programs (curl, scripts), which a forged request never is. This protects htmx requests and plain HTML
forms alike, with no token to thread through the pages.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from app.http.limits import ASGIApp, Receive, Scope, Send, _send_problem

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def default_hosts(bind: str) -> list[str]:
    """The hosts a server bound to ``bind`` answers by default: the local names, the bound address, and for
    a wildcard bind (0.0.0.0, ::) this machine's name and addresses."""
    hosts = [*LOCAL_NAMES, bind]
    if bind in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts.append(name)
        try:
            hosts += [info[4][0] for info in socket.getaddrinfo(name, None)]
        except OSError:
            pass
    return sorted({h for h in hosts if h and h not in ("0.0.0.0", "::")})


def _host_only(host: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class HostAllowlist:
    """400 for a Host header that is not allowed (``*`` allows any)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = {a.lower() for a in allowed}
        self.any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _host_only(_headers(scope).get("host", "")).lower()
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _send_problem(send, 400, "host_not_allowed", f"This server does not answer to the host {host!r}. "
                            "Use its address, or add the name to the setting CONVSCOPE_ALLOWED_HOSTS.")


class SameOrigin:
    """403 for a state-changing request or a WebSocket handshake that a browser sent from another site."""

    def __init__(self, app: ASGIApp, trusted_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = {o.rstrip("/").lower() for o in trusted_origins}

    def _cross_site(self, scope: Scope) -> bool:
        h = _headers(scope)
        site = h.get("sec-fetch-site")
        origin = h.get("origin") or (h.get("referer") and "{0.scheme}://{0.netloc}".format(urlsplit(h["referer"])))
        if origin and origin.rstrip("/").lower() in self.trusted:
            return False
        if site is not None:
            return site not in ("same-origin", "none")
        if not origin or origin == "null":
            return origin == "null"  # no header: not a browser; "null": an opaque (sandboxed) origin
        return urlsplit(origin).netloc.lower() != h.get("host", "").lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        unsafe = scope["type"] == "websocket" or (scope["type"] == "http" and scope["method"] in UNSAFE)
        if not unsafe or not self._cross_site(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _send_problem(send, 403, "cross_site", "This request came from another web site and changes data "
                            "here, so it was refused. Use convscope's own pages (or a program without a browser).")

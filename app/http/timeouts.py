"""Time limits on slow clients: a connection must send its request headers within ``header_timeout_s``
(uvicorn only times connections out between requests), and a request body must arrive within
``body_timeout_s`` (408 otherwise). Idle keep-alive connections and the cap on connections are uvicorn's own
settings (``timeout_keep_alive``, ``limit_concurrency``), set by ``convscope serve``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.http.limits import ASGIApp, Message, Receive, Scope, Send, _send_problem


def header_timeout_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose request headers have not all arrived within
    ``header_timeout_s`` of its opening or of the end of its previous response."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport is not None and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


class BodyTimeout:
    """408 when a request's body has not fully arrived within ``seconds`` of its first read; the app then
    sees the client as gone, and whatever it answers after the 408 is dropped."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        started = answered = False

        async def timed_receive() -> Message:
            nonlocal deadline, answered
            if answered:
                return {"type": "http.disconnect"}
            if deadline is None:
                deadline = time.monotonic() + self.seconds
            try:
                return await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                if not started:
                    answered = True
                    await _send_problem(send, 408, "body_timeout", f"The request body did not arrive within "
                                        f"{self.seconds:g} s. Check the connection and send it again.")
                return {"type": "http.disconnect"}

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        await self.app(scope, timed_receive, tracked_send)

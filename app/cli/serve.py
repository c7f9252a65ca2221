"""``convscope serve``: start the web app."""

from __future__ import annotations

import argparse

from app.runtime.tuning import limit_malloc_arenas


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    import uvicorn

    limit_malloc_arenas()

    from app.config import Settings
    from app.http.security import default_hosts
    from app.http.timeouts import header_timeout_protocol
    from app.main import create_app

    settings = Settings()
    if not settings.allowed_hosts:
        settings = settings.model_copy(update={"allowed_hosts": default_hosts(a.host)})
    app = create_app(settings)
    uvicorn.run(app, host=a.host, port=a.port, log_level="info", access_log=settings.access_log,
                http=header_timeout_protocol(settings.header_timeout_s), timeout_keep_alive=int(settings.keepalive_timeout_s),
                limit_concurrency=settings.max_connections, timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
    return 0

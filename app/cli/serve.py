"""``convscope serve``: start the web app, in one process or in ``--workers N`` uvicorn worker processes.

Several workers share the database (jobs, their queue, uploads' metadata: SQLite in the data folder, or
PostgreSQL with ``CONVSCOPE_DATABASE_URL``) and the blob folder; each loads its own models and caches, and
gets an equal share of the cores for torch (``CONVSCOPE_TORCH_THREADS``, one OpenMP team each), so that N
workers do not oversubscribe the machine. uvicorn starts each worker from :func:`make_app` (an app factory)
and replaces a worker that dies; its jobs are taken over by a live worker once their lease runs out.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from app.runtime.tuning import limit_malloc_arenas


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1, help="worker processes (they share the database and the "
                   "blob folder; each has its own models, caches and share of the cores)")
    s.set_defaults(func=run)


def split_cores(workers: int, cores: int | None = None) -> int:
    """Intra-op threads per worker: the cores shared out, at least one each."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def make_app() -> Any:
    """The app of one worker process (uvicorn's app factory); its settings come from the environment
    that :func:`run` prepared."""
    limit_malloc_arenas()
    from app.config import Settings
    from app.main import create_app

    return create_app(Settings())


def __getattr__(name: str) -> Any:
    """``HeaderTimeoutProtocol``: the HTTP protocol of the workers, by import path (it crosses process starts)."""
    if name == "HeaderTimeoutProtocol":
        from app.config import Settings
        from app.http.timeouts import header_timeout_protocol

        return header_timeout_protocol(Settings().header_timeout_s)
    raise AttributeError(name)


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
    common: dict[str, Any] = dict(host=a.host, port=a.port, log_level="info", access_log=settings.access_log,
                                  timeout_keep_alive=int(settings.keepalive_timeout_s),
                                  limit_concurrency=settings.max_connections,
                                  timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
    if a.workers <= 1:
        uvicorn.run(create_app(settings), http=header_timeout_protocol(settings.header_timeout_s), **common)
        return 0
    # The workers read their settings from the environment: the same ones, plus their share of the cores.
    import json

    os.environ["CONVSCOPE_WORKERS"] = str(a.workers)
    os.environ.setdefault("CONVSCOPE_ALLOWED_HOSTS", json.dumps(settings.allowed_hosts))
    threads = split_cores(a.workers)
    os.environ.setdefault("CONVSCOPE_TORCH_THREADS", str(threads))
    os.environ.setdefault("CONVSCOPE_INFERENCE_CONCURRENCY", str(max(1, min(4, threads))))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    uvicorn.run("app.cli.serve:make_app", factory=True, workers=a.workers, http="app.cli.serve:HeaderTimeoutProtocol",
                **common)
    return 0

"""Issue #7 features, plugged in by :func:`app.routes_ext.include`: live camera, compare, checkpoint
timeline, export, privacy (delete, retention).

:func:`include` adds the routers and wraps the app's lifespan so that, once the engine exists, its
zoo also serves training snapshots (``model=lenet@epoch-003``) and the retention task runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI


def include(app: FastAPI) -> None:
    from app.routes import compare, export, live, privacy, timeline

    app.include_router(live.pages)
    app.include_router(compare.api)
    app.include_router(compare.pages)
    app.include_router(timeline.api)
    app.include_router(timeline.pages)
    app.include_router(export.api)
    app.include_router(privacy.pages)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[object]:
        async with inner(a) as state:
            from app import privacy as retention
            from app.snapshots import snapshot_zoo

            engine = a.state.engine
            snapshot_zoo(engine)
            hours = float(engine.settings.retention_hours)
            task = asyncio.create_task(retention.retention_loop(engine, hours)) if hours > 0 else None
            try:
                yield state
            finally:
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError, Exception):
                        await task

    app.router.lifespan_context = lifespan

"""The app's only start-up/shut-down hook: process tuning, the zoo, the services, background tasks (the
retention loop; what a fresh install builds at its first start)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI

from app import __version__, firststart
from app.config import Settings
from app.core.zoo import Zoo, discover
from app.features.privacy.service import retention_loop
from app.runtime import compute
from app.runtime.gcwatch import GcWatch
from app.services import Services
from app.store.database import Store

log = logging.getLogger("convscope")


def _release_free_heap() -> None:
    """Hand the heap memory that loading left free back to the system (glibc's malloc_trim).

    Loading and checking the traced passes runs each model on a few batches; with the mmap threshold
    of ``convscope serve`` that memory would stay in the heap once freed. Elsewhere (musl, macOS) it
    does nothing."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _freeze_loaded_objects() -> None:
    """Move every object alive after start-up out of the garbage collector's generations (gc.freeze).

    The models, their traced graphs and their metadata live as long as the process; without this the
    collector's occasional full collection walks them all while every thread waits for the GIL.
    Collecting first frees what loading left in reference cycles, which freezing would keep forever."""
    gc.collect()
    gc.freeze()


def _load_zoo(settings: Settings) -> Zoo:
    models_dir = settings.models_dir
    ours = [p.name for p in models_dir.iterdir() if (p / "card.json").exists()] if models_dir.is_dir() else []
    return Zoo.load(discover(models_dir, settings.torchvision_models, effnet=settings.serve_efficientnet), strict=ours)


def make_lifespan(settings: Settings, zoo: Zoo | None = None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan of an app serving ``settings``; ``zoo`` may be given (tests), else it is loaded here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One thread (the lead) runs torch on several intra-op threads, the others on one each:
        # a second OpenMP team in the process slows every pass down (see app.runtime.compute).
        compute.setup(settings.torch_threads)
        # Forward passes and encoders give up the GIL inside each C call and must take it back
        # after: with the default 5 ms switch interval a busy event loop keeps them waiting.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        pool = compute.install_executor(settings.worker_threads)
        the_zoo = zoo or await compute.run_async(lambda: _load_zoo(settings), threads=settings.torch_threads)
        store = Store(settings.data_dir, settings.database_url)
        services = Services.build(settings, the_zoo, store)
        app.state.services = services
        _release_free_heap()
        if settings.gc_freeze:
            _freeze_loaded_objects()
        hours = float(settings.retention_hours)
        retention = asyncio.create_task(retention_loop(services.engine, hours)) if hours > 0 else None
        firststart.start(services)  # a fresh install's indexes and pictures, queued in the low-priority lane
        log.info("convscope %s serving %s", __version__, ", ".join(the_zoo.names()))
        try:
            with GcWatch() as services.engine.gc_watch:
                yield
        finally:
            if retention is not None:
                retention.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await retention
            await services.close()
            store.close()
            sys.setswitchinterval(switch)
            pool.shutdown(wait=False)
            if settings.gc_freeze:
                gc.unfreeze()  # collectable again (a test process starts many apps)

    return lifespan

"""Blocking work (decoding, encoding, forward passes, store I/O) off the event loop.

``run_blocking`` hands a call to the event loop's default executor, a thread pool that the app
sizes to ``worker_threads`` at start-up. It costs the event loop ~17 us a call against ~40 us for
``starlette.concurrency.run_in_threadpool`` (anyio's worker threads, cancel scopes and capacity
limiter), which mattered on the hot paths: several hand-offs per request under load. Context
variables are not carried over (nothing in the app uses them).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread; the caller awaits its result (or exception)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def install_executor(workers: int) -> ThreadPoolExecutor:
    """Give the running loop a default executor of ``workers`` threads (returned, to shut down)."""
    from app.compute import single_threaded  # workers never open OpenMP teams (see app.compute)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convscope-worker", initializer=single_threaded)
    asyncio.get_running_loop().set_default_executor(pool)
    return pool

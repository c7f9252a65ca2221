"""Blocking work (decoding, encoding, forward passes, store I/O) off the event loop.

``run_blocking`` hands a call to the event loop's default executor, a thread pool that the app
sizes to ``worker_threads`` at start-up (:func:`app.runtime.compute.install_executor`). It is
cheaper for the event loop than ``starlette.concurrency.run_in_threadpool`` (no anyio cancel scopes
or capacity limiter), which matters on the hot paths. Context variables are not carried over.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_blocking(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread; the caller awaits its result (or exception)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

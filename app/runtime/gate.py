"""Bounded concurrency for model work: a request waits briefly for a slot, then gets a 503."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from app.runtime import compute

T = TypeVar("T")


class Overloaded(RuntimeError):
    """Every inference slot stayed busy for the whole wait; the client should retry later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"The server is busy; retry in {retry_after} s.")
        self.retry_after = retry_after


class Gate:
    """At most ``limit`` model calls at once; each caller waits at most ``wait_s`` for a slot."""

    def __init__(self, limit: int, wait_s: float, threads: int = 1) -> None:
        self.limit = max(1, limit)
        self.threads = max(1, threads)  # intra-op threads shared out between the calls running
        self.wait_s = wait_s
        self._sem: asyncio.Semaphore | None = None
        self.waiting = 0
        self.busy = 0
        self.rejected = 0
        self.last_used = 0.0  # time.monotonic() when a call last ended (low-priority jobs wait for quiet)

    def _semaphore(self) -> asyncio.Semaphore:
        if self._sem is None:  # created lazily inside the running loop
            self._sem = asyncio.Semaphore(self.limit)
        return self._sem

    async def acquire(self) -> None:
        """Wait (without a time limit) for a slot; pair with :meth:`release`. For the micro-batcher,
        whose queued requests keep their own deadlines."""
        sem = self._semaphore()
        self.waiting += 1
        try:
            await sem.acquire()
        finally:
            self.waiting -= 1
        self.busy += 1

    def release(self) -> None:
        self.busy -= 1
        self.last_used = time.monotonic()
        self._semaphore().release()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in a worker thread once a slot is free, or raise :class:`Overloaded`; a call
        that runs alone gets the lead thread's intra-op threads (:mod:`app.runtime.compute`) when it is free."""
        sem = self._semaphore()
        self.waiting += 1
        try:
            await asyncio.wait_for(sem.acquire(), timeout=self.wait_s)
        except TimeoutError:
            self.rejected += 1
            raise Overloaded(retry_after=max(1, round(self.wait_s / 2))) from None
        finally:
            self.waiting -= 1
        self.busy += 1
        try:
            return await compute.run_async(fn, *args, threads=self.threads // self.busy)
        finally:
            self.busy -= 1
            self.last_used = time.monotonic()
            sem.release()

"""Micro-batching: concurrent requests for the same model share one forward pass.

Requests wait at most ``max_wait_s`` for companions (or until ``max_batch`` are queued); the batch
then runs through the :class:`~app.gate.Gate`, so the concurrency limit still holds. A full queue
answers at once with :class:`~app.gate.Overloaded` (503 + Retry-After) instead of growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.gate import Gate, Overloaded


@dataclass
class _Item:
    x: torch.Tensor
    fut: asyncio.Future[object] = field(repr=False)


class MicroBatcher:
    """One queue per key (model + what to capture); ``run(key, x)`` returns ``fn(batch)[i]``."""

    def __init__(self, gate: Gate, *, max_batch: int = 16, max_wait_s: float = 0.004, max_queue: int = 128) -> None:
        self.gate = gate
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._fns: dict[str, Callable[[torch.Tensor], list[object]]] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    async def run(self, key: str, fn: Callable[[torch.Tensor], list[object]], x: torch.Tensor) -> object:
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
            self._fns[key] = fn
            self._workers[key] = asyncio.create_task(self._worker(key, q))
        if q.qsize() >= self.max_queue:
            raise Overloaded(retry_after=1)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await q.put(_Item(x, fut))
        return await fut

    async def _worker(self, key: str, q: asyncio.Queue[_Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await q.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if not q.empty():
                    batch.append(q.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(q.get(), left))
                except TimeoutError:
                    break
            task = asyncio.create_task(self._process(self._fns[key], batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _process(self, fn: Callable[[torch.Tensor], list[object]], batch: list[_Item]) -> None:
        live = [b for b in batch if not b.fut.done()]
        if not live:
            return
        try:
            results = await self.gate.run(fn, torch.cat([b.x for b in live]))
        except Exception as e:  # Overloaded, or a model error: every waiter hears it
            for b in live:
                if not b.fut.done():
                    b.fut.set_exception(e)
            return
        self.batches += 1
        self.items += len(live)
        for b, r in zip(live, results):
            if not b.fut.done():
                b.fut.set_result(r)

    async def close(self) -> None:
        for t in list(self._workers.values()) + list(self._inflight):
            t.cancel()
        for t in list(self._workers.values()) + list(self._inflight):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

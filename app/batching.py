"""Micro-batching: concurrent requests for the same model share one forward pass.

Continuous batching, as in the dynamic batchers of serving systems with a zero queue delay: a
request that finds a free inference slot runs at once (no waiting for companions, so a lone
request pays no batching latency); while a batch is computing, requests queue up, and when it is
done the next batch takes all that are waiting (up to ``max_batch``). One batch per key is in
flight at a time: the passes of one model run one after another anyway (its lock), and a second
batch started early would only be a smaller one. The slots are the
:class:`~app.gate.Gate`'s, so the concurrency limit still holds. A request that has not started
within the gate's wait gets :class:`~app.gate.Overloaded` (503 + Retry-After), and a full queue
answers so at once instead of growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.blocking import run_blocking
from app.gate import Gate, Overloaded


@dataclass
class _Item:
    x: torch.Tensor
    fut: asyncio.Future[object] = field(repr=False)
    started: bool = False


class MicroBatcher:
    """One queue per key (model + what to capture); ``run(key, fn, x)`` returns ``fn(batch)[i]``."""

    def __init__(self, gate: Gate, *, max_batch: int = 16, max_queue: int = 128) -> None:
        self.gate = gate
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._fns: dict[str, Callable[[torch.Tensor], list[object]]] = {}
        self._limits: dict[str, int] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    async def run(self, key: str, fn: Callable[[torch.Tensor], list[object]], x: torch.Tensor,
                  max_batch: int | None = None) -> object:
        """``fn(batch)[i]`` for this ``x``; ``max_batch`` (fixed at a key's first call) caps that key's batches."""
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
            self._fns[key] = fn
            self._limits[key] = max(1, min(max_batch or self.max_batch, self.max_batch))
            self._workers[key] = asyncio.create_task(self._worker(key, q))
        if q.qsize() >= self.max_queue:
            self.gate.rejected += 1
            raise Overloaded(retry_after=1)
        item = _Item(x, asyncio.get_running_loop().create_future())
        q.put_nowait(item)
        try:
            return await asyncio.wait_for(asyncio.shield(item.fut), self.gate.wait_s)
        except TimeoutError:
            if item.started:  # already computing: its answer is near, keep it
                return await item.fut
            item.fut.cancel()  # the worker skips it
            self.gate.rejected += 1
            raise Overloaded(retry_after=max(1, round(self.gate.wait_s / 2))) from None

    async def _worker(self, key: str, q: asyncio.Queue[_Item]) -> None:
        previous: asyncio.Task[None] | None = None
        while True:
            batch = [await q.get()]
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # the queue grows meanwhile: a fuller next batch
            await self.gate.acquire()
            await asyncio.sleep(0)  # let requests that arrived in the same instant join
            while len(batch) < self._limits[key] and not q.empty():
                batch.append(q.get_nowait())
            live = [b for b in batch if not b.fut.done()]
            if not live:
                self.gate.release()
                continue
            for b in live:
                b.started = True
            task = previous = asyncio.create_task(self._process(self._fns[key], live))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _process(self, fn: Callable[[torch.Tensor], list[object]], live: list[_Item]) -> None:
        try:
            results = await run_blocking(fn, torch.cat([b.x for b in live]))
        except Exception as e:  # a model error: every waiter hears it
            for b in live:
                if not b.fut.done():
                    b.fut.set_exception(e)
            return
        finally:
            self.gate.release()
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

"""Micro-batching: concurrent requests for the same model share one forward pass.

Continuous batching, as in the dynamic batchers of serving systems with a zero queue delay: a
request that finds a free inference slot runs at once (no waiting for companions, so a lone
request pays no batching latency); while the slots are computing, requests queue up, and when one
is done the next batch takes all that are waiting (up to ``max_batch``). The slots are the
:class:`~app.runtime.gate.Gate`'s, so the concurrency limit still holds; batches of one model may run at
once (see :class:`~app.core.zoo.ModelLock`). The intra-op threads (``threads``) are shared out
between the batches running: a lone batch uses them all on the process's lead thread
(:mod:`app.runtime.compute`), two running batches one each on two cores (on a CPU, two one-thread
passes side by side outrun one two-thread pass of both batches). A request that has not started within the gate's wait gets
:class:`~app.runtime.gate.Overloaded` (503 + Retry-After), and a full queue answers so at once instead of
growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from app.runtime import compute
from app.runtime.gate import Gate, Overloaded


@dataclass
class _Item:
    x: torch.Tensor | Callable[[], torch.Tensor]
    fut: asyncio.Future[object] = field(repr=False)
    then: Callable[[object], object] | None = field(default=None, repr=False)
    started: bool = False


class MicroBatcher:
    """One queue per key (model + what to capture); ``run(key, fn, x)`` returns ``fn(batch)[i]``."""

    def __init__(self, gate: Gate, *, max_batch: int = 16, max_queue: int = 128, threads: int = 1) -> None:
        self.gate = gate
        self.threads = max(1, threads)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._fns: dict[str, Callable[[torch.Tensor], list[object]]] = {}
        self._limits: dict[str, int] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    async def run(self, key: str, fn: Callable[[torch.Tensor], list[object]], x: torch.Tensor | Callable[[], torch.Tensor],
                  max_batch: int | None = None, then: Callable[[object], object] | None = None) -> object:
        """``fn(batch)[i]`` for this ``x``; ``max_batch`` (fixed at a key's first call) caps that key's batches.

        ``x`` may be a function that makes the input (decoding, preprocessing): it is called in the
        thread that computes the batch (a lone request's whole work in one hand-off); if it raises,
        only its own request fails.

        With ``then``, ``(r, then(r))`` for that ``r``: ``then`` runs in the thread that computed the
        batch, right after it (one hand-off less than calling it afterwards; a ``then`` that raises
        fails only its own request)."""
        q = self._queues.get(key)
        if q is None:
            q = self._queues[key] = asyncio.Queue()
            self._fns[key] = fn
            self._limits[key] = max(1, min(max_batch or self.max_batch, self.max_batch))
            self._workers[key] = asyncio.create_task(self._worker(key, q))
        if q.qsize() >= self.max_queue:
            self.gate.rejected += 1
            raise Overloaded(retry_after=1)
        item = _Item(x, asyncio.get_running_loop().create_future(), then)
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
        while True:
            batch = [await q.get()]
            await self.gate.acquire()  # while every slot computes, the queue grows: a fuller batch
            await asyncio.sleep(0)  # let requests that arrived in the same instant join
            while len(batch) < self._limits[key] and not q.empty():
                batch.append(q.get_nowait())
            live = [b for b in batch if not b.fut.done()]
            if not live:
                self.gate.release()
                continue
            for b in live:
                b.started = True
            threads = max(1, self.threads // max(1, self.gate.busy))
            task = asyncio.create_task(self._process(self._fns[key], live, threads))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _process(self, fn: Callable[[torch.Tensor], list[object]], live: list[_Item], threads: int) -> None:
        try:
            results = await compute.run_async(_batch_then, fn, [b.x for b in live], [b.then for b in live],
                                              threads=threads)
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
                if isinstance(r, _Failed):
                    b.fut.set_exception(r.error)
                else:
                    b.fut.set_result(r)

    async def close(self) -> None:
        for t in list(self._workers.values()) + list(self._inflight):
            t.cancel()
        for t in list(self._workers.values()) + list(self._inflight):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass


@dataclass
class _Failed:
    error: Exception


def _batch_then(fn: Callable[[torch.Tensor], list[object]], xs: list[torch.Tensor | Callable[[], torch.Tensor]],
                thens: list[Callable[[object], object] | None]) -> list[object]:
    """``fn`` of the inputs (made here where need be), each result followed by its item's ``then``
    (if any), all in this same thread; an item whose input or ``then`` raises gets its error alone."""
    made: list[torch.Tensor | _Failed] = []
    for x in xs:
        if isinstance(x, torch.Tensor):
            made.append(x)
            continue
        try:
            made.append(x())
        except Exception as e:  # noqa: BLE001 - this request's own failure (damaged file ...)
            made.append(_Failed(e))
    good = [x for x in made if isinstance(x, torch.Tensor)]
    results = iter(fn(torch.cat(good)) if good else [])
    out: list[object] = []
    for x, then in zip(made, thens):
        if isinstance(x, _Failed):
            out.append(x)
            continue
        r = next(results)
        if then is None:
            out.append(r)
            continue
        try:
            out.append((r, then(r)))
        except Exception as e:  # noqa: BLE001 - this request's own failure, handed to it alone
            out.append(_Failed(e))
    return out

"""Which thread runs torch's multi-threaded work: one lead thread per process, the others one thread each.

PyTorch's CPU kernels parallelise with OpenMP (GNU libgomp in the torch wheels). libgomp gives every
thread that opens a parallel region a team of helper threads of its own, kept until that thread
exits. Helpers spin for a while after each region, so the next region of a pass (a network has
hundreds) starts at once; but as soon as the process holds more such threads than there are cores,
libgomp shortens the spin and every region waits for sleeping helpers to wake up, for as long as
that thread lives: every pass of the server then runs several times slower (figures in the history
of this module's commits).

So exactly one thread of the process, the *lead*, runs operations with more than one intra-op
thread; every other thread runs them with one (no team). :func:`setup` starts the lead and makes
one thread the default for the others; :func:`run_async` and :func:`run` send work to the lead
when it is free and otherwise run it on one thread (two single-threaded passes side by side on two
cores are the best use of the machine under load anyway).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

from app.runtime.blocking import run_blocking

T = TypeVar("T")


def set_threads(threads: int) -> None:
    """Give the calling thread ``threads`` intra-op threads (the setting is per thread)."""
    # get_num_threads() first: a thread's first torch call initialises its count from the
    # process-wide default, which would otherwise undo this setting later.
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def single_threaded() -> None:
    """Initialiser for worker pools: one intra-op thread in this thread."""
    set_threads(1)


class Lead:
    """The one thread that may run torch operations on several intra-op threads."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="convscope-lead")
        self._free = threading.Lock()
        self._ident = self._pool.submit(threading.get_ident).result()

    def on_lead(self) -> bool:
        return threading.get_ident() == self._ident

    def _call(self, threads: int, fn: Callable[..., T], *args: object) -> T:
        set_threads(threads)
        try:
            return fn(*args)
        finally:
            self._free.release()

    def _submit(self, threads: int, fn: Callable[..., T], *args: object) -> Future[T] | None:
        """``fn(*args)`` on the lead with ``threads`` intra-op threads, if the lead is free; else None."""
        if not self._free.acquire(blocking=False):
            return None
        try:
            return self._pool.submit(self._call, threads, fn, *args)
        except BaseException:
            self._free.release()
            raise

    def try_submit(self, threads: int, fn: Callable[..., T], *args: object) -> asyncio.Future[T] | None:
        """:meth:`_submit` for the event loop."""
        fut = self._submit(threads, fn, *args)
        return None if fut is None else asyncio.wrap_future(fut)

    def run(self, fn: Callable[..., T], *args: object, threads: int | None = None) -> T:
        """``fn(*args)`` on the lead when it is free (blocking the caller), else here on one thread."""
        n = self.threads if threads is None else threads
        if not self.on_lead():
            fut = self._submit(n, fn, *args) if n > 1 else None
            if fut is not None:
                return fut.result()
            set_threads(1)
        return fn(*args)


_lead: Lead | None = None
_lead_lock = threading.Lock()


def lead(threads: int | None = None) -> Lead:
    """The process's lead thread, started on first use (``threads``: its default intra-op count)."""
    global _lead
    with _lead_lock:
        if _lead is None:
            _lead = Lead(threads or torch.get_num_threads())
        elif threads:
            _lead.threads = max(1, threads)
        return _lead


def setup(threads: int) -> Lead:
    """Start the lead with ``threads`` intra-op threads and make one thread the default elsewhere,
    the calling thread (the event loop's, in the server) included. Idempotent."""
    ld = lead(threads)
    # torch keeps one process-wide count that a thread takes at its first operation, and every
    # set_num_threads() call changes it: set the lead's count first, then this thread's, which puts
    # the default back to one for threads that never set theirs.
    ld._pool.submit(set_threads, ld.threads).result()
    torch.get_num_threads()  # this thread's count is initialised before it is set (see set_threads)
    torch.set_num_threads(1)  # unconditionally: it also puts the process default back to one
    return ld


async def run_async(fn: Callable[..., T], *args: object, threads: int) -> T:
    """``fn(*args)`` off the event loop: on the lead with ``threads`` intra-op threads when more than
    one is asked for and the lead is free, else on a worker of the loop's pool with one."""
    if threads > 1:
        fut = lead().try_submit(threads, fn, *args)
        if fut is not None:
            return await fut
    return await run_blocking(_one_thread, fn, *args)


def _one_thread(fn: Callable[..., T], *args: object) -> T:
    set_threads(1)
    return fn(*args)


def install_executor(workers: int) -> ThreadPoolExecutor:
    """Give the running loop a default executor of ``workers`` threads (returned, to shut down); its
    threads never open OpenMP teams of their own (:func:`single_threaded`)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convscope-worker", initializer=single_threaded)
    asyncio.get_running_loop().set_default_executor(pool)
    return pool

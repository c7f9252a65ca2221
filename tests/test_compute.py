"""One thread of the process (the lead) runs torch on several intra-op threads; the others on one."""

from __future__ import annotations

import asyncio
import threading

import torch
from test_batching import run_async  # its own thread: the session's Playwright keeps a loop in this one

from app.runtime import compute
from app.runtime.blocking import run_blocking
from app.runtime.compute import install_executor


def _where() -> tuple[str, int]:
    torch.ones(64).sum()  # a torch call: the thread takes its intra-op count now at the latest
    return threading.current_thread().name, torch.get_num_threads()


def test_setup_gives_the_lead_every_thread_and_the_rest_one():
    before = torch.get_num_threads()
    try:
        ld = compute.setup(2)
        assert ld._pool.submit(_where).result() == ("convscope-lead_0", 2)
        assert torch.get_num_threads() == 1  # the calling thread (the event loop's, in the server)
        seen: list[tuple[str, int]] = []
        t = threading.Thread(target=lambda: seen.append(_where()), name="fresh")
        t.start()
        t.join()
        assert seen == [("fresh", 1)], "a thread that never set its count starts from one"

        async def go() -> list[tuple[str, int]]:
            pool = install_executor(2)
            try:
                return [await run_blocking(_where),  # the loop's workers: one thread each
                        await compute.run_async(_where, threads=2),  # alone: on the lead
                        await compute.run_async(_where, threads=1)]
            finally:
                pool.shutdown()

        worker, alone, single = run_async(go)
        assert worker[0].startswith("convscope-worker") and worker[1] == 1
        assert alone == ("convscope-lead_0", 2)
        assert single[0].startswith("convscope-worker") and single[1] == 1
    finally:
        torch.set_num_threads(before)


def test_work_that_finds_the_lead_busy_runs_elsewhere_on_one_thread():
    ld = compute.lead(2)
    entered, release = threading.Event(), threading.Event()

    def hold() -> str:
        entered.set()
        release.wait(5)
        return threading.current_thread().name

    async def go() -> tuple[str, tuple[str, int], tuple[str, int]]:
        pool = install_executor(2)
        try:
            first = asyncio.ensure_future(compute.run_async(hold, threads=2))
            while not entered.is_set():
                await asyncio.sleep(0.001)
            other = await compute.run_async(_where, threads=2)  # the lead is busy
            # a job thread (blocking API) also runs here, on its own single thread
            inline = await asyncio.get_running_loop().run_in_executor(None, lambda: ld.run(_where))
            release.set()
            return await first, other, inline
        finally:
            release.set()
            pool.shutdown()

    held, other, inline = run_async(go)
    assert held == "convscope-lead_0"
    assert other[0].startswith("convscope-worker") and other[1] == 1
    assert inline[0].startswith("convscope-worker") and inline[1] == 1
    assert ld.run(_where) == ("convscope-lead_0", 2)  # free again


def test_setup_again_puts_the_process_default_back_to_one_after_the_lead_changed_it():
    """torch's process default follows every set_num_threads() call: after the lead used another
    count, set-up (here from a thread already at one) must still leave one for fresh threads."""
    before = torch.get_num_threads()
    try:
        ld = compute.setup(2)
        assert ld.run(_where, threads=3) == ("convscope-lead_0", 3)  # the default is three now
        compute.setup(2)
        seen: list[tuple[str, int]] = []
        t = threading.Thread(target=lambda: seen.append(_where()), name="fresh")
        t.start()
        t.join()
        assert seen == [("fresh", 1)]
        assert ld._pool.submit(_where).result() == ("convscope-lead_0", 2)
    finally:
        torch.set_num_threads(before)

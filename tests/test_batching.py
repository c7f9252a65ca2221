"""Micro-batching gives the same answers as one-by-one inference; overload is answered with 503."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from torch import nn

from app.config import Settings
from app.core.inference import analyze
from app.core.zoo import ModelSpec, Zoo
from app.features.analysis.service import Engine
from app.main import create_app
from app.store.database import Store
from conftest import CIFAR_CLASSES, CIFAR_PRE, make_photo


def run_async(make_coro):  # type: ignore[no-untyped-def]
    """asyncio.run in its own thread: the session's Playwright driver keeps a loop in the main thread."""
    import threading

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make_coro())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def test_concurrent_predictions_are_batched_and_exact(tmp_path: Path, zoo: Zoo):
    engine = Engine(Settings(data_dir=tmp_path), zoo, Store(tmp_path))
    recs = [engine.ingest(make_photo(64, 48, seed=i), f"{i}.jpg").record for i in range(12)]
    lm = zoo.get("cifarnet")

    async def go() -> list[torch.Tensor]:
        try:
            return list(await asyncio.gather(*(engine.predictions(lm, r) for r in recs)))
        finally:
            await engine.close()

    got = run_async(go)
    assert engine.predict_batcher.batches < len(recs), "concurrent requests shared forward passes"
    assert engine.predict_batcher.items == len(recs)
    st = engine.stats()["predictions"]
    assert st["items"] == len(recs) and st["mean_batch"] == round(len(recs) / engine.predict_batcher.batches, 2)
    for r, p in zip(recs, got):
        ref = analyze(lm, engine.picture(r)).probabilities
        torch.testing.assert_close(p, ref, rtol=1e-4, atol=1e-6)


class Slow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled():  # a served forward (not the start-up shape probe)
            time.sleep(0.3)
        return self.fc(self.flat(self.pool(self.conv(x))))


def test_overload_gets_503_with_retry_after_and_the_server_recovers(tmp_path: Path):
    slow = ModelSpec(name="slow", title="slow", source="test", preprocess=CIFAR_PRE, categories=CIFAR_CLASSES,
                     load=Slow)
    s = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "none", inference_concurrency=1,
                 inference_wait_s=0.05, default_model="slow")
    app = create_app(s, zoo=Zoo.load([slow]))

    async def go() -> tuple[list[httpx.Response], httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
                ids = []
                for i in range(6):
                    r = await c.post("/api/images", files={"file": (f"{i}.jpg", make_photo(seed=i), "image/jpeg")})
                    ids.append(r.json()["id"])
                engine = app.state.services.engine
                engine.predict_batcher.max_batch = 1  # one image per forward: the queue must overflow
                rs = await asyncio.gather(*(c.get(f"/api/images/{i}/predictions") for i in ids))
                await asyncio.sleep(0.5)
                after = await c.get(f"/api/images/{ids[0]}/predictions")
                return list(rs), after

    rs, after = run_async(go)
    codes = sorted(r.status_code for r in rs)
    assert 200 in codes and 503 in codes, codes
    for r in rs:
        if r.status_code == 503:
            assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
    assert after.status_code == 200


def test_concurrent_passes_on_one_model_do_not_mix_hooked_outputs(zoo: Zoo):
    """Regression: hooks live on the shared module; without the model lock a hooked pass of a batch of 3
    picked up another thread's batch-of-1 outputs (IndexError -> 500 under load)."""
    import threading

    from app.core.inference import analyze_batch, predict_batch

    lm = zoo.get("cifarnet")
    errors: list[BaseException] = []

    def worker(fn, n: int) -> None:
        try:
            for _ in range(15):
                out = fn(lm, torch.randn(n, 3, 32, 32))
                assert len(out) == n
                if fn is analyze_batch:
                    assert all(a.activations["stem"].shape == (32, 28, 28) for a in out)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(analyze_batch, 3)),
               threading.Thread(target=worker, args=(predict_batch, 1)),
               threading.Thread(target=worker, args=(analyze_batch, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _first_batch_held(op: Callable[[float], float]) -> tuple[Callable[[torch.Tensor], list[object]],
                                                              threading.Event, list[int]]:
    """A batch function applying ``op`` per item that records batch sizes; the first batch waits
    until the returned event is set."""
    release = threading.Event()
    sizes: list[int] = []

    def fn(b: torch.Tensor) -> list[object]:
        sizes.append(len(b))
        if len(sizes) == 1:
            release.wait(5)
        return [op(float(v)) for v in b[:, 0]]

    return fn, release, sizes


def test_continuous_batching_runs_a_lone_request_alone_and_merges_the_queue():
    """A request that finds a free slot runs by itself at once; those that queue behind a busy slot
    become one batch; a queued request whose deadline passes gets Overloaded and is never computed."""
    from app.runtime.batching import MicroBatcher
    from app.runtime.gate import Gate, Overloaded

    fn, release, sizes = _first_batch_held(lambda v: v * 2)

    async def go() -> tuple[list[object], list[int], list[object]]:
        batcher = MicroBatcher(Gate(1, 5.0), max_batch=16)
        try:
            first = asyncio.create_task(batcher.run("k", fn, torch.tensor([[1.0]])))
            while not sizes:  # the lone request started without waiting for company
                await asyncio.sleep(0.001)
            rest = [asyncio.create_task(batcher.run("k", fn, torch.tensor([[float(i)]]))) for i in range(2, 7)]
            await asyncio.sleep(0.05)
            release.set()
            got = await asyncio.gather(first, *rest)
            merged = list(sizes)
            # deadline: a request queued behind a slot that stays busy past the gate's wait
            release.clear()
            sizes.clear()
            slow = MicroBatcher(Gate(1, 0.05), max_batch=1)
            blocker = asyncio.create_task(slow.run("k", fn, torch.tensor([[1.0]])))
            while not sizes:
                await asyncio.sleep(0.001)
            late: list[object] = []
            try:
                await slow.run("k", fn, torch.tensor([[9.0]]))
            except Overloaded as e:
                late.append(e)
            release.set()
            await blocker
            await asyncio.sleep(0.05)
            await slow.close()
            return got, merged, late
        finally:
            await batcher.close()

    got, merged, late = run_async(go)
    assert got == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert merged == [1, 5], "alone at once, then the five that queued as one batch"
    assert len(late) == 1 and late[0].retry_after >= 1
    assert sizes == [1], "the timed-out request was skipped, never computed"


def test_an_upload_keeps_its_picture_with_the_stored_pixels(tmp_path: Path, zoo: Zoo):
    """The picture an upload keeps in memory is pixel for pixel the stored PNG (read back by a new engine)."""
    import numpy as np

    store = Store(tmp_path)
    engine = Engine(Settings(data_dir=tmp_path), zoo, store)
    rec = engine.ingest(make_photo(300, 200, seed=7, fmt="PNG"), "a.png").record
    kept = engine.picture(rec)
    fresh = Engine(Settings(data_dir=tmp_path), zoo, store).picture(rec)
    assert kept.mode == fresh.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(fresh))


def test_batches_of_one_model_run_side_by_side_and_share_the_threads():
    """With two slots, the requests that queue while a batch computes go at once, as one batch, into
    the free slot (passes of one model may run together: the hooks see only their own thread); a
    lone batch gets every intra-op thread (on the lead thread), two batches running together one each."""
    from app.runtime.batching import MicroBatcher
    from app.runtime.gate import Gate

    release = threading.Event()
    sizes: list[int] = []
    threads: list[int] = []
    names: list[str] = []

    def fn(b: torch.Tensor) -> list[object]:
        sizes.append(len(b))
        threads.append(torch.get_num_threads())
        names.append(threading.current_thread().name)
        if len(sizes) == 1:
            release.wait(5)
        return [float(v) + 1 for v in b[:, 0]]

    async def go() -> list[object]:
        batcher = MicroBatcher(Gate(2, 5.0), max_batch=16, threads=2)
        try:
            first = asyncio.create_task(batcher.run("k", fn, torch.tensor([[0.0]])))
            while not sizes:
                await asyncio.sleep(0.001)
            rest = [asyncio.create_task(batcher.run("k", fn, torch.tensor([[float(i)]]))) for i in range(1, 6)]
            for _ in range(2000):
                if len(sizes) == 2:
                    break
                await asyncio.sleep(0.001)
            assert not release.is_set() and sizes == [1, 5], "the queued five ran while the first still computed"
            release.set()
            return list(await asyncio.gather(first, *rest))
        finally:
            await batcher.close()

    assert run_async(go) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert sizes == [1, 5] and threads == [2, 1]
    # only the process's lead thread opens OpenMP teams (app.runtime.compute); the other batch ran on a worker
    assert names[0].startswith("convscope-lead") and not names[1].startswith("convscope-lead")


def test_an_upload_keeps_the_default_models_input_so_a_later_prediction_decodes_nothing(tmp_path: Path, zoo: Zoo):
    engine = Engine(Settings(data_dir=tmp_path, default_model="cifarnet"), zoo, Store(tmp_path))
    recs = [engine.ingest(make_photo(64, 48, seed=40 + i), f"{i}.jpg").record for i in range(20)]
    lm = zoo.get("cifarnet")
    want = [analyze(lm, engine.picture(r)).probabilities for r in recs[:3]]  # pictures: decoded if need be
    decodes: list[str] = []
    real = engine.store.image_png
    engine.store.image_png = lambda rec: (decodes.append(rec.id), real(rec))[1]  # type: ignore[method-assign]
    for r in recs[:3]:  # no longer among the pictures kept in memory
        with engine._pic_lock:
            engine._pictures.pop(r.id, None)

    async def go() -> list[torch.Tensor]:
        try:
            return [await engine.predictions(lm, r) for r in recs[:3]]
        finally:
            await engine.close()

    got = run_async(go)
    assert decodes == [], "the kept inputs were used"
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert engine.stats()["inputs_kept"] == 20
    engine.forget(recs[0].id)
    assert engine.stats()["inputs_kept"] == 19


def test_the_gil_switch_interval_is_set_while_serving_and_restored_after(tmp_path: Path, zoo: Zoo):
    import sys

    from fastapi.testclient import TestClient

    before = sys.getswitchinterval()
    with TestClient(create_app(Settings(data_dir=tmp_path, gil_switch_interval_ms=0.7), zoo=zoo)) as c:
        assert c.get("/healthz").status_code == 200
        assert abs(sys.getswitchinterval() - 0.0007) < 1e-9
    assert sys.getswitchinterval() == before


def test_blocking_calls_run_in_the_apps_worker_threads_and_raise_there():
    from app.runtime.blocking import run_blocking
    from app.runtime.compute import install_executor

    def boom() -> None:
        raise ValueError("bad photo")

    async def go() -> tuple[set[str], str]:
        pool = install_executor(3)
        try:
            names = await asyncio.gather(*(run_blocking(lambda: (time.sleep(0.02), threading.current_thread().name)[1])
                                           for _ in range(6)))
            try:
                await run_blocking(boom)
            except ValueError as e:
                return set(names), str(e)
            return set(names), ""
        finally:
            pool.shutdown()

    names, err = run_async(go)
    assert names and all(n.startswith("convscope-worker") for n in names) and len(names) <= 3
    assert err == "bad photo"


def test_hooks_of_one_thread_leave_other_threads_passes_alone():
    """A pass that stops at a layer, or captures it, in one thread does not stop or record a plain pass
    of the same module running in another thread at the same time."""
    from app.core.probe import capture, forward_until

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(3, 4)
    want = net(x)
    inside, go_on = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    def other() -> None:
        inside.wait(5)
        got["plain"] = net(x)  # while the main thread's hooks are registered
        go_on.set()

    t = threading.Thread(target=other)
    t.start()
    with forward_until(net, "1") as run, capture(net, ["0", "2"]) as acts:
        inside.set()
        go_on.wait(5)
        assert acts == {}, "the other thread's pass was not captured"
        stopped = run(x)
    t.join()
    assert torch.equal(got["plain"], want)
    assert torch.equal(stopped, torch.relu(net[0](x))) and set(acts) == {"0"}


def test_model_lock_passes_share_it_and_a_change_waits_for_them():
    """Passes hold the lock together; an exclusive holder waits until they end, and passes that come
    while it waits queue behind it (it is not starved); its holder may pass too (re-entrant)."""
    from app.core.zoo import ModelLock

    lock = ModelLock()
    events: list[str] = []
    a_in, a_out = threading.Event(), threading.Event()

    def pass_a() -> None:
        with lock.shared():
            events.append("a in")
            a_in.set()
            a_out.wait(5)
            events.append("a out")

    def change() -> None:
        with lock.exclusive():
            events.append("change")
            with lock.shared(), lock.exclusive():
                events.append("change again")

    def pass_b() -> None:
        with lock.shared():
            events.append("b")

    ta = threading.Thread(target=pass_a)
    ta.start()
    a_in.wait(5)
    with lock.shared():  # a second pass at the same time
        events.append("main")
    tc = threading.Thread(target=change)
    tc.start()
    time.sleep(0.05)  # the change is waiting for pass a
    tb = threading.Thread(target=pass_b)
    tb.start()
    time.sleep(0.05)
    assert events == ["a in", "main"], "the change waits for pass a, pass b waits behind the change"
    a_out.set()
    for t in (ta, tc, tb):
        t.join(5)
    assert events == ["a in", "main", "a out", "change", "change again", "b"]


@pytest.mark.parametrize("size", [(160, 120), (640, 480)])
def test_a_damaged_stored_upload_is_never_decoded_into_use(tmp_path: Path, zoo: Zoo, size: tuple[int, int]):
    """The stored PNG's checksum is checked on every read from disk (beside the decoding for large
    files): one flipped byte raises StoreError and the picture is not kept."""
    from app.store.database import StoreError

    store = Store(tmp_path)
    engine = Engine(Settings(data_dir=tmp_path), zoo, store)
    rec = engine.ingest(make_photo(*size, seed=11, fmt="PNG"), "a.png").record
    engine.forget(rec.id)
    path = store._image_path(rec.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # a pixel byte: still a readable PNG
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        engine.picture(rec)
    assert engine.stats()["pictures_kept"] == 0


def test_inputs_and_then_are_made_in_the_batch_thread_and_a_failure_fails_only_its_request():
    from app.runtime.batching import MicroBatcher
    from app.runtime.gate import Gate

    computed_in: list[int] = []

    def fn(b: torch.Tensor) -> list[object]:
        computed_in.append(threading.get_ident())
        time.sleep(0.05)  # the later requests queue up and share the next batch
        return [float(v) for v in b[:, 0]]

    def then(r: object) -> tuple[int, object]:
        assert isinstance(r, float)
        if r == 2.0:
            raise ValueError("no JSON for this one")
        return threading.get_ident(), r * 10

    async def go() -> list[object]:
        batcher = MicroBatcher(Gate(1, 5.0), max_batch=8)
        try:
            def damaged() -> torch.Tensor:
                raise OSError("the stored file is damaged")

            inputs: list[object] = [torch.tensor([[0.0]]), lambda: torch.tensor([[1.0]]), torch.tensor([[2.0]]),
                                    torch.tensor([[3.0]]), damaged]  # made in the batch's thread, when functions
            return list(await asyncio.gather(*(batcher.run("k", fn, x, then=then) for x in inputs),  # type: ignore[arg-type]
                                             return_exceptions=True))
        finally:
            await batcher.close()

    got = run_async(go)
    assert isinstance(got[2], ValueError) and str(got[2]) == "no JSON for this one"
    assert isinstance(got[4], OSError) and "damaged" in str(got[4])
    for i in (0, 1, 3):
        r, (ident, tens) = got[i]  # type: ignore[misc]
        assert r == float(i) and tens == 10 * float(i) and ident in computed_in

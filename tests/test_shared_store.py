"""The store's database layer and the shared job queue, each test run against SQLite and against a real
PostgreSQL server (tests/postgres.py): uploads' metadata and cache entries, versioned migrations, jobs that
two workers (two queues with their own connections) share: one claims a job, the other sees its progress,
cancels it, and takes it over (resuming) when the first one's lease runs out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from postgres import pg_server, pg_url  # noqa: F401  (fixtures)

from app.jobs import Job, JobQueue, factory
from app.runtime.gate import Gate
from app.store.database import Store
from app.store.jobs_db import SqlJobStore
from app.store.sql import MIGRATIONS


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens a Store (a new connection each call, as another worker would) on SQLite or PostgreSQL."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(Store(tmp_path / "data", url))
        return opened[-1]

    yield open_
    for s in opened:
        s.close()


def test_uploads_and_cache_on_both_databases(open_store: Callable[[], Store]) -> None:
    store, other = open_store(), open_store()
    assert store.db.version() == MIGRATIONS[-1][0]
    assert store.db.migrate() == [], "a migrated database is left alone"
    sha = "ab" * 32
    rec, new = store.put_image(sha256=sha, png=b"png-bytes", width=3, height=2, original_size=(30, 20), fmt="PNG",
                               filename="cat.png")
    assert new and rec.created > 1e9
    again, new2 = store.put_image(sha256=sha, png=b"png-bytes", width=3, height=2, original_size=(30, 20), fmt="PNG",
                                  filename="cat.png")
    assert not new2 and again == rec
    got = other.get_image(rec.id)  # another worker reads it from the database
    assert got == rec and abs(got.created - rec.created) < 1e-6, "timestamps keep their precision"
    assert other.get_image_by_sha(sha) == rec and other.count_images() == 1 and other.list_images() == [rec]
    assert other.image_png(got) == b"png-bytes"
    store.cache_put("k1", b"one", rec.id)
    store.cache_put("k1", b"uno", rec.id)  # replaced
    store.cache_put("k2", b"two")
    assert other.cache_get("k1") == b"uno" and other.cache_present(["k1", "k2", "k3"]) == {"k1", "k2"}
    assert other.disk_usage()["database_bytes"] > 0
    assert other.delete_image(rec.id)
    assert store.cache_get("k1") is None and store.cache_get("k2") == b"two" and store.count_images() == 0


# -- the shared job queue ------------------------------------------------------------------------------


@factory("test-count")
def _count(services: Any, args: dict[str, Any]) -> Callable[[Job], None]:
    """Counts to ``n``, ``step_s`` apart, keeping a checkpoint file: a worker that takes the job over resumes."""
    ckpt = Path(args["checkpoint"])

    def work(job: Job) -> None:
        start = json.loads(ckpt.read_text())["done"] if ckpt.exists() else 0
        job.resumed_from = start
        job.progress(start, args["n"])
        for i in range(start, args["n"]):
            if job.cancel_requested:
                return
            time.sleep(args["step_s"])
            ckpt.write_text(json.dumps({"done": i + 1, "owner": job.owner}))
            job.progress(i + 1)
        job.message = "counted"

    return work


def _queue(store: Store, lease_s: float = 2.0) -> JobQueue:
    q = JobQueue(Gate(1, 1.0), SqlJobStore(store.db), lease_s=lease_s, poll_s=0.05)
    q.start()
    return q


def _wait(q: JobQueue, job_id: str, until: Callable[[Job], bool], timeout: float = 30) -> Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = q.get(job_id)
        assert job is not None
        if until(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"timed out: {q.get(job_id)}")


def test_two_workers_share_one_queue(open_store: Callable[[], Store], tmp_path: Path) -> None:
    a, b = _queue(open_store()), _queue(open_store())
    try:
        args = {"n": 20, "step_s": 0.03, "checkpoint": str(tmp_path / "c1.json")}
        job = a.submit("test-count", "count-1", params={"n": 20}, args=args, result_url="/r")
        assert b.submit("test-count", "count-1", args=args).id == job.id, "the same key: the same job, in any worker"
        dones = []
        while (j := b.get(job.id)) is not None and j.state in ("queued", "running"):
            dones.append(j.done)
            time.sleep(0.02)
        assert dones == sorted(dones), "progress never goes backwards"
        end = b.get(job.id)
        assert end is not None and end.state == "done" and end.done == end.total == 20 and end.message == "counted"
        assert end.result_url == "/r" and end.owner is not None and end.attempts == 1
        assert [x.id for x in b.list("test-count")] == [job.id] and a.running("test-count") is None
        # cancelled from the worker that does not run it
        slow = a.submit("test-count", "count-2", args={**args, "n": 1000, "checkpoint": str(tmp_path / "c2.json")})
        _wait(b, slow.id, lambda j: j.done > 2)
        b.cancel(slow.id)
        assert _wait(a, slow.id, lambda j: not j.active).state == "cancelled"
    finally:
        a.close()
        b.close()


def test_a_dead_workers_job_is_taken_over_and_resumes(open_store: Callable[[], Store], tmp_path: Path) -> None:
    store = open_store()
    jobs = SqlJobStore(store.db)
    ckpt = tmp_path / "c.json"
    job = Job(id="deadbeef", kind="test-count", key="count-dead", lane="render",
              args={"n": 10, "step_s": 0.01, "checkpoint": str(ckpt)})
    jobs.add(job)  # queued (as by a worker's POST)
    dead = jobs.claim(job.lane, "dead-worker", 0.5)  # claimed, then nothing: its worker died
    assert dead is not None and dead.id == job.id and dead.owner == "dead-worker"
    ckpt.write_text(json.dumps({"done": 4}))  # what the dead worker had checkpointed
    assert jobs.claim(job.lane, "other", 0.5) is None, "a live lease keeps the job its owner's"
    b = _queue(open_store(), lease_s=0.5)
    try:
        end = _wait(b, job.id, lambda j: j.state == "done", timeout=20)
        assert end.owner == b.owner and end.attempts == 2 and end.resumed_from == 4 and end.done == 10
        assert not jobs.heartbeat(dead, "dead-worker", 0.5, preview=False), "the old owner lost it"
    finally:
        b.close()


def test_a_closing_worker_hands_its_job_back(open_store: Callable[[], Store], tmp_path: Path) -> None:
    a = _queue(open_store())
    job = a.submit("test-count", "count-3", args={"n": 400, "step_s": 0.01, "checkpoint": str(tmp_path / "c.json")})
    _wait(a, job.id, lambda j: j.done > 3)
    a.close()  # a graceful shut-down (SIGTERM): not cancelled, queued again for another worker
    back = _wait(a, job.id, lambda j: j.state == "queued", timeout=10)
    assert back.owner is None and back.done > 3
    b = _queue(open_store())
    try:
        end = _wait(b, job.id, lambda j: j.state == "done", timeout=30)
        assert end.resumed_from > 3 and end.owner == b.owner
    finally:
        b.close()

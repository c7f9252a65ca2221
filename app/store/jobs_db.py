"""Jobs in the database, shared by every worker process (and machine) that opens the same store.

A job row holds what a client sees (state, progress, message, result URLs, preview) and what any worker
needs to run it again: its ``kind`` and ``args`` (a registered factory re-creates the work from them,
:mod:`app.jobs`). A queued job is *claimed* by one worker, which becomes its ``owner`` with a lease
(``lease_until``) that it renews while the job runs; when that worker dies the lease runs out and another
worker claims the job again (its work resumes from its checkpoint, as index builds do). At most one job
per ``key`` is active (a partial unique index), so two workers asked for the same build start one.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from app.jobs import ACTIVE, Job, lowest_priority
from app.store.sql import Database

if TYPE_CHECKING:
    from app.jobs import JobQueue

COLUMNS = ("id", "kind", "key", "lane", "state", "params", "args", "done", "total", "resumed_from", "value", "message",
           "error", "result_url", "page_url", "created", "started", "finished", "cancel_requested", "preview", "owner",
           "lease_until", "attempts")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM jobs"
_ACTIVE_SQL = "state IN ('queued', 'running')"


def _job(row: tuple[Any, ...]) -> Job:
    r = dict(zip(COLUMNS, row, strict=True))
    job = Job(id=r["id"], kind=r["kind"], key=r["key"], params=json.loads(r["params"]), state=r["state"],
              done=int(r["done"]), total=int(r["total"]), resumed_from=int(r["resumed_from"]), value=r["value"],
              message=r["message"], error=r["error"], result_url=r["result_url"], page_url=r["page_url"],
              created=r["created"], started=r["started"], finished=r["finished"],
              cancel_requested=bool(r["cancel_requested"]), preview=bytes(r["preview"]) if r["preview"] else None,
              lane=r["lane"], args=json.loads(r["args"]))
    job.owner, job.lease_until, job.attempts = r["owner"], r["lease_until"], int(r["attempts"])
    return job


class SqlJobStore:
    """The :class:`app.jobs.JobStore` of several workers: every read is the database's current state."""

    shared = True

    def __init__(self, db: Database, keep: int = 256) -> None:
        self.db = db
        self.keep = keep

    # -- the JobStore interface -----------------------------------------------------------------
    def add(self, job: Job) -> None:
        """Insert a new job; raises one of ``db.integrity_errors`` when a job with its key is active."""
        self.db.execute(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                        (job.id, job.kind, job.key, job.lane, job.state, json.dumps(job.params), json.dumps(job.args),
                         job.done, job.total, job.resumed_from, job.value, job.message, job.error, job.result_url,
                         job.page_url, job.created, job.started, job.finished, int(job.cancel_requested), job.preview,
                         None, None, 0))

    def get(self, job_id: str) -> Job | None:
        row = self.db.one(f"{_SELECT} WHERE id=?", (job_id,))
        return _job(row) if row else None

    def list(self, kind: str | None = None) -> list[Job]:
        """Newest first: every active job and the latest ``keep`` ones."""
        where, params = ("WHERE kind=?", (kind,)) if kind else ("", ())
        rows = self.db.query(f"{_SELECT} {where} ORDER BY created DESC LIMIT {int(self.keep)}", params)
        jobs = [_job(r) for r in rows]
        seen = {j.id for j in jobs}
        extra = self.db.query(f"{_SELECT} WHERE {_ACTIVE_SQL}" + (" AND kind=?" if kind else ""), params)
        jobs += [j for j in map(_job, extra) if j.id not in seen]
        return sorted(jobs, key=lambda j: -j.created)

    def active(self, key: str) -> Job | None:
        row = self.db.one(f"{_SELECT} WHERE key=? AND {_ACTIVE_SQL}", (key,))
        return _job(row) if row else None

    # -- the shared queue -----------------------------------------------------------------------
    def claim(self, lane: str, owner: str, lease_s: float) -> Job | None:
        """Take the oldest queued job of ``lane`` (or one whose owner's lease ran out) for ``owner``."""
        now = time.time()
        for _ in range(8):  # another worker may take a candidate first
            row = self.db.one("SELECT id FROM jobs WHERE lane=? AND (state='queued' OR (state='running' AND "
                              "lease_until < ?)) AND cancel_requested=0 ORDER BY created LIMIT 1", (lane, now))
            if row is None:
                return None
            taken = self.db.execute(
                "UPDATE jobs SET state='running', owner=?, lease_until=?, attempts=attempts+1, started=? WHERE id=? "
                "AND (state='queued' OR (state='running' AND lease_until < ?)) AND cancel_requested=0",
                (owner, now + lease_s, now, row[0], now))
            if taken == 1:
                return self.get(row[0])
        return None

    def expire_cancelled(self) -> None:
        """Jobs cancelled while their owner was gone end 'cancelled' once their lease ran out."""
        now = time.time()
        self.db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE cancel_requested=1 AND (state='queued' OR "
                        "(state='running' AND lease_until < ?))", (now, now))

    def heartbeat(self, job: Job, owner: str, lease_s: float, *, preview: bool) -> bool:
        """Write the running job's progress and renew its lease; reads back a cancellation. False when the
        job is no longer this worker's (its lease ran out and another worker took it)."""
        sets = "done=?, total=?, resumed_from=?, value=?, message=?, result_url=?, page_url=?, lease_until=?"
        params: list[Any] = [job.done, job.total, job.resumed_from, job.value, job.message, job.result_url,
                             job.page_url, time.time() + lease_s]
        if preview:
            sets += ", preview=?"
            params.append(job.preview)
        if self.db.execute(f"UPDATE jobs SET {sets} WHERE id=? AND owner=? AND state='running'",
                           (*params, job.id, owner)) != 1:
            return False
        row = self.db.one("SELECT cancel_requested FROM jobs WHERE id=?", (job.id,))
        if row and row[0]:
            job.cancel_requested = True
        return True

    def finish(self, job: Job, owner: str) -> bool:
        """Record the end of a job this worker ran (state, error, final progress)."""
        return self.db.execute(
            "UPDATE jobs SET state=?, error=?, message=?, done=?, total=?, resumed_from=?, value=?, result_url=?, "
            "page_url=?, preview=?, finished=?, lease_until=NULL WHERE id=? AND owner=?",
            (job.state, job.error, job.message, job.done, job.total, job.resumed_from, job.value, job.result_url,
             job.page_url, job.preview, job.finished, job.id, owner)) == 1

    def release(self, job: Job, owner: str) -> bool:
        """Hand a job this worker stops (it shuts down) back to the queue, progress kept, for another worker."""
        return self.db.execute(
            "UPDATE jobs SET state='queued', owner=NULL, lease_until=NULL, done=?, total=?, message=? "
            "WHERE id=? AND owner=? AND cancel_requested=0", (job.done, job.total, job.message, job.id, owner)) == 1

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop: a queued one ends at once, a running one when its owner reads the request."""
        now = time.time()
        self.db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=? AND state IN ('queued', 'running')", (job_id,))
        self.db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=? AND state='queued'", (now, job_id))
        return self.get(job_id)

    def prune(self) -> None:
        """Drop finished jobs beyond the latest ``keep``."""
        row = self.db.one(f"SELECT created FROM jobs WHERE state NOT IN {tuple(ACTIVE)!r} ORDER BY created DESC "
                          f"LIMIT 1 OFFSET {int(self.keep)}")
        if row is not None:
            self.db.execute(f"DELETE FROM jobs WHERE state NOT IN {tuple(ACTIVE)!r} AND created <= ?", (row[0],))

    # -- a worker's threads (started by JobQueue._lane) -------------------------------------------
    def lane_loop(self, jq: JobQueue, lane: str, threads: int | None) -> None:
        """Claim the lane's jobs one after the other and run them until the queue closes."""
        if threads == 1:
            lowest_priority()
        wake = jq._wake[lane]
        while not jq._closing.is_set():
            try:
                self.expire_cancelled()
                job = self.claim(lane, jq.owner, jq.lease_s)
            except Exception:  # the database is unreachable for a moment: try again later
                job = None
            if job is None:
                wake.wait(jq.poll_s)
                wake.clear()
                continue
            jq._running[job.id] = job
            try:
                jq._execute(job, None, threads)
                with contextlib.suppress(Exception):
                    if job.lost:
                        pass  # another worker runs it now
                    elif jq._closing.is_set() and job.state == "cancelled" and self.release(job, jq.owner):
                        pass  # shutting down: handed back, another worker takes it over
                    else:
                        self.finish(job, jq.owner)
            finally:
                jq._running.pop(job.id, None)
            with contextlib.suppress(Exception):
                self.prune()

    def heartbeat_loop(self, jq: JobQueue) -> None:
        """Write the progress of this worker's jobs and renew their leases, four times a second."""
        sent: dict[str, int] = {}  # the preview last written, by job
        while not jq._closing.wait(min(0.25, jq.lease_s / 3)):
            for job in list(jq._running.values()):
                if job.state != "running":
                    continue
                preview = id(job.preview) != sent.get(job.id)
                try:
                    mine = self.heartbeat(job, jq.owner, jq.lease_s, preview=preview)
                except Exception:
                    continue
                if preview:
                    sent[job.id] = id(job.preview)
                if not mine:  # the lease ran out and another worker took the job: stop this run
                    job.lost = True
                    job.cancel_requested = True

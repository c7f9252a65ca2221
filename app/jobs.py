"""A bounded queue of long jobs (feature visualization) run by one background thread.

Jobs report progress, can be cancelled (checked between steps), and yield to interactive requests:
while the inference gate has requests in flight, a job pauses between steps, so a long job never
starves the people clicking around. A full queue refuses new jobs (503 + Retry-After upstream).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app import compute
from app.gate import Gate, Overloaded


@dataclass
class JobState:
    """What a client can see of a job."""

    id: str
    kind: str
    key: str
    status: str = "queued"  # queued, running, done, failed, cancelled
    step: int = 0
    total: int = 0
    value: float | None = None
    message: str = ""
    preview: bytes | None = field(default=None, repr=False)
    created: float = field(default_factory=time.time)
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "step": self.step, "total": self.total,
                "value": self.value, "message": self.message,
                "percent": round(100 * self.step / self.total, 1) if self.total else 0.0}


class JobQueue:
    """At most ``max_queued`` waiting jobs; one runs at a time; the same key is never queued twice."""

    def __init__(self, gate: Gate, max_queued: int = 8) -> None:
        self.gate = gate
        self._q: queue.Queue[tuple[JobState, Callable[[JobState], None]]] = queue.Queue()
        self._jobs: OrderedDict[str, JobState] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()
        self.max_queued = max_queued
        self._thread = threading.Thread(target=self._loop, name="convscope-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, key: str, total: int, fn: Callable[[JobState], None]) -> JobState:
        """Queue ``fn(job)`` unless a job with the same key is queued or running (that one is returned)."""
        with self._lock:
            existing = self._jobs.get(self._by_key.get(key, ""))
            if existing is not None and existing.active:
                return existing
            if sum(1 for j in self._jobs.values() if j.status == "queued") >= self.max_queued:
                raise Overloaded(retry_after=10)
            job = JobState(id=uuid.uuid4().hex[:16], kind=kind, key=key, total=total)
            self._jobs[job.id] = job
            self._by_key[key] = job.id
            while len(self._jobs) > 256:
                old_id, old = next(iter(self._jobs.items()))
                if old.active:
                    break
                self._jobs.pop(old_id)
        self._q.put((job, fn))
        return job

    def get(self, job_id: str) -> JobState | None:
        return self._jobs.get(job_id)

    def for_key(self, key: str) -> JobState | None:
        return self._jobs.get(self._by_key.get(key, ""))

    def cancel(self, job_id: str) -> JobState | None:
        job = self._jobs.get(job_id)
        if job is not None and job.active:
            job.cancel_requested = True
            if job.status == "queued":
                job.status = "cancelled"
        return job

    def yield_to_interactive(self, job: JobState) -> bool:
        """Pause while interactive requests wait or run; returns True when the job should stop."""
        waited = 0.0
        while (self.gate.waiting > 0 or self.gate.busy > 0) and waited < 2.0 and not job.cancel_requested:
            time.sleep(0.02)
            waited += 0.02
        return job.cancel_requested

    def _loop(self) -> None:
        while True:
            job, fn = self._q.get()
            if job.status == "cancelled":
                continue
            job.status = "running"
            try:
                compute.lead().run(fn, job)  # on the lead thread's intra-op threads when it is free
                if job.status == "running":
                    job.status = "cancelled" if job.cancel_requested else "done"
            except Exception as e:  # reported to the client; the worker keeps going
                job.status = "failed"
                job.message = str(e)

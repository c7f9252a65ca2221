"""The one job model: every background job (index builds, feature-visualization renders) has the same
fields and states, is kept behind a small storage interface, and runs in a lane of the one queue.

A job's work is a function ``work(job)`` that reports progress with :meth:`Job.progress`, checks
:attr:`Job.cancel_requested` between steps (or calls :meth:`Job.check_cancelled`), and may set
:attr:`Job.result_url`. Each kind registers a factory (:func:`factory`: ``(services, args) -> work``), so
that any worker re-creates a job's work from its stored kind and ``args``: with a shared store
(:class:`app.store.jobs_db.SqlJobStore`) jobs and the queue live in the database, a worker claims a job
with a lease it renews, and another worker takes the job over when the lease runs out. Each lane runs
one job at a time in its own thread, on the lead thread's intra-op threads when it is free
(:mod:`app.runtime.compute`); a lane with too many queued jobs refuses new ones (503 + Retry-After). Jobs yield
to interactive requests between steps. The low-priority lane
(:data:`LOW_PRIORITY`: what a fresh install builds at its first start) runs on one intra-op thread at
the lowest CPU priority, and resumes only after interactive requests left the gates quiet for a moment.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

from app.runtime import compute
from app.runtime.gate import Gate, Overloaded

STATES = ("queued", "running", "done", "failed", "cancelled")
LOW_PRIORITY = "background"  # the lane of work nobody waits for: one job at a time, on one thread
ACTIVE = ("queued", "running")


class JobCancelled(Exception):
    """Raised inside a job's work when its cancellation was requested: the job ends 'cancelled'."""


@dataclass
class Job:
    """What a client sees of a background job, the same for every kind."""

    id: str
    kind: str  # "index", "featvis", "featvis-many"
    key: str  # while a job with this key is active, submitting the same key returns it
    params: dict[str, Any] = field(default_factory=dict)  # what the job works on (model, data set...)
    state: str = "queued"  # one of STATES
    done: int = 0
    total: int = 0
    resumed_from: int = 0  # units already done before this run (a resumed checkpoint)
    value: float | None = None  # the objective's latest value (feature visualization)
    message: str = ""
    error: str | None = None
    result_url: str | None = None  # the finished result, JSON or picture
    page_url: str | None = None  # the page that shows the finished result
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = False
    preview: bytes | None = field(default=None, repr=False)  # latest intermediate picture (PNG)
    lane: str = ""  # the queue's lane it runs in
    args: dict[str, Any] = field(default_factory=dict, repr=False)  # what the kind's factory needs (not public)
    owner: str | None = field(default=None, repr=False)  # the worker that runs it (shared store)
    lease_until: float | None = field(default=None, repr=False)
    attempts: int = field(default=0, repr=False)  # how often a worker claimed it
    lost: bool = field(default=False, repr=False)  # another worker took it over (its lease ran out)

    @property
    def low_priority(self) -> bool:
        return self.lane == LOW_PRIORITY

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def percent(self) -> float:
        return round(100.0 * self.done / self.total, 1) if self.total else 0.0

    @property
    def rate(self) -> float:
        """Units per second since the job started (not counting resumed units)."""
        if self.started is None:
            return 0.0
        dt = (self.finished or time.time()) - self.started
        return (self.done - self.resumed_from) / dt if dt > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        r = self.rate
        return (self.total - self.done) / r if self.active and r > 0 else None

    def progress(self, done: int, total: int | None = None, *, value: float | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if value is not None:
            self.value = value

    def check_cancelled(self) -> None:
        if self.cancel_requested:
            raise JobCancelled(f"job {self.id} was cancelled")

    def public(self) -> dict[str, Any]:
        """The JSON shape every job endpoint answers (app.features.jobs.schemas.JobOut)."""
        eta = self.eta_s
        return {"id": self.id, "kind": self.kind, "state": self.state, "done": self.done, "total": self.total,
                "percent": self.percent, "resumed_from": self.resumed_from, "rate": round(self.rate, 3),
                "eta_s": round(eta, 1) if eta is not None else None, "value": self.value, "message": self.message,
                "error": self.error, "params": dict(self.params), "created": self.created, "started": self.started,
                "finished": self.finished, "url": f"/api/jobs/{self.id}", "result_url": self.result_url,
                "page_url": self.page_url,
                "preview_url": f"/api/jobs/{self.id}/preview.png" if self.preview is not None else None}


class JobStore(Protocol):
    """Where jobs are kept: in this process (:class:`MemoryJobStore`), or in the database that several
    workers share (:class:`app.store.jobs_db.SqlJobStore`, whose ``shared`` is True)."""

    def add(self, job: Job) -> None: ...

    def get(self, job_id: str) -> Job | None: ...

    def list(self, kind: str | None = None) -> list[Job]: ...

    def active(self, key: str) -> Job | None: ...


class MemoryJobStore:
    """The jobs of this process: every active job and the latest ``keep`` finished ones."""

    def __init__(self, keep: int = 256) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j.id for j in self._jobs.values() if not j.active]
            for old in finished[: max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def list(self, kind: str | None = None) -> list[Job]:
        """Newest first."""
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if kind is None or j.kind == kind]

    def active(self, key: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.key == key and j.active), None)


Work = Callable[[Job], None]
Factory = Callable[[Any, dict[str, Any]], Work]  # (services, args) -> work
FACTORIES: dict[str, Factory] = {}


def factory(kind: str) -> Callable[[Factory], Factory]:
    """Register how the work of jobs of ``kind`` is made from their ``args`` (JSON) in any worker."""
    def register(fn: Factory) -> Factory:
        FACTORIES[kind] = fn
        return fn
    return register


class UnknownJobKind(LookupError):
    """A job whose kind has no registered factory in this worker."""


def lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: a thread's own nice value, 19), so that
    the scheduler hands a core to interactive work first; elsewhere nothing changes."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class JobQueue:
    """Runs submitted jobs, one at a time per lane, each lane in its own daemon thread.

    With a :class:`MemoryJobStore` a lane is a queue in this process. With a shared store every worker's
    lane threads claim the lane's queued jobs from the database (oldest first), and a heartbeat thread
    writes the progress of the jobs this worker runs and renews their leases."""

    LANES = ("render", "index", LOW_PRIORITY)  # the lanes a worker of a shared queue watches from the start

    def __init__(self, gate: Gate, store: JobStore | None = None, *, max_queued: int = 8,
                 also_interactive: tuple[Gate, ...] = (), quiet_s: float = 1.0, lease_s: float = 30.0,
                 poll_s: float = 0.5) -> None:
        self.gate = gate
        self.gates = (gate, *also_interactive)  # interactive work (forward passes, uploads) passes these
        self.quiet_s = quiet_s  # low-priority jobs resume only after the gates were idle this long
        self.store: JobStore = store or MemoryJobStore()
        self.shared = bool(getattr(self.store, "shared", False))
        self.max_queued = max_queued
        self.lease_s, self.poll_s = lease_s, poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.context: Any = SimpleNamespace()  # what factories get: the services (they add themselves)
        self._lock = threading.Lock()
        self._lanes: dict[str, queue.Queue[tuple[Job, Work | None] | None]] = {}
        self._wake: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._running: dict[str, Job] = {}  # the jobs this worker runs now (shared store)
        self._closing = threading.Event()

    def provide(self, **services: Any) -> None:
        """Make services available to the factories (``services.examples``, ``services.featvis``...)."""
        for name, svc in services.items():
            setattr(self.context, name, svc)

    def start(self) -> None:
        """Shared store: start watching the usual lanes (jobs other workers queued, or left behind)."""
        if self.shared:
            for lane in self.LANES:
                self._lane(lane)

    def submit(self, kind: str, key: str, work: Work | None = None, *, lane: str = "render", total: int = 0,
               params: dict[str, Any] | None = None, args: dict[str, Any] | None = None,
               result_url: str | None = None, page_url: str | None = None) -> Job:
        """Queue a job unless one with the same key is active (that one is returned). Its work is ``work``
        or, when None (always with a shared store), made by the factory of ``kind`` from ``args``."""
        if (work is None or self.shared) and kind not in FACTORIES:
            raise UnknownJobKind(f"no factory for jobs of kind {kind!r}")
        with self._lock:
            existing = self.store.active(key)
            if existing is not None:
                return existing
            q = self._lane(lane)
            queued = (sum(1 for j in self.store.list() if j.lane == lane and j.state == "queued") if self.shared
                      else q.qsize())
            if queued >= self.max_queued:
                raise Overloaded(retry_after=10)
            job = Job(id=uuid.uuid4().hex[:16], kind=kind, key=key, total=total, params=dict(params or {}), lane=lane,
                      args=dict(args or {}), result_url=result_url, page_url=page_url)
            try:
                self.store.add(job)
            except Exception:
                existing = self.store.active(key) if self.shared else None
                if existing is None:
                    raise
                return existing  # another worker queued the same job just now
        if self.shared:
            self._wake[lane].set()
        else:
            q.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def list(self, kind: str | None = None) -> list[Job]:
        return self.store.list(kind)

    def running(self, kind: str | None = None) -> Job | None:
        """The oldest active job (of ``kind``)."""
        return next((j for j in reversed(self.store.list(kind)) if j.active), None)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop (a queued one never starts); returns it, or None when unknown."""
        if self.shared:
            local = self._running.get(job_id)
            if local is not None:
                local.cancel_requested = True
            return self.store.cancel(job_id)  # type: ignore[attr-defined]
        job = self.store.get(job_id)
        if job is not None and job.active:
            job.cancel_requested = True
            if job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
        return job

    def yield_to_interactive(self, job: Job, *, low: bool = False) -> bool:
        """Pause while interactive requests wait or run (at most 2 s); a ``low``-priority job waits until no
        request has run for ``quiet_s`` (at most 5 s: pages that poll its progress must not starve it).
        Returns True when the job should stop."""
        waited = 0.0
        while not job.cancel_requested and self._interactive(low) and waited < (5.0 if low else 2.0):
            time.sleep(0.02)
            waited += 0.02
        return job.cancel_requested

    def _interactive(self, low: bool) -> bool:
        if self.gate.waiting > 0 or self.gate.busy > 0:
            return True
        if not low:
            return False
        quiet_since = time.monotonic() - self.quiet_s
        return any(g.waiting > 0 or g.busy > 0 or g.last_used > quiet_since for g in self.gates)

    def close(self) -> None:
        """Cancel what is queued or running and let the lane threads end. With a shared store the jobs are
        not cancelled: this worker stops them and hands them back to the queue for another worker."""
        self._closing.set()
        if self.shared:
            for job in list(self._running.values()):
                job.cancel_requested = True
            for ev in self._wake.values():
                ev.set()
            return
        for job in self.store.list():
            self.cancel(job.id)
        with self._lock:
            for q in self._lanes.values():
                q.put(None)

    def _lane(self, name: str) -> queue.Queue[tuple[Job, Work | None] | None]:
        q = self._lanes.get(name)
        if q is None:
            q = self._lanes[name] = queue.Queue()
            self._wake[name] = threading.Event()
            threads = 1 if name == LOW_PRIORITY else None
            store: Any = self.store  # a shared one claims jobs (app.store.jobs_db.lane_loop)
            target = (lambda: store.lane_loop(self, name, threads)) if self.shared else (lambda: self._loop(q, threads))
            t = threading.Thread(target=target, name=f"convscope-jobs-{name}", daemon=True)
            self._threads.append(t)
            t.start()
            if self.shared and not any(t.name == "convscope-jobs-lease" for t in self._threads):
                hb = threading.Thread(target=store.heartbeat_loop, args=(self,), name="convscope-jobs-lease", daemon=True)
                self._threads.append(hb)
                hb.start()
        return q

    def _work(self, job: Job, work: Work | None) -> None:
        if work is None:
            make = FACTORIES.get(job.kind)
            if make is None:
                raise UnknownJobKind(f"no factory for jobs of kind {job.kind!r} in this worker")
            work = make(self.context, job.args)
        work(job)

    def _execute(self, job: Job, work: Work | None, threads: int | None) -> None:
        """Run one job to its end state (in a lane thread)."""
        job.state, job.started = "running", time.time()
        try:
            compute.lead().run(self._work, job, work, threads=threads)  # on the lead's intra-op threads when free
            job.state = "cancelled" if job.cancel_requested else "done"
        except JobCancelled:
            job.state = "cancelled"
        except Exception as e:  # reported to the client; the lane keeps going
            job.state, job.error = "failed", str(e)
            job.message = job.message or "failed"
        finally:
            job.finished = time.time()

    def _loop(self, q: queue.Queue[tuple[Job, Work | None] | None], threads: int | None = None) -> None:
        if threads == 1:
            lowest_priority()
        while (item := q.get()) is not None:
            job, work = item
            if job.state == "cancelled":
                continue
            self._execute(job, work, threads)

"""Privacy: retention of uploads (``retention_hours``), a periodic cleanup and ``convscope cleanup``.

Uploads are already stored without metadata (the store keeps a re-encoded PNG, so EXIF and GPS
never reach the disk). With ``retention_hours`` > 0 an upload older than that is deleted with
everything derived from it (cached PNGs in the store, analyses and pictures in memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

from app.runtime.blocking import run_blocking
from app.store.database import ImageRecord, Store

log = logging.getLogger("convscope.privacy")


def expired(store: Store, hours: float, now: float | None = None) -> list[ImageRecord]:
    """Uploads created more than ``hours`` ago (none when ``hours`` <= 0: keep forever)."""
    if hours <= 0:
        return []
    cutoff = (time.time() if now is None else now) - hours * 3600.0
    return [r for r in _all_images(store) if r.created < cutoff]


def _all_images(store: Store, page: int = 500) -> Iterator[ImageRecord]:
    offset = 0
    while True:
        rows = store.list_images(page, offset)
        yield from rows
        if len(rows) < page:
            return
        offset += page


def purge(engine: object, image_id: str) -> bool:
    """Delete one upload and everything derived from it, in the store and in the engine's memory."""
    ok = bool(engine.delete(image_id))  # type: ignore[attr-defined]
    probs = getattr(engine, "_probs", None)
    lock = getattr(engine, "_pic_lock", None)
    if probs is not None and lock is not None:  # batched predictions are kept apart from analyses
        with lock:
            for k in [k for k in probs if k[1] == image_id]:
                probs.pop(k, None)
    return ok


def cleanup_engine(engine: object, hours: float, now: float | None = None) -> list[str]:
    """Apply the retention to a running app's engine; returns the deleted ids."""
    gone = []
    for rec in expired(engine.store, hours, now):  # type: ignore[attr-defined]
        if purge(engine, rec.id):
            gone.append(rec.id)
    if gone:
        log.info("retention: deleted %d upload(s) older than %g h", len(gone), hours)
    return gone


def cleanup_store(store: Store, hours: float, now: float | None = None) -> list[str]:
    """Apply the retention to a store directly (the CLI; the server's memory caches age out by LRU)."""
    return [r.id for r in expired(store, hours, now) if store.delete_image(r.id)]


def interval_s(hours: float) -> float:
    """How often the server checks: a tenth of the retention, between one minute and one hour."""
    return min(3600.0, max(60.0, hours * 360.0))


async def retention_loop(engine: object, hours: float) -> None:
    """The lifespan background task: clean up now, then every :func:`interval_s`."""
    while True:
        try:
            await run_blocking(cleanup_engine, engine, hours)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let the task die; try again next round
            log.exception("retention cleanup failed")
        await asyncio.sleep(interval_s(hours))

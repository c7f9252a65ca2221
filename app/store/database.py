"""Persistence: a database (SQLite under ``data_dir``, or PostgreSQL: :mod:`app.store.sql`) and a blob folder
under ``data_dir`` (several machines share one through a shared volume).

* uploads: stored once, by the sha256 of the uploaded bytes, as a metadata-free PNG of the upright
  RGB picture (EXIF/GPS never reach the disk);
* a cache of computed results (PNG grids, crops, indexes...) keyed by a string that names the model,
  its weights hash, the image hash and the parameters.

Every blob is written to a temporary file, fsync'ed and renamed into place, and its sha256 is kept
in the database: a reader never sees half a file, and a damaged cache entry is dropped, not served.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.store.sql import Database, DatabaseError


class StoreError(RuntimeError):
    """The store cannot be opened or is damaged."""


class ImageGone(LookupError):
    """An upload that was deleted after its record was read."""


@dataclass(frozen=True)
class ImageRecord:
    """One stored upload."""

    id: str
    sha256: str
    width: int
    height: int
    original_width: int
    original_height: int
    format: str
    filename: str
    blob_sha256: str
    created: float


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    ``durable`` flushes the data to disk before the rename (it survives a power cut); without it a
    crash may leave an empty or short file, which the recorded checksum then rejects.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    """Metadata in the database (SQLite or PostgreSQL) + content-addressed blobs. Thread-safe (one connection
    behind a lock)."""

    def __init__(self, root: Path, database_url: str | None = None) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        for attempt in range(50):
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self.db = Database(path=self.root / "convscope.sqlite3", url=database_url)
                if self.db.dialect == "sqlite":
                    check = self.db.one("PRAGMA quick_check")
                    if check is None or check[0] != "ok":
                        raise StoreError(f"store database {self.root / 'convscope.sqlite3'} is damaged: {check}")
                self.db.migrate()
                break
            except (sqlite3.DatabaseError, DatabaseError) as e:
                # Workers starting together race for SQLite's first switch to WAL, which answers "locked"
                # at once instead of waiting: try again for a few seconds before calling it damaged.
                if "locked" in str(e) and attempt < 49:
                    if getattr(self, "db", None) is not None:
                        self.db.close()
                    time.sleep(0.2)
                    continue
                raise StoreError(f"store database under {self.root if not database_url else 'CONVSCOPE_DATABASE_URL'} "
                                 f"cannot be opened ({e}); move it away or restore it from a backup") from e
        self._lock = threading.Lock()
        # Records are immutable once written: recent ones are answered from memory, without the
        # lock or SQLite (the event loop asks for one on every request about an image). An upload
        # deleted by another process (`convscope cleanup`) is noticed when its file is read.
        self._records: dict[str, ImageRecord] = {}

    def _remember(self, rec: ImageRecord) -> None:
        self._records[rec.id] = rec
        while len(self._records) > 4096:
            self._records.pop(next(iter(self._records)), None)

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def disk_usage(self) -> dict[str, int]:
        """Bytes the store takes on disk: the database and the blobs (uploads, cached results)."""
        blobs = sum(f.stat().st_size for f in self.blobs.rglob("*") if f.is_file()) if self.blobs.is_dir() else 0
        db = self.db.size_bytes()
        if db is None:
            db = sum(f.stat().st_size for f in self.root.glob("*.sqlite3*") if f.is_file())
        return {"database_bytes": db, "blob_bytes": blobs}

    def writable(self) -> bool:
        """True when a blob can be written (readiness probe)."""
        try:
            atomic_write(self.root / ".probe", b"ok")
            return True
        except OSError:
            return False

    # -- images -----------------------------------------------------------------------------
    def _image_path(self, sha: str) -> Path:
        return self.blobs / "images" / sha[:2] / f"{sha}.png"

    def put_image(self, *, sha256: str, png: bytes, width: int, height: int, original_size: tuple[int, int],
                  fmt: str, filename: str) -> tuple[ImageRecord, bool]:
        """Store an upload once; returns the record and whether it was new."""
        existing = self.get_image_by_sha(sha256)
        if existing is not None and self._image_path(sha256).is_file():
            return existing, False
        atomic_write(self._image_path(sha256), png)
        rec = ImageRecord(id=sha256[:16], sha256=sha256, width=width, height=height,
                          original_width=original_size[0], original_height=original_size[1], format=fmt,
                          filename=filename[:200], blob_sha256=_sha(png), created=time.time())
        with self._lock:
            self.db.execute(
                "INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET sha256=excluded.sha256, "
                "width=excluded.width, height=excluded.height, original_width=excluded.original_width, "
                "original_height=excluded.original_height, format=excluded.format, filename=excluded.filename, "
                "blob_sha256=excluded.blob_sha256, created=excluded.created",
                (rec.id, rec.sha256, rec.width, rec.height, rec.original_width, rec.original_height, rec.format,
                 rec.filename, rec.blob_sha256, rec.created))
            self._remember(rec)
        return rec, True

    def _row_to_image(self, row: tuple[object, ...] | None) -> ImageRecord | None:
        return ImageRecord(*row) if row else None  # type: ignore[arg-type]

    def get_image(self, image_id: str) -> ImageRecord | None:
        rec = self._records.get(image_id)
        if rec is not None:
            return rec
        with self._lock:
            row = self.db.one("SELECT * FROM images WHERE id=?", (image_id,))
            rec = self._row_to_image(row)
            if rec is not None:
                self._remember(rec)
        return rec

    def get_image_by_sha(self, sha: str) -> ImageRecord | None:
        rec = self._records.get(sha[:16])
        if rec is not None and rec.sha256 == sha:
            return rec
        with self._lock:
            row = self.db.one("SELECT * FROM images WHERE sha256=?", (sha,))
        return self._row_to_image(row)

    def list_images(self, limit: int = 100, offset: int = 0) -> list[ImageRecord]:
        with self._lock:
            rows = self.db.query("SELECT * FROM images ORDER BY created DESC LIMIT ? OFFSET ?", (limit, offset))
        return [ImageRecord(*r) for r in rows]

    def count_images(self) -> int:
        with self._lock:
            return int(self.db.query("SELECT COUNT(*) FROM images")[0][0])

    def image_png(self, rec: ImageRecord, *, verify: bool = True) -> bytes:
        """The stored PNG of an upload, checked against its recorded sha256 (``verify=False``: the
        caller checks it with :meth:`verify_image`, e.g. while it decodes)."""
        try:
            data = self._image_path(rec.sha256).read_bytes()
        except FileNotFoundError:
            self._records.pop(rec.id, None)  # deleted meanwhile (e.g. by `convscope cleanup`)
            if self.get_image(rec.id) is None:
                raise ImageGone(rec.id) from None
            raise
        if verify:
            self.verify_image(rec, data)
        return data

    @staticmethod
    def verify_image(rec: ImageRecord, data: bytes) -> None:
        """Raise :class:`StoreError` unless ``data`` is the stored PNG recorded for ``rec``."""
        if _sha(data) != rec.blob_sha256:
            raise StoreError(f"stored image {rec.id} is damaged (checksum mismatch)")

    def delete_image(self, image_id: str) -> bool:
        """Remove an upload and everything cached from it."""
        rec = self.get_image(image_id)
        if rec is None:
            return False
        with self._lock:
            paths = [r[0] for r in self.db.query("SELECT path FROM cache WHERE image_id=?", (image_id,))]
            self.db.execute("DELETE FROM cache WHERE image_id=?", (image_id,))
            self.db.execute("DELETE FROM images WHERE id=?", (image_id,))
            self._records.pop(image_id, None)
        for p in paths:
            (self.blobs / p).unlink(missing_ok=True)
        self._image_path(rec.sha256).unlink(missing_ok=True)
        return True

    # -- cache ------------------------------------------------------------------------------
    def cache_get(self, key: str) -> bytes | None:
        """A cached result, or None (also when the entry is damaged: it is then dropped)."""
        with self._lock:
            row = self.db.one("SELECT path, sha256 FROM cache WHERE key=?", (key,))
        if row is None:
            return None
        try:
            data = (self.blobs / row[0]).read_bytes()
        except OSError:
            data = None
        if data is None or _sha(data) != row[1]:
            with self._lock:
                self.db.execute("DELETE FROM cache WHERE key=?", (key,))
            return None
        return data

    def cache_present(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a cached entry (not read nor checked: :meth:`cache_get` does that)."""
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            with self._lock:
                rows = self.db.query(f"SELECT key FROM cache WHERE key IN ({','.join('?' * len(part))})", part)
            found.update(r[0] for r in rows)
        return found

    def cache_put(self, key: str, data: bytes, image_id: str | None = None, *, durable: bool = True) -> None:
        """Keep a computed result. ``durable=False`` for results that are cheap to compute again
        (no flush to disk: after a crash the checksum drops a damaged entry and it is recomputed)."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        rel = f"cache/{digest[:2]}/{digest}"
        atomic_write(self.blobs / rel, data, durable=durable)
        with self._lock:
            self.db.execute("INSERT INTO cache VALUES (?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET path=excluded.path, "
                            "sha256=excluded.sha256, size=excluded.size, image_id=excluded.image_id, created=excluded.created",
                            (key, rel, _sha(data), len(data), image_id, time.time()))

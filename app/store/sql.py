"""One database connection, SQLite or PostgreSQL, with the same SQL and versioned migrations.

SQLite (WAL) is the embedded default: ``<data_dir>/convscope.sqlite3``, shared by the worker processes of one
machine. PostgreSQL when ``CONVSCOPE_DATABASE_URL`` names one (``postgresql://...``, psycopg 3): shared by
workers on several machines. Statements are written once, with ``?`` placeholders and the SQL both dialects
accept (``INSERT ... ON CONFLICT ... DO UPDATE``, ``DOUBLE PRECISION``, ``BIGINT``); the few type names that
differ (``BLOB``) are translated here. :data:`MIGRATIONS` is the schema's history: a database records the
versions it has (table ``schema_migrations``) and is brought up to date when opened, under a lock so that
workers starting together migrate it once.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    original_width INTEGER NOT NULL,
    original_height INTEGER NOT NULL,
    format TEXT NOT NULL,
    filename TEXT NOT NULL,
    blob_sha256 TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    image_id TEXT,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_image ON cache(image_id);
"""),
    (2, """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    lane TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    args TEXT NOT NULL,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    resumed_from BIGINT NOT NULL DEFAULT 0,
    value DOUBLE PRECISION,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    result_url TEXT,
    page_url TEXT,
    created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION,
    finished DOUBLE PRECISION,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    preview BLOB,
    owner TEXT,
    lease_until DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active_key ON jobs(key) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_lane_state ON jobs(lane, state, created);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
"""),
]


class DatabaseError(RuntimeError):
    """The database cannot be opened, or a statement failed."""


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


class Database:
    """One connection behind a lock, thread-safe; ``?`` placeholders in every dialect."""

    def __init__(self, *, path: Path | None = None, url: str | None = None) -> None:
        self._lock = threading.RLock()
        self.dialect = "postgres" if is_postgres(url) else "sqlite"
        if self.dialect == "postgres":
            try:
                import psycopg
            except ImportError as e:  # pragma: no cover - the dependency is installed with the app
                raise DatabaseError("CONVSCOPE_DATABASE_URL names PostgreSQL: install psycopg[binary]") from e
            self._pg = psycopg
            self.integrity_errors: tuple[type[Exception], ...] = (psycopg.errors.UniqueViolation,)
            try:
                self._conn: Any = psycopg.connect(str(url), autocommit=True)
            except psycopg.Error as e:
                raise DatabaseError(f"cannot connect to the database {redact(str(url))}: {e}") from e
            self.where = redact(str(url))
        else:
            assert path is not None
            self.integrity_errors = (sqlite3.IntegrityError,)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self.where = str(path)

    # -- statements --------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        if self.dialect == "postgres":
            return sql.replace("?", "%s").replace(" BLOB", " BYTEA")
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def script(self, sql: str) -> None:
        """Several statements separated by ``;`` (no placeholders)."""
        for stmt in (s.strip() for s in sql.split(";")):
            if stmt:
                self.execute(stmt)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction, holding the connection's lock (SQLite: ``BEGIN IMMEDIATE``, a write lock)."""
        with self._lock:
            if self.dialect == "postgres":
                with self._conn.transaction():
                    yield
            else:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")

    # -- schema ------------------------------------------------------------------------------
    def migrate(self, migrations: list[tuple[int, str]] = MIGRATIONS) -> list[int]:
        """Apply the migrations this database lacks, once even when several workers start at once;
        returns the versions applied now."""
        self.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "applied DOUBLE PRECISION NOT NULL)")
        applied: list[int] = []
        with self.transaction():
            if self.dialect == "postgres":
                self.execute("SELECT pg_advisory_xact_lock(7263)")
            have = {r[0] for r in self.query("SELECT version FROM schema_migrations")}
            for version, sql in migrations:
                if version in have:
                    continue
                self.script(sql)
                self.execute("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)", (version, time.time()))
                applied.append(version)
        return applied

    def version(self) -> int:
        row = self.one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0]) if row and row[0] is not None else 0

    def size_bytes(self) -> int | None:
        """The database's size on the server (PostgreSQL); None for SQLite (its files are measured)."""
        if self.dialect != "postgres":
            return None
        row = self.one("SELECT pg_database_size(current_database())")
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)

"""``convscope cleanup``: delete uploads older than the retention."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("cleanup", help="delete uploads older than the retention (and their cached results)")
    c.add_argument("--hours", type=float, help="override retention_hours (CONVSCOPE_RETENTION_HOURS)")
    c.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    c.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from app.config import Settings
    from app.features.privacy.service import cleanup_store, expired
    from app.store.database import Store

    s = Settings()
    hours = s.retention_hours if a.hours is None else a.hours
    if hours <= 0:
        print("retention is 0 (keep forever): nothing to do. Set CONVSCOPE_RETENTION_HOURS or pass --hours.")
        return 0
    store = Store(s.data_dir, s.database_url)
    try:
        if a.dry_run:
            ids = [r.id for r in expired(store, hours)]
            print(f"would delete {len(ids)} upload(s) older than {hours:g} h")
        else:
            ids = cleanup_store(store, hours)
            print(f"deleted {len(ids)} upload(s) older than {hours:g} h")
        for i in ids:
            print(i)
    finally:
        store.close()
    return 0

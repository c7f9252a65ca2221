"""The index store: keys, manifests, finished indexes and build checkpoints under ``<data_dir>/examples``.

A finished index goes into the store's cache (atomic: readers see the old index or the whole new
one) under a key made of model name, weights sha256, data set identity, split and limit, plus a
small manifest file that lets the server find it. Checkpoints of running builds live next to them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.examples import ExamplesIndex
from app.features.examples.sources import GALLERY, Source
from app.store.database import Store, atomic_write

log = logging.getLogger("convscope.indexing")

KEY_VERSION = "v1"


def index_key(model: str, weights_sha256: str, source: Source) -> str:
    ident = GALLERY if source.kind == "gallery" else source.identity[:16]
    return f"examples:{KEY_VERSION}:{model}:{weights_sha256[:16]}:{ident}:{source.split or '-'}:{source.limit or 'all'}"


def _key_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class Manifest:
    """Where a finished index is and what it holds (one small JSON file per index)."""

    key: str
    model: str
    weights_sha256: str
    source: dict[str, Any]
    k: int
    count: int
    layers: int
    created: float
    seconds: float
    gallery_ids: list[str] = field(default_factory=list)
    upscaled: bool = False

    @property
    def dataset(self) -> str:
        return str(self.source["name"])

    @property
    def split(self) -> str:
        return str(self.source.get("split") or "")

    @property
    def limit(self) -> int | None:
        v = self.source.get("limit")
        return int(v) if v else None

    def label(self) -> str:
        s = Source(**self.source)
        return s.describe()


class IndexStore:
    """Finished indexes (store cache + manifests) and checkpoints under ``<data_dir>/examples``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = Path(store.root) / "examples"
        self._cache: OrderedDict[str, ExamplesIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def manifest_path(self, key: str) -> Path:
        return self.root / "manifests" / f"{_key_file(key)}.json"

    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{_key_file(key)}.npz"

    def save(self, index: ExamplesIndex, manifest: Manifest) -> None:
        """Index blob first (atomic, checksummed), then its manifest: a reader never sees half of it."""
        self.store.cache_put(manifest.key, index.to_bytes())
        atomic_write(self.manifest_path(manifest.key), json.dumps(asdict(manifest)).encode())
        with self._lock:
            self._cache.pop(manifest.key, None)

    def manifests(self, model: str | None = None, weights_sha256: str | None = None) -> list[Manifest]:
        out = []
        for p in sorted((self.root / "manifests").glob("*.json")):
            try:
                m = Manifest(**json.loads(p.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if (model is None or m.model == model) and (weights_sha256 is None or m.weights_sha256 == weights_sha256):
                out.append(m)
        return sorted(out, key=lambda m: -m.created)

    def manifest(self, key: str) -> Manifest | None:
        try:
            return Manifest(**json.loads(self.manifest_path(key).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def load(self, key: str) -> ExamplesIndex | None:
        """The index (cached in memory, a few at a time), or None when missing or damaged.

        Concurrent first requests for one index read and parse it once (the others wait for it)."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    return hit
            try:
                idx = self._read(key)
                if idx is not None:
                    with self._lock:
                        self._cache[key] = idx
                        while len(self._cache) > 4:
                            self._cache.popitem(last=False)
                return idx
            finally:
                with self._lock:
                    self._loading.pop(key, None)

    def _read(self, key: str) -> ExamplesIndex | None:
        data = self.store.cache_get(key)
        if data is None:
            return None
        try:
            return ExamplesIndex.from_bytes(data)
        except (ValueError, KeyError, OSError) as e:
            log.warning("examples index %s is unreadable (%s); rebuild it", key, e)
            return None

"""LRUCache: a thread-safe in-memory map that forgets its least recently used entries beyond a
budget of entries and/or bytes (the engine's analyses, overviews, pictures, inputs, probabilities)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _nbytes(value: Any) -> int:
    return int(value.nbytes)


class LRUCache(Generic[K, V]):
    """Entries by key, newest last; a put evicts the oldest while the cache is over budget.

    ``max_items`` bounds the number of entries, ``max_bytes`` their total ``size`` (default: the
    value's ``nbytes``). With ``keep_newest`` the last entry stays even when it alone is over budget.
    Caches that share ``lock`` (reentrant) can be changed together under it."""

    def __init__(self, *, max_items: int | None = None, max_bytes: int | None = None,
                 size: Callable[[V], int] = _nbytes, keep_newest: bool = False,
                 lock: threading.RLock | None = None) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size if max_bytes is not None else (lambda v: 0)
        self._floor = 1 if keep_newest else 0
        self._d: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = lock if lock is not None else threading.RLock()

    def get(self, key: K) -> V | None:
        """The value (now the most recently used), or None."""
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` as the most recently used entry (replacing one under the same key)."""
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= self._size(old)
            self._d[key] = value
            self._bytes += self._size(value)
            while self._over() and len(self._d) > self._floor:
                _, gone = self._d.popitem(last=False)
                self._bytes -= self._size(gone)

    def _over(self) -> bool:
        return ((self.max_bytes is not None and self._bytes > self.max_bytes)
                or (self.max_items is not None and len(self._d) > self.max_items))

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            v = self._d.pop(key, None)
            if v is None:
                return default
            self._bytes -= self._size(v)
            return v

    def drop_where(self, match: Callable[[K], bool]) -> int:
        """Forget every entry whose key matches; returns how many."""
        with self._lock:
            keys = [k for k in self._d if match(k)]
            for k in keys:
                self._bytes -= self._size(self._d.pop(k))
            return len(keys)

    def drop_image(self, image_id: str) -> int:
        """Forget the entries of one photo (keys are tuples with the image id second: (model, image, ...))."""
        return self.drop_where(lambda k: k[1] == image_id)  # type: ignore[index]

    def __iter__(self) -> Iterator[K]:
        """The keys, oldest first (a snapshot)."""
        with self._lock:
            return iter(list(self._d))

    def __len__(self) -> int:
        return len(self._d)

    @property
    def count(self) -> int:
        return len(self._d)

    @property
    def nbytes(self) -> int:
        return self._bytes

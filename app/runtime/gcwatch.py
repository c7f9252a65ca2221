"""The garbage collector's pauses, for operators (``GET /api/stats``).

A collection runs with the interpreter lock held: while it walks its objects, no request moves.
:class:`GcWatch` counts the collections of each generation and times them, from a callback that
is registered while the app serves (a context manager, removed at shut-down).
"""

from __future__ import annotations

import gc
import time
from types import TracebackType


class GcWatch:
    """Collections of each generation (0, 1, 2) since start: how many, their total and longest time."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.total_s = [0.0, 0.0, 0.0]
        self.longest_s = [0.0, 0.0, 0.0]
        self._start = 0.0  # one collection at a time: it holds the interpreter lock

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        g = min(info.get("generation", 2), 2)
        took = time.perf_counter() - self._start
        self.collections[g] += 1
        self.total_s[g] += took
        self.longest_s[g] = max(self.longest_s[g], took)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.callbacks.remove(self._callback)

    def snapshot(self) -> dict[str, object]:
        return {"collections": list(self.collections),
                "total_ms": [round(1000 * t, 2) for t in self.total_s],
                "longest_ms": [round(1000 * t, 2) for t in self.longest_s],
                "frozen": gc.get_freeze_count()}

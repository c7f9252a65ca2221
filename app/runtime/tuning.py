"""Process tuning that must happen before torch is imported: malloc arenas and OpenMP spinning."""

from __future__ import annotations

import os
import sys


def limit_malloc_arenas(n: int = 2, mmap_threshold: int = 32 * 1024 * 1024) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); freed
    activation buffers then stay spread over many arenas and the resident size only grows.
    Two arenas keep a long-running server's memory flat (same as MALLOC_ARENA_MAX=2).

    Blocks under ``mmap_threshold`` come from the arenas' heaps and are reused; larger ones get
    their own mapping, returned to the system when freed. A fixed threshold also turns off glibc's
    own adjustment of it. At 128 KB every activation of a batch is a fresh mapping whose pages
    fault in on first touch; under load a forward pass took ~1.7x the CPU time it takes in a plain
    loop. At 32 MB (the most glibc's adjustment would reach), two servers loaded in
    turns (3 rounds of 3,000 requests of bench/load.py's mix) used 3.76 vs 4.18 ms of CPU a
    request, +10 % throughput, for ~25 MB more resident once the bounded caches are full."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, n)  # M_ARENA_MAX
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


def short_openmp_spin(count: int = 20_000) -> None:
    """Let OpenMP's idle helper threads spin ``count`` rounds (libgomp's default: 300,000) before
    they sleep; read once, when torch loads its libgomp, so this runs before torch is imported.

    A lone request's pass runs on the lead thread's team (app.runtime.compute), whose helper spins between
    the operations of a pass; 20,000 rounds still bridge those gaps (efficientnet-lite0 plain pass
    13.27 -> 13.29 ms, cifarnet 2.00 -> 1.98 ms; 2,000 would make them 16.9 and 2.24 ms), while
    under load a helper that spins on after its batch takes less of the core from the pass running
    beside it. bench/ab_load.py (rounds of 3,000 requests), B/A: 1.049 (3 rounds), 1.026 (4),
    1.023 (6 rounds: 643.4 -> 658.1 req/s, server CPU 2.49 -> 2.39 ms a request); two runs in which
    both sides had the same setting read 1.012 and 1.043, so the gain is small against the noise.
    An explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY wins."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(count)
    if "torch" in sys.modules:  # too late for this process's libgomp
        print("convscope: torch was imported before the OpenMP settings", file=sys.stderr)

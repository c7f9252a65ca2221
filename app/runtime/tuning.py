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
    own adjustment of it. A small threshold makes every activation of a batch a fresh mapping whose
    pages fault in on first touch; 32 MB (the most glibc's adjustment would reach) keeps them in the
    heaps, for a little more resident memory once the bounded caches are full (bench/ab_load.py
    measures it)."""
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
    the operations of a pass; 20,000 rounds still bridge those gaps, while under load a helper that
    spins on after its batch takes less of the core from the pass running beside it (a small gain:
    bench/ab_load.py measures it). An explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY wins."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(count)
    if "torch" in sys.modules:  # too late for this process's libgomp
        print("convscope: torch was imported before the OpenMP settings", file=sys.stderr)

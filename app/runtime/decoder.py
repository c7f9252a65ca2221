"""Decoding in worker processes with a hard ceiling: each worker runs under an address-space limit and a
CPU-time limit per picture, so a decoder that runs away (memory or time) is killed by the kernel and
replaced, while the server keeps serving. This is the last line behind the header checks of
:mod:`app.core.decode`.

The workers are plain Python processes (``python -m app.runtime.decoder``) that import Pillow and NumPy,
never torch; they are started with the app and talk over pipes (length-prefixed pickles between our own
processes). A picture comes back already scaled to the stored side, so little crosses the pipe.
"""

from __future__ import annotations

import os
import pickle
import queue
import resource
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

from app.core.decode import DecodedImage, ImageError


@dataclass(frozen=True)
class Ceiling:
    """What one decode may use at most before its worker is killed."""

    memory_bytes: int = 512 * 1024 * 1024  # address space on top of the worker's own
    cpu_s: int = 5


def _send(f: BinaryIO, obj: object) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack(">Q", len(blob)) + blob)
    f.flush()


def _recv(f: BinaryIO) -> Any:
    head = f.read(8)
    if len(head) < 8:
        raise EOFError("the decoder worker ended")
    (n,) = struct.unpack(">Q", head)
    return pickle.loads(f.read(n))


class _Worker:
    def __init__(self, ceiling: Ceiling) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "CONVSCOPE_DECODER_MEMORY": str(ceiling.memory_bytes), "CONVSCOPE_DECODER_CPU_S": str(ceiling.cpu_s)}
        self.proc = subprocess.Popen([sys.executable, "-m", "app.runtime.decoder"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, close_fds=True)

    def call(self, kwargs: dict[str, Any]) -> DecodedImage:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _send(self.proc.stdin, kwargs)
        ok, value = _recv(self.proc.stdout)
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class DecoderPool:
    """``workers`` decoder processes; :meth:`decode` blocks the calling thread until one is free."""

    def __init__(self, workers: int, ceiling: Ceiling | None = None) -> None:
        self.ceiling = ceiling or Ceiling()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self.killed = 0  # workers replaced after running past the ceiling
        for _ in range(max(1, workers)):
            self._start()

    def _start(self) -> None:
        w = _Worker(self.ceiling)
        with self._lock:
            self._all.append(w)
        self._idle.put(w)

    def decode(self, data: bytes, **limits: Any) -> DecodedImage:
        """:func:`app.core.decode.decode_image` in a worker, then scaled down to ``target_side``."""
        w = self._idle.get()
        try:
            result = w.call({"data": data, **limits})
        except ImageError:
            self._idle.put(w)
            raise
        except (EOFError, BrokenPipeError, OSError, pickle.UnpicklingError, MemoryError):
            w.kill()
            with self._lock:
                self._all.remove(w)
                self.killed += 1
            self._start()
            raise ImageError("too_costly", "Decoding this picture took more memory or time than one picture may "
                             f"take here ({self.ceiling.memory_bytes // 2**20} MB, {self.ceiling.cpu_s} s of CPU). "
                             "Resize it or save it as an ordinary JPEG or PNG and upload it again.", 422) from None
        self._idle.put(w)
        return result

    def close(self) -> None:
        with self._lock:
            for w in self._all:
                if w.proc.stdin is not None:
                    w.proc.stdin.close()
                w.kill()
            self._all.clear()


def _serve() -> None:
    """The worker: limits itself, then answers decode requests until its input closes."""
    from app.core.decode import decode_image, limit_side, register_heif

    register_heif()  # HEIC/HEIF through pillow-heif (AVIF is Pillow's own)
    memory = int(os.environ.get("CONVSCOPE_DECODER_MEMORY", str(Ceiling.memory_bytes)))
    cpu_s = int(os.environ.get("CONVSCOPE_DECODER_CPU_S", str(Ceiling.cpu_s)))
    with open("/proc/self/statm") as f:  # what the interpreter and its imports already map
        base = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (base + memory, base + memory))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    while True:
        try:
            kwargs = _recv(stdin)
        except EOFError:
            return
        used = resource.getrusage(resource.RUSAGE_SELF)
        spent = int(used.ru_utime + used.ru_stime) + 1
        # the soft limit only (SIGXCPU ends a runaway): a process may raise it again for the next picture
        resource.setrlimit(resource.RLIMIT_CPU, (spent + cpu_s, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        target = kwargs.get("target_side")
        try:
            dec = decode_image(**kwargs)
            if target:
                dec = DecodedImage(limit_side(dec.image, target), dec.format, dec.original_size, dec.frames)
            _send(stdout, (True, dec))
        except ImageError as e:
            _send(stdout, (False, e))
        except MemoryError:
            sys.exit(3)  # the pool replaces this worker and answers too_costly


if __name__ == "__main__":
    _serve()

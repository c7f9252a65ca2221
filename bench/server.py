"""What every bench that starts its own server needs: wait until it answers, or say why it did not."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 180, path: str = "/readyz") -> None:
    """Return once ``base + path`` answers 200; raise when the server exits first or ``timeout`` passes."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server at {base} exited ({proc.returncode}) before it was ready")
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server at {base} was not ready after {timeout:.0f} s")

"""Shared helpers for tests that start a real server (``convscope serve`` in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.config import ROOT


def serve(tmp: Path, port: int, *, models: tuple[str, ...] = ("lenet",), **settings: str) -> subprocess.Popen:
    """Start ``convscope serve`` on ``port`` with its store under ``tmp``, serving copies of ``models``;
    ``settings`` are CONVSCOPE_* values (``header_timeout_s="1"``). Returns once it answers /healthz."""
    models_dir = tmp / "models"
    for name in models:
        if not (models_dir / name).exists():
            shutil.copytree(ROOT / "models" / name, models_dir / name)
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(tmp / "data"), "CONVSCOPE_MODELS_DIR": str(models_dir),
           "CONVSCOPE_SERVE_EFFICIENTNET": "false", "CONVSCOPE_DEFAULT_MODEL": models[0] if models else "lenet",
           "CONVSCOPE_TORCH_THREADS": "1", **{f"CONVSCOPE_{k.upper()}": v for k, v in settings.items()}}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]

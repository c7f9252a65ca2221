"""Faults: SIGKILL during uploads loses no acknowledged upload; SIGTERM finishes in-flight requests;
a damaged store is reported at start."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import serve
from PIL import Image

from app.config import ROOT, Settings
from app.main import create_app
from app.store.database import StoreError
from conftest import _free_port, make_photo


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    return serve(tmp, port)


def test_sigkill_during_uploads_loses_no_acknowledged_upload(tmp_path: Path):
    port = _free_port()
    proc = start_server(tmp_path, port)
    acked: dict[str, str] = {}
    stop = threading.Event()

    def uploader(k: int) -> None:
        i = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not stop.is_set():
                data = make_photo(400, 300, seed=1000 * k + i, fmt="PNG")
                i += 1
                try:
                    r = c.post("/api/images", files={"file": (f"{k}-{i}.png", data, "image/png")})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    acked[r.json()["id"]] = hashlib.sha256(data).hexdigest()

    threads = [threading.Thread(target=uploader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 3, "uploads were acknowledged before the kill"
    proc = start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for iid, sha in acked.items():
                meta = c.get(f"/api/images/{iid}").json()
                assert meta["sha256"] == sha
                png = c.get(f"/api/images/{iid}/file")
                assert png.status_code == 200
                assert Image.open(io.BytesIO(png.content)).size == (400, 300)
            listed = c.get("/api/images", params={"limit": 500}).json()
            for m in listed:  # nothing half-written is ever served
                assert c.get(m["url"]).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_sigterm_finishes_the_request_in_flight(tmp_path: Path):
    port = _free_port()
    proc = start_server(tmp_path, port)
    data = make_photo(200, 150, seed=3, fmt="PNG")
    head = (b'--zz\r\nContent-Disposition: form-data; name="file"; filename="slow.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    body = head + data + b"\r\n--zz--\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /api/images HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=zz\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[: len(body) // 2])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sock.sendall(body[len(body) // 2:])
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown


def test_damaged_store_is_reported_at_start(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "convscope.sqlite3").write_bytes(b"this is not a database" * 100)
    s = Settings(data_dir=data, models_dir=tmp_path / "none", serve_efficientnet=False)
    with pytest.raises(StoreError, match="cannot be opened|damaged"), TestClient(create_app(s)):
        pass


def test_uploads_are_flushed_to_disk_redrawable_pngs_are_not_and_a_damaged_entry_is_recomputed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from app.store.database import Store

    flushed: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real_fsync(fd))[1])
    store = Store(tmp_path / "d")
    store.put_image(sha256="ab" * 32, png=b"png bytes", width=1, height=1, original_size=(1, 1), fmt="PNG",
                    filename="a.png")
    assert len(flushed) == 1, "an acknowledged upload is on disk before the 201"
    store.cache_put("grid", b"a" * 1000, durable=False)
    assert len(flushed) == 1, "a PNG that can be drawn again is not flushed"
    store.cache_put("index", b"b" * 1000)
    assert len(flushed) == 2, "other cache entries (indexes) are"
    # a crash before the data reached the disk can leave a short file: it is dropped, not served
    path = next(p for p in (store.blobs / "cache").rglob("*") if p.is_file() and p.read_bytes() == b"a" * 1000)
    path.write_bytes(b"a" * 10)
    assert store.cache_get("grid") is None and store.cache_get("index") == b"b" * 1000
    store.close()


def test_serve_sets_a_short_openmp_spin_before_torch_loads_unless_told_otherwise():
    """``convscope serve`` shortens libgomp's spin (read once, when torch loads it): torch must not be
    imported by then, and an explicit GOMP_SPINCOUNT / OMP_WAIT_POLICY is kept."""
    code = ("import os, sys; from app.cli import main as cli, serve as cmd; seen = {}; real = cli.short_openmp_spin\n"
            "def spy(): seen['torch'] = 'torch' in sys.modules; real()\n"
            "def serve(a): seen['env'] = os.environ.get('GOMP_SPINCOUNT'); return 0\n"
            "cli.short_openmp_spin, cmd.run = spy, serve\n"
            "cli.main(['serve']); print(seen['torch'], seen['env'])")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "20000"] and "OpenMP" not in out.stderr
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "GOMP_SPINCOUNT": "300000"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "300000"]

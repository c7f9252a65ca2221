"""Two workers (`convscope serve --workers 2`) share one state: an index build started through one is
answered by both (never a 404, progress never goes backwards), the finished index is served by both, and
killing the worker that runs the build hands it to the other, which resumes from the checkpoint."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_examples_resume import tiny_imagefolder

from app.cli.serve import split_cores
from app.config import ROOT

pytestmark = pytest.mark.skipif(not (ROOT / "models" / "lenet" / "card.json").exists(), reason="lenet weights missing")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(base: str, path: str) -> httpx.Response:
    """One request on a fresh connection: uvicorn's workers share the listening socket, so any may answer."""
    return httpx.get(base + path, timeout=30, headers={"Connection": "close"})


def _owner_pid(data: Path, job_id: str) -> int | None:
    with sqlite3.connect(data / "convscope.sqlite3", timeout=30) as db:
        row = db.execute("SELECT owner FROM jobs WHERE id=? AND state='running'", (job_id,)).fetchone()
    return int(row[0].split(":")[1]) if row and row[0] else None


def test_split_cores() -> None:
    assert split_cores(2, 2) == 1 and split_cores(2, 16) == 8 and split_cores(4, 2) == 1 and split_cores(1, 8) == 8


def test_two_workers_share_jobs_and_take_over_a_dead_workers_build(tmp_path: Path) -> None:
    tiny = tiny_imagefolder(tmp_path / "tiny", n=240)
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models" / "lenet", models / "lenet")
    port, data = _port(), tmp_path / "data"
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(data), "CONVSCOPE_MODELS_DIR": str(models),
           "CONVSCOPE_SERVE_EFFICIENTNET": "false", "CONVSCOPE_DEFAULT_MODEL": "lenet", "CONVSCOPE_DATASET_PATH": str(tiny),
           "CONVSCOPE_FIRST_START_BUILDS": "false", "CONVSCOPE_DECODER_PROCESSES": "0", "CONVSCOPE_JOB_LEASE_S": "2",
           "CONVSCOPE_INDEX_CHECKPOINT_S": "0", "CONVSCOPE_INDEX_THROTTLE_S": "0.15", "CONVSCOPE_INDEX_BATCH_SIZE": "8"}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        workers: set[int] = set()
        deadline = time.time() + 120
        while len(workers) < 2:  # both workers up (each answers readiness with its pid)
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                r = _get(base, "/readyz")
                if r.status_code == 200:
                    workers.add(r.json()["worker"])
            except httpx.HTTPError:
                time.sleep(0.2)
        r = httpx.post(base + "/api/indexes", json={"model": "lenet", "dataset": "default", "split": "test"}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        dones = []
        for _ in range(30):  # each poll may land on either worker
            a = _get(base, f"/api/jobs/{job_id}")
            assert a.status_code == 200, a.text
            dones.append(a.json()["done"])
            time.sleep(0.05)
        assert dones == sorted(dones), f"progress went backwards: {dones}"
        assert a.json()["state"] == "running" and 0 < dones[-1] < 240, a.json()

        victim = _owner_pid(data, job_id)
        assert victim in workers
        os.kill(victim, signal.SIGKILL)  # the worker running the build dies without warning
        deadline = time.time() + 120
        while (j := _get(base, f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.time() < deadline, j
            owner = _owner_pid(data, job_id)
            assert owner in (None, victim) or owner != victim
            time.sleep(0.1)
        assert j["state"] == "done" and j["done"] == j["total"] == 240, j
        assert j["resumed_from"] > 0, "the other worker resumed from the checkpoint"
        with sqlite3.connect(data / "convscope.sqlite3") as db:
            owner, attempts = db.execute("SELECT owner, attempts FROM jobs WHERE id=?", (job_id,)).fetchone()
        assert int(owner.split(":")[1]) != victim and attempts == 2

        served: set[int] = set()
        deadline = time.time() + 60
        while len(served) < 2:  # the finished index is served by both workers (the replacement included)
            assert time.time() < deadline, served
            ready = _get(base, "/readyz")
            if ready.status_code != 200:
                continue
            ex = _get(base, "/api/models/lenet/layers/conv2/channels/3/examples")
            assert ex.status_code == 200, ex.text
            served.add(ready.json()["worker"])
            assert _get(base, f"/api/jobs/{job_id}").status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()

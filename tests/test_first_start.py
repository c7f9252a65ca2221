"""A fresh install fills itself in: started on an empty data directory with CIFAR-10 configured, the
server builds lenet's examples index and its first conv layers' feature visualizations in the
background, and a visitor who only GETs pages sees the build's progress, then the examples."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import serve

from app import firststart
from app.config import ROOT, Settings
from app.core.data import CIFAR10_ALIAS
from app.core.zoo import Zoo
from app.firststart import find_cifar10
from app.main import create_app
from conftest import _free_port

CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"


def test_finding_cifar10(tmp_path: Path) -> None:
    given = tmp_path / "c.zip"
    assert find_cifar10(Settings(dataset_path=str(given))) == str(given)
    if CIFAR10.is_file():
        assert find_cifar10(Settings(dataset_path=None)) == str(CIFAR10)
    else:
        assert find_cifar10(Settings(dataset_path=None, dataset_download=True)) == CIFAR10_ALIAS
        assert find_cifar10(Settings(dataset_path=None, dataset_download=False)) is None


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR10.is_file(), reason="the CIFAR-10 zip is not at ../shared/data")
def test_first_start_builds_the_index_while_pages_show_progress(tmp_path: Path) -> None:
    port = _free_port()
    proc = serve(tmp_path, port, models=("lenet",), first_start_builds="true", dataset_path=str(CIFAR10))
    base = f"http://127.0.0.1:{port}"
    page = f"{base}/models/lenet/layers/conv1/examples"
    seen_building = False
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            r = httpx.get(page, timeout=30)
            assert r.status_code == 200
            assert "convscope index --model" not in r.text, "the CLI hint while a build is queued or running"
            if 'hx-trigger="every 2s"' in r.text:
                seen_building = True
            elif 'class="pixelated"' in r.text:
                break
            time.sleep(2)  # as the page's own polling does
        else:
            raise AssertionError("the index did not appear")
        assert seen_building, "the page showed the build's progress before the index was there"
        jobs = httpx.get(f"{base}/api/jobs").json()["jobs"]
        index = [j for j in jobs if j["kind"] == "index"]
        assert [j["state"] for j in index] == ["done"] and index[0]["params"]["model"] == "lenet"
        assert index[0]["total"] == 10_000  # the whole test split
        renders = [j for j in jobs if j["kind"] == "featvis-many"]
        assert sorted(j["params"]["layer"] for j in renders) == ["conv1", "conv2"]  # queued after the index
        ex = httpx.get(f"{base}/api/models/lenet/layers/conv1/channels/0/examples").json()
        assert len(ex["examples"]) == 9
    finally:
        proc.terminate()
        proc.wait(20)


def test_no_data_set_keeps_the_cli_hint(tmp_path: Path, zoo: Zoo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a data set (and without downloads) no build is queued: the page says how to build one."""
    monkeypatch.setattr(firststart, "SHARED_CIFAR10", Path("no-such-dir") / "cifar10.zip")
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", first_start_builds=True,
                        dataset_path=None, dataset_download=False, torchvision_models=[])
    with TestClient(create_app(settings, zoo=zoo)) as c:
        assert [j for j in c.get("/api/jobs").json()["jobs"] if j["kind"] == "index"] == []
        assert "convscope index --model lenet" in c.get("/models/lenet/layers/conv1/examples").text


def test_low_priority_lane_runs_at_nice_19_and_waits_for_quiet() -> None:
    import os
    import sys
    import threading

    from app.jobs import LOW_PRIORITY, JobQueue
    from app.runtime.gate import Gate

    gate = Gate(1, 1.0)
    q = JobQueue(gate, quiet_s=0.3)
    seen: dict[str, float] = {}

    def work(job: object) -> None:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        t = time.monotonic()
        q.yield_to_interactive(job, low=True)  # type: ignore[arg-type]
        seen["waited"] = time.monotonic() - t

    gate.last_used = time.monotonic()  # a request just ended
    job = q.submit("test", "low", work, lane=LOW_PRIORITY)
    deadline = time.time() + 10
    while job.active and time.time() < deadline:
        time.sleep(0.02)
    q.close()
    assert job.state == "done" and job.low_priority
    assert seen["waited"] >= 0.2  # resumed only after the gate was quiet for quiet_s
    if sys.platform.startswith("linux"):
        assert seen["nice"] == 19

"""The one job model: index builds and feature visualizations answer the same schema through /api/jobs,
are listed and cancelled there, and show one progress partial in the browser."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_examples_resume import tiny_imagefolder

from app.config import Settings
from app.core.zoo import Zoo
from app.main import create_app

FIELDS = {"id", "kind", "state", "done", "total", "percent", "resumed_from", "rate", "eta_s", "value", "message",
          "error", "params", "created", "started", "finished", "url", "result_url", "page_url", "preview_url"}


@pytest.fixture
def jc(tmp_path: Path, zoo: Zoo) -> Iterator[TestClient]:
    tiny = tiny_imagefolder(tmp_path / "tiny", n=24)
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "no-models", torchvision_models=[],
                        default_model="lenet", dataset_path=str(tiny), torch_threads=1)
    with TestClient(create_app(settings, zoo=zoo)) as c:
        yield c


def poll(c: TestClient, job_id: str, timeout: float = 90) -> list[dict]:
    """Every answer of /api/jobs/{id} until the job ends."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = c.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["state"] not in ("queued", "running"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {seen[-1]}")


def test_both_kinds_report_through_the_one_job_api(jc: TestClient) -> None:
    build = jc.post("/api/indexes", json={"model": "lenet", "dataset": "default", "split": "test"})
    assert build.status_code == 202 and build.headers["location"] == f"/api/jobs/{build.json()['id']}"
    fv = jc.post("/api/models/lenet/layers/conv1/channels/2/featvis", params={"steps": 12})
    assert fv.status_code == 202 and fv.headers["location"].startswith("/api/jobs/")
    fv_id = fv.json()["job"]["id"]
    for job_id, kind, total in ((build.json()["id"], "index", 24), (fv_id, "featvis", 12)):
        answers = poll(jc, job_id)
        assert all(set(a) == FIELDS for a in answers), "one schema for every job and state"
        dones = [a["done"] for a in answers]
        assert dones == sorted(dones), "progress never goes backwards"
        last = answers[-1]
        assert last["kind"] == kind and last["state"] == "done" and last["done"] == last["total"] == total
        assert last["percent"] == 100.0 and last["started"] <= last["finished"]
        assert jc.get(last["result_url"]).status_code == 200, last["result_url"]  # the result is where it says
        assert jc.get(last["page_url"]).status_code == 200
    # the former address of a build answers the same schema, and is marked deprecated
    old = jc.get(f"/api/indexes/{build.json()['id']}").json()
    assert old == jc.get(f"/api/jobs/{build.json()['id']}").json()
    spec = jc.get("/openapi.json").json()
    assert spec["paths"]["/api/indexes/{job_id}"]["get"].get("deprecated") is True
    assert "JobOut" in str(spec["paths"]["/api/jobs/{job_id}"]["get"]["responses"]["200"])
    listed = jc.get("/api/jobs").json()["jobs"]
    assert {j["id"] for j in listed} >= {build.json()["id"], fv_id} and listed[0]["created"] >= listed[-1]["created"]
    assert {j["kind"] for j in jc.get("/api/jobs", params={"kind": "index"}).json()["jobs"]} == {"index"}


def test_delete_cancels_any_job_and_unknown_ids_are_404(jc: TestClient) -> None:
    r = jc.post("/api/models/lenet/layers/conv2/channels/0/featvis", params={"steps": 2000})
    job_id = r.json()["job"]["id"]
    d = jc.delete(f"/api/jobs/{job_id}")
    assert d.status_code == 202 and d.json()["id"] == job_id
    assert poll(jc, job_id)[-1]["state"] == "cancelled"
    for method in ("get", "delete"):
        r = getattr(jc, method)("/api/jobs/nope")
        assert r.status_code == 404 and r.json()["code"] == "unknown_job" and "GET /api/jobs" in r.json()["detail"]


def test_one_progress_partial_for_every_kind(jc: TestClient) -> None:
    """The job page and its polled panel are the same template for a build and a feature visualization."""
    build = jc.post("/api/indexes", json={"model": "lenet", "dataset": "default"}).json()
    fv = jc.post("/api/models/lenet/layers/conv1/channels/1/featvis", params={"steps": 8}).json()["job"]
    for job in (build, fv):
        page = jc.get(f"/jobs/{job['id']}")
        assert page.status_code == 200 and "<html" in page.text
        assert re.search(rf'<section class="job" id="job-{job["id"]}" data-state="\w+" data-kind="{job["kind"]}"',
                         page.text)
        poll(jc, job["id"])
        panel = jc.get(f"/jobs/{job['id']}/panel")
        assert panel.status_code == 200 and "<html" not in panel.text and 'data-state="done"' in panel.text
        assert "hx-trigger" not in panel.text  # a finished job stops polling
    # the index build's panel links to the examples it made
    panel = jc.get(f"/jobs/{build['id']}/panel").text
    assert 'href="/models/lenet/layers/conv1/examples"' in panel

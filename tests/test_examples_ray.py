"""Index builds on Ray (#22): shards mapped over actors give the single-process build's index, bit for bit,
and a cancelled build resumes from its checkpoint (through ``convscope index --engine ray``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.config import ROOT
from app.core.examples import ExamplesIndex, IndexPart
from app.features.examples.build import BuildCancelled, Progress, build, load_one_model
from app.features.examples.distributed import RAY_MISSING, aligned, build_ray, import_ray, plan_shards
from app.features.examples.index_store import IndexStore
from app.features.examples.sources import IndexBuildError, open_source
from app.store.database import Store
from tests.test_examples_resume import the_index, tiny_imagefolder

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install .[ray]): builds on Ray are not tested")
needs_lenet = pytest.mark.skipif(not (ROOT / "models" / "lenet" / "card.json").exists(), reason="lenet weights missing")

N, BATCH = 200, 8
SETTINGS = SimpleNamespace(models_dir=ROOT / "models", torchvision_models=[])


def test_shards_are_the_uncovered_images_cut_on_batch_bounds() -> None:
    assert plan_shards(50, [], 16) == [(0, 16), (16, 32), (32, 48), (48, 50)]
    assert plan_shards(50, [(16, 32), (40, 48)], 16) == [(0, 16), (32, 40), (48, 50)]
    assert plan_shards(50, [(0, 50)], 16) == []
    assert aligned([(0, 16), (40, 50)], 8, 50) and not aligned([(0, 12)], 8, 50)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(IndexBuildError, match=r"pip install 'convscope\[ray\]'"):
        import_ray()
    assert "pip install" in RAY_MISSING


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, ExamplesIndex]:
    """The data set, lenet, and the single-process build's index of it."""
    root = tmp_path_factory.mktemp("ray")
    data = tiny_imagefolder(root / "tiny", N)
    lm = load_one_model("lenet", SETTINGS)
    source, ds = open_source(str(data), "test")
    store = Store(root / "plain")
    try:
        plain, _ = build(lm, source, ds, IndexStore(store), batch_size=BATCH)
    finally:
        store.close()
    return data, lm, plain


def assert_same_index(a: ExamplesIndex, b: ExamplesIndex) -> None:
    assert a.part.covered == b.part.covered == [(0, N)]
    assert a.part.k == b.part.k and a.part.alias == b.part.alias and set(a.part.layers) == set(b.part.layers)
    for name, lt in a.part.layers.items():
        other = b.part.layers[name]
        assert (lt.kind, lt.shape, set(lt.modes)) == (other.kind, other.shape, set(other.modes))
        for mode, t in lt.modes.items():
            for attr in ("keys", "loc", "label", "pred"):  # keys hold value and data set index
                assert torch.equal(getattr(t, attr), getattr(other.modes[mode], attr)), (name, mode, attr)
    assert a.meta["refs"] == b.meta["refs"] and a.meta["count"] == b.meta["count"] == N
    assert a.examples("conv2", 3, "crop") == b.examples("conv2", 3, "crop")


@needs_ray
@needs_lenet
def test_a_build_on_two_actors_gives_the_plain_build_index(cluster: str, setup: tuple, tmp_path: Path) -> None:
    data, lm, plain = setup
    source, ds = open_source(str(data), "test")
    seen: list[int] = []
    store = Store(tmp_path)
    try:
        index, man = build_ray(lm, source, ds, IndexStore(store), settings=SETTINGS, batch_size=BATCH, actors=2,
                               shard_size=20, progress=lambda p: seen.append(p.done))  # 20 -> 3 batches a shard
        stored = IndexStore(store).load(man.key)
    finally:
        store.close()
    assert seen[0] == 0 and seen[-1] == N and len(seen) == 1 + 9  # 9 shards of 24 images, merged one by one
    assert man.count == N and stored is not None
    assert_same_index(index, plain)
    assert_same_index(stored, plain)


@needs_ray
@needs_lenet
def test_a_cancelled_build_resumes_from_its_checkpoint_with_the_rest(cluster: str, setup: tuple,
                                                                     tmp_path: Path) -> None:
    data, lm, plain = setup
    source, ds = open_source(str(data), "test")
    seen: list[Progress] = []
    store = Store(tmp_path)
    istore = IndexStore(store)
    try:
        with pytest.raises(BuildCancelled):  # stops once two shard results are in (and checkpointed)
            build_ray(lm, source, ds, istore, settings=SETTINGS, batch_size=BATCH, actors=2, shard_size=24,
                      checkpoint_every=0, progress=lambda p: seen.append(p), should_stop=lambda: len(seen) >= 3)
        (ck,) = (tmp_path / "examples" / "checkpoints").glob("*.npz")
        part, _, _ = IndexPart.from_npz(ck.read_bytes())
    finally:
        store.close()
    assert part.count == 48 and aligned(part.covered, BATCH, N) and not list(tmp_path.glob("examples/manifests/*"))

    # The rest through the CLI, on the same cluster, with other shards (16 images: 2 batches). A shard
    # mapped twice could not be merged (the parts would overlap), so the index proves what was mapped.
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(tmp_path), "CONVSCOPE_MODELS_DIR": str(ROOT / "models"),
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "index", "--model", "lenet", "--data", str(data),
                          "--batch-size", str(BATCH), "--engine", "ray", "--address", cluster, "--actors", "2"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "resuming from the checkpoint: 48 images already done" in out.stdout and f"{N} images, 12 layers, k=9" in out.stdout
    assert not list((tmp_path / "examples" / "checkpoints").glob("*.npz")), "the checkpoint goes once the index is stored"
    assert_same_index(the_index(tmp_path), plain)


@needs_ray
@needs_lenet
def test_the_server_runs_its_index_jobs_on_ray_when_configured(cluster: str, setup: tuple, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.features.examples import service
    from app.main import create_app

    data, _lm, plain = setup
    calls: list[str | None] = []

    def on_ray(*args: Any, **kw: Any) -> Any:
        calls.append(kw.get("address"))
        return build_ray(*args, **kw)

    monkeypatch.setattr(service, "build_ray", on_ray)
    settings = Settings(data_dir=tmp_path / "data", models_dir=ROOT / "models", torchvision_models=[],
                        serve_efficientnet=False, default_model="lenet", dataset_path=str(data), torch_threads=1,
                        index_engine="ray", ray_address=cluster, ray_actors=2, index_batch_size=BATCH)
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/indexes", json={"model": "lenet", "dataset": "default", "split": "test"})
        assert r.status_code == 202, r.text
        deadline = time.time() + 120
        while (job := c.get(r.headers["location"]).json())["state"] in ("queued", "running"):
            assert time.time() < deadline, job
            time.sleep(0.1)
        assert job["state"] == "done", job
        assert calls == [cluster]  # the job went to the configured cluster
        ex = c.get("/api/models/lenet/layers/conv2/channels/3/examples")
        assert ex.status_code == 200 and ex.json()["index"]["images"] == N
        svc = c.app.state.services.examples  # type: ignore[attr-defined]
        (man,) = svc.istore.manifests("lenet")
        assert_same_index(svc.istore.load(man.key), plain)

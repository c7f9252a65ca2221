"""An index build killed with SIGKILL mid-run resumes from its checkpoint and ends with the same index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.config import ROOT
from app.core.examples import ExamplesIndex
from app.features.examples.index_store import IndexStore
from app.store.database import Store


def tiny_imagefolder(root: Path, n: int = 200, classes: tuple[str, ...] = ("cat", "dog", "frog", "ship")) -> Path:
    """``n`` generated 32x32 PNG images in ImageFolder layout (test split); nothing from a real data set."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:32, 0:32]
    for i in range(n):
        c = classes[i % len(classes)]
        d = root / "test" / c
        d.mkdir(parents=True, exist_ok=True)
        base = np.stack([np.sin(x / (2 + i % 5) + i), np.cos(y / (3 + i % 7)), (x + y) / 62.0], -1)
        img = np.clip((base * 0.5 + 0.5) * 255 + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


def run_index(data: Path, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(data_dir), "CONVSCOPE_MODELS_DIR": str(ROOT / "models"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "app.cli", "index", "--model", "lenet", "--data", str(data), "--split", "test",
           "--batch-size", "8", "--workers", "0", "--threads", "1", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def the_index(data_dir: Path) -> ExamplesIndex:
    store = Store(data_dir)
    try:
        ist = IndexStore(store)
        (man,) = ist.manifests("lenet")
        idx = ist.load(man.key)
        assert idx is not None
        return idx
    finally:
        store.close()


@pytest.mark.skipif(not (ROOT / "models" / "lenet" / "card.json").exists(), reason="lenet weights missing")
def test_sigkill_then_resume_gives_the_same_index(tmp_path: Path) -> None:
    data = tiny_imagefolder(tmp_path / "tiny")
    straight = run_index(data, tmp_path / "straight")  # runs alongside, uninterrupted
    killed_dir = tmp_path / "killed"
    victim = run_index(data, killed_dir, "--checkpoint-every", "0", "--throttle", "0.1")
    ckpts = killed_dir / "examples" / "checkpoints"
    deadline = time.time() + 60
    while not (ckpts.is_dir() and any(ckpts.glob("*.npz"))):
        assert victim.poll() is None, victim.communicate()[0]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.25)  # a few more batches, then kill without warning
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    assert victim.returncode == -signal.SIGKILL
    assert not list((killed_dir / "examples" / "manifests").glob("*.json")), "the build finished before the kill"
    assert any(ckpts.glob("*.npz"))

    resumed = run_index(data, killed_dir)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out
    assert "resuming from the checkpoint" in out and "200 images" in out
    assert not any(ckpts.glob("*.npz")), "the checkpoint is removed once the index is stored"
    out2, _ = straight.communicate(timeout=120)
    assert straight.returncode == 0, out2
    assert "resuming" not in out2

    a, b = the_index(killed_dir), the_index(tmp_path / "straight")
    assert a.part.count == b.part.count == 200
    assert a.part.equal(b.part)
    for layer in a.part.layers:
        for mode in ("crop", "image"):
            for ch in (0, 5):
                if ch < a.part.layers[layer].shape[0]:
                    assert a.examples(layer, ch, mode) == b.examples(layer, ch, mode)
    assert a.meta["refs"] == b.meta["refs"]
    ex = a.examples("conv2", 3, "crop")
    assert len(ex) == 9 and ex[0].ref.startswith("test/") and ex[0].label_name in ("cat", "dog", "frog", "ship")

"""Shared fixtures: a tiny seeded zoo, an app client, a live server and a real browser.

Tests make their own images (:func:`make_photo`); nothing needs the network.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.config import ROOT, Settings
from app.core import nets
from app.core.zoo import ModelSpec, Preprocess, Zoo
from app.main import create_app

# A test process starts many apps; each start-up's full collection before gc.freeze would take
# ~0.2 s there. tests/test_api.py turns it on where it is under test.
os.environ.setdefault("CONVSCOPE_GC_FREEZE", "0")
# Apps under test start with what they are given: no first-start builds (tests/test_first_start.py turns
# them on), never a download.
os.environ.setdefault("CONVSCOPE_FIRST_START_BUILDS", "0")
os.environ.setdefault("CONVSCOPE_DATASET_DOWNLOAD", "0")
# The test client's host name, beside the local ones the server answers by default (Host allowlist).
os.environ.setdefault("CONVSCOPE_ALLOWED_HOSTS", '["testserver", "localhost", "127.0.0.1"]')

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_PRE = Preprocess(resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
CHROMIUM = "/usr/bin/chromium"


def random_spec(arch: str, seed: int = 0) -> ModelSpec:
    """One of our architectures with seeded random weights (no file needed)."""

    def load() -> torch.nn.Module:
        torch.manual_seed(seed)
        m = nets.build(arch)
        for mod in m.modules():  # give BN non-trivial statistics
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
        return m

    return ModelSpec(name=arch, title=f"{arch} (random weights)", source="test", preprocess=CIFAR_PRE, traceable=True,
                     categories=CIFAR_CLASSES, load=load, card={"test_accuracy": None})


def make_photo(width: int = 96, height: int = 72, seed: int = 0, fmt: str = "JPEG", **save_kw: object) -> bytes:
    """A synthetic 'photo': smooth colour gradients with a few shapes, encoded in ``fmt``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(1, width - 1), y / max(1, height - 1), 0.5 + 0.5 * np.sin(x / 7.0 + seed)], -1)
    img = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, max(1, width - 10))), int(rng.integers(0, max(1, height - 10)))
        d.ellipse([x0, y0, x0 + width // 4, y0 + height // 4], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kw)
    return buf.getvalue()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: the CI machine is small and shared (oversubscription is much slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def zoo() -> Zoo:
    return Zoo.load([random_spec("lenet", 1), random_spec("cifarnet", 2)])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "no-models", torchvision_models=[],
                    default_model="cifarnet")


@pytest.fixture
def client(settings: Settings, zoo: Zoo) -> Iterator[TestClient]:
    with TestClient(create_app(settings, zoo=zoo)) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, zoo: Zoo) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    settings = Settings(data_dir=tmp_path_factory.mktemp("live") / "data", models_dir=ROOT / "no-models",
                        torchvision_models=[], default_model="cifarnet")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, zoo=zoo), host="127.0.0.1", port=port,
                                           log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[object]:
    """One Playwright driver for the whole session (the sync API allows only one at a time)."""
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser(playwright_instance: object) -> Iterator[object]:
    """Debian's chromium driven by Playwright (headless). Fails in CI if chromium is missing."""
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,  # type: ignore[attr-defined]
                                            args=BROWSER_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.js_errors = errors  # type: ignore[attr-defined]
    yield pg
    ctx.close()

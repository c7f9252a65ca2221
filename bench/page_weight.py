"""Page weight: every page kind loaded in headless Chromium, with each page's bytes (the sum of the response
bodies it loads, as sent), request count and time to load, against a budget.

    .venv/bin/python bench/page_weight.py [--port 8765] [--shots DIR]

The app runs as a child process (``python -m app.cli serve``) over a fresh store in a temporary folder; the
script uploads twelve synthetic 512x512 photos (gradients, noise and shapes: they compress like photos) and
loads, each in a fresh browser context (an empty cache, a 1280x900 window): the home page with those twelve
recent photos, the photo page for every served model (before any layer is opened), a layer view, the examples
overview, the eight lecture sections, the live page, compare, the timeline and the feature-visualization
gallery. Budgets: 150 KB for the home page, 300 KB for a photo page, 250 KB for a lecture section.
``tests/test_page_weight.py`` measures the same pages and fails past twice their budget (a page's weight is
deterministic; its time is not, and is only printed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (its test)
from server import wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
KB = 1000
BUDGETS = {"home": 150 * KB, "photo": 300 * KB, "lecture": 250 * KB, "other": 400 * KB}
VIEWPORT = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class PageKind:
    name: str
    path: str
    budget: int


@dataclass(frozen=True)
class Weight:
    bytes: int
    requests: int
    seconds: float


def make_photo(seed: int, size: int = 512) -> bytes:
    """A photo-like JPEG: smooth colour gradients, sensor-like noise and a few soft shapes (not flat colour)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6.28, 3)
    base = np.stack([0.5 + 0.4 * np.sin(3 * x + phase[0]) * np.cos(2 * y),
                     0.5 + 0.4 * np.cos(4 * y + phase[1]),
                     0.5 + 0.4 * np.sin(2 * (x + y) + phase[2])], -1)
    img = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(7):
        x0, y0 = (int(v) for v in rng.integers(0, size - 60, 2))
        w, h = (int(v) for v in rng.integers(40, size // 2, 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x0 + w, y0 + h], fill=colour)
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 9, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def page_kinds(image_id: str, models: list[str], layer_model: str = "cifarnet",
               layer: str = "block1.conv1") -> list[PageKind]:
    """Every page kind, for the photo ``image_id`` (the newest upload) and the served ``models``."""
    other = BUDGETS["other"]
    kinds = [PageKind("home (12 recent photos)", "/", BUDGETS["home"])]
    kinds += [PageKind(f"photo page · {m}", f"/images/{image_id}?model={m}", BUDGETS["photo"]) for m in models]
    kinds += [PageKind(f"layer view · {layer_model} {layer}", f"/images/{image_id}/layers/{layer}?model={layer_model}", other),
              PageKind("examples overview", f"/models/{layer_model}/layers/{layer}/examples", other)]
    kinds += [PageKind(f"lecture {n}", f"/lecture/{n}", BUDGETS["lecture"]) for n in range(1, 9)]
    kinds += [PageKind("live", "/live", other), PageKind("compare", "/compare", other),
              PageKind("timeline", f"/models/{layer_model}/timeline?image={image_id}", other),
              PageKind("featvis gallery", f"/models/{layer_model}/featvis", other)]
    return kinds


def weigh(browser: object, url: str, *, scale: float = 1, shot: Path | None = None) -> Weight:
    """Load ``url`` in a fresh context (empty cache) until the network is idle: bytes of every response
    body as sent, the number of requests, the seconds it took. ``shot``: a full-page screenshot there."""
    ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=scale)  # type: ignore[attr-defined]
    try:
        page = ctx.new_page()
        done: list[object] = []
        page.on("requestfinished", lambda r: done.append(r))
        t0 = time.perf_counter()
        page.goto(url, wait_until="load")
        try:
            page.wait_for_load_state("networkidle", timeout=15_000)
        except Exception:  # noqa: BLE001 - a page with a long-lived stream never goes idle: weigh what it loaded
            pass
        seconds = time.perf_counter() - t0
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        total = sum(max(0, r.sizes()["responseBodySize"]) for r in done)  # type: ignore[attr-defined]
        return Weight(total, len(done), seconds)
    finally:
        ctx.close()


def upload(base: str, data: bytes, name: str) -> str:
    """POST one photo to /api/images (multipart); its id."""
    boundary = "convscope-bench"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/api/images", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return str(json.load(r)["id"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kb(n: int) -> str:
    return f"{n / KB:,.0f} KB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--shots", type=Path, default=None, help="save 2x screenshots of the home, photo and gallery pages here")
    a = ap.parse_args()
    port = a.port or _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="convscope-weight-") as tmp:
        env = {**os.environ, "CONVSCOPE_DATA_DIR": str(Path(tmp) / "data")}
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(base, proc)
            ids = [upload(base, make_photo(seed), f"photo-{seed:02d}.jpg") for seed in range(12)]
            with urllib.request.urlopen(f"{base}/api/models", timeout=30) as r:
                models = [m["name"] for m in json.load(r)]
            return report(base, page_kinds(ids[-1], models), a.shots)
        finally:
            proc.terminate()
            proc.wait(30)


def report(base: str, kinds: list[PageKind], shots: Path | None) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        for k in kinds:  # warm: the first visit of a page computes and caches what later visits reuse
            weigh(browser, base + k.path)
        print(f"{'page':<36} {'bytes':>9} {'requests':>9} {'load':>8} {'budget':>9}")
        over = 0
        for k in kinds:
            w = weigh(browser, base + k.path)
            ok = w.bytes <= k.budget
            over += not ok
            print(f"{k.name:<36} {kb(w.bytes):>9} {w.requests:>9} {w.seconds * 1000:>6.0f} ms {kb(k.budget):>9}"
                  f"{'' if ok else '  OVER'}")
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            for k in kinds:
                if k.name.startswith(("home", "photo page", "featvis", "lecture 3", "compare")):
                    slug = "".join(c if c.isalnum() else "-" for c in k.name).strip("-")
                    weigh(browser, base + k.path, scale=2, shot=shots / f"{slug}.png")
        browser.close()
    print(f"{len(kinds) - over} of {len(kinds)} pages within their budget")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

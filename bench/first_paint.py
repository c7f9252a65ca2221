"""The photo page's time to first paint, this checkout against another (the overview picture must not
slow the page down): both servers run side by side, the same photo is uploaded to both, and headless
Chromium loads each model's photo page in turns, reading the browser's first-contentful-paint entry.

    .venv/bin/python bench/first_paint.py --baseline /path/to/older/checkout [--rounds 7]

Prints, per model, the median first paint of each side and their ratio (this / baseline), and the
overview JSON's time over a plain forward is in bench/overview.py.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright
from server import wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("lenet", "cifarnet", "efficientnet-lite0")


def photo() -> bytes:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:384, 0:512]
    img = np.clip(np.stack([xx / 2, yy / 1.5, (xx + yy) % 255], -1) + rng.normal(0, 20, (384, 512, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def start(repo: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVSCOPE_DATA_DIR": tempfile.mkdtemp(), "CONVSCOPE_SERVE_EFFICIENTNET": "true",
           "CONVSCOPE_FIRST_START_BUILDS": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="another checkout of convscope (e.g. a git worktree)")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    sides = {"this": (ROOT, 8811), "baseline": (Path(a.baseline), 8812)}
    procs = {name: start(repo, port) for name, (repo, port) in sides.items()}
    try:
        data = photo()
        ids = {name: httpx.post(f"http://127.0.0.1:{port}/api/images", files={"file": ("p.jpg", data, "image/jpeg")},
                                timeout=60).json()["id"] for name, (_, port) in sides.items()}
        paints: dict[tuple[str, str], list[float]] = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium")
            for r in range(a.rounds + 1):  # the first round warms both servers' caches up
                order = list(sides) if r % 2 else list(reversed(sides))
                for model in MODELS:
                    for name in order:
                        port = sides[name][1]
                        page = browser.new_page(viewport={"width": 1280, "height": 900})
                        page.goto(f"http://127.0.0.1:{port}/images/{ids[name]}?model={model}")
                        fcp = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0]?.startTime")
                        page.close()
                        if r and fcp is not None:
                            paints.setdefault((name, model), []).append(float(fcp))
            browser.close()
        print(f"{'model':<22}{'this (ms)':>12}{'baseline (ms)':>15}{'ratio':>8}")
        for model in MODELS:
            this = statistics.median(paints[("this", model)])
            base = statistics.median(paints[("baseline", model)])
            print(f"{model:<22}{this:>12.0f}{base:>15.0f}{this / base:>8.2f}")
        return 0
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())

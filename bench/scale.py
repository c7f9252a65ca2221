"""Throughput of `convscope serve --workers 1` against `--workers 2` under bench/load.py's mix (uploads,
predictions, activation PNGs), each on a fresh store, measured in one run; prints both and their ratio.

(The issue's Ray index-build ratios are not measured here: builds on Ray are not implemented yet.)

    .venv/bin/python bench/scale.py --model cifarnet --seconds 30 --requests 3000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import arun, photo, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def serve(workers: int, model: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVSCOPE_DATA_DIR": tempfile.mkdtemp(), "CONVSCOPE_DEFAULT_MODEL": model,
           "CONVSCOPE_FIRST_START_BUILDS": "false",
           "CONVSCOPE_SERVE_EFFICIENTNET": "true" if model == "efficientnet-lite0" else "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    deadline = time.time() + 180
    while len(seen) < workers and time.time() < deadline:  # every worker ready (each answers with its pid)
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, headers={"Connection": "close"})
            if r.status_code == 200:
                seen.add(r.json().get("worker", 0))
        except httpx.HTTPError:
            time.sleep(0.2)
    return proc


def measure(workers: int, a: argparse.Namespace) -> dict[str, object]:
    proc = serve(workers, a.model, a.port)
    base = f"http://127.0.0.1:{a.port}"
    try:
        arun(run_load(base, a.model, a.clients, a.seconds, a.warmup, [photo(10**6 + i) for i in range(a.warmup // 2 + 10)]))
        return arun(run_load(base, a.model, a.clients, a.seconds, a.requests,
                             [photo(i) for i in range(a.requests // 2 + 10)]))
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--port", type=int, default=8798)
    a = ap.parse_args()
    one, two = measure(1, a), measure(2, a)
    for name, r in (("1 worker ", one), ("2 workers", two)):
        print(f"{name}: {r['rps']:.1f} requests/s  p50 {1000 * r['p50']:.0f} ms  p95 {1000 * r['p95']:.0f} ms  "
              f"codes {r['codes']}")
    print(f"2 workers / 1 worker throughput: {float(two['rps']) / float(one['rps']):.2f}x ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

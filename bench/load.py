"""Bounded load test on loopback: concurrent clients mixing uploads, predictions and activations.

Starts the server (``convscope serve``) as a subprocess on 127.0.0.1, then runs ``--clients``
concurrent clients for at most ``--seconds`` seconds and at most ``--requests`` requests:
30 % uploads of new photos, 50 % predictions (of fresh and earlier uploads), 20 % activation PNGs.

Prints throughput, p50/p95/p99 latency, error counts (a 503 with Retry-After is counted apart),
the server's RSS before and after, and the raw batched forward throughput of the same model
measured in the same run, with the ratio server req/s / raw forward img/s (goal >= 0.8).

    .venv/bin/python bench/load.py [--model cifarnet] [--clients 32] [--seconds 60] [--requests 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(a).resize((160, 120), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def raw_forward_throughput(model: str, seconds: float = 5.0) -> float:
    """Images per second of a plain batched forward pass (batch 32) of the served model."""
    from app.config import Settings
    from app.core.zoo import Zoo, discover

    s = Settings()
    zoo = Zoo.load([sp for sp in discover(s.models_dir, effnet=model == "efficientnet-lite0") if sp.name == model])
    lm = zoo.get(model)
    x = torch.randn(32, *lm.spec.preprocess.input_size)
    n, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        lm.module(x)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            lm.module(x)
            n += 32
    return n / (time.perf_counter() - t0)


async def run_load(base: str, model: str, clients: int, seconds: float, max_requests: int) -> dict[str, object]:
    lat: list[float] = []
    codes: Counter[str] = Counter()
    ids: list[str] = []
    state = {"n": 0, "seed": 0}
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
        r = await c.post("/api/images", files={"file": ("seed.jpg", photo(10**6), "image/jpeg")})
        ids.append(r.json()["id"])
        layer = (await c.get(f"/api/models/{model}")).json()["first_conv"]

        async def client(k: int) -> None:
            rnd = random.Random(k)
            while time.perf_counter() < deadline and state["n"] < max_requests:
                state["n"] += 1
                roll = rnd.random()
                t0 = time.perf_counter()
                try:
                    r = await one(roll, rnd)
                except httpx.HTTPError as e:  # counted, not fatal: the report says what happened
                    codes[f"client {type(e).__name__}"] += 1
                    continue
                lat.append(time.perf_counter() - t0)
                if r.status_code == 503 and "retry-after" in r.headers:
                    codes["503+Retry-After"] += 1
                else:
                    codes[str(r.status_code)] += 1

        async def one(roll: float, rnd: random.Random) -> httpx.Response:
            if roll < 0.3:
                state["seed"] += 1
                r = await c.post("/api/images", files={"file": ("p.jpg", photo(state["seed"]), "image/jpeg")})
                if r.status_code in (200, 201):
                    ids.append(r.json()["id"])
                return r
            if roll < 0.8:
                iid = ids[-1] if rnd.random() < 0.5 else rnd.choice(ids)
                return await c.get(f"/api/images/{iid}/predictions", params={"model": model})
            return await c.get(f"/api/images/{rnd.choice(ids)}/activations/{layer}",
                               params={"model": model, "format": "png"})

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"requests": len(lat), "wall": wall, "rps": len(lat) / wall, "p50": q[49], "p95": q[94], "p99": q[98],
            "codes": dict(codes)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=8799)
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp())
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(data), "CONVSCOPE_DEFAULT_MODEL": a.model,
           "CONVSCOPE_SERVE_EFFICIENTNET": "true" if a.model == "efficientnet-lite0" else "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(a.port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{a.port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        # warm-up (not counted), then measure
        asyncio.run(run_load(base, a.model, 4, 3, 200))
        rss0 = rss_mb(proc.pid)
        res = asyncio.run(run_load(base, a.model, a.clients, a.seconds, a.requests))
        rss1 = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    raw = raw_forward_throughput(a.model)
    print(f"model {a.model}, {a.clients} clients, {res['requests']} requests in {res['wall']:.1f} s")
    print(f"throughput {res['rps']:.1f} req/s; latency p50 {1000 * res['p50']:.0f} ms, p95 {1000 * res['p95']:.0f} ms, "
          f"p99 {1000 * res['p99']:.0f} ms")
    print(f"status codes: {res['codes']}")
    errors = sum(v for k, v in res["codes"].items() if k not in ("200", "201", "503+Retry-After"))
    print(f"errors other than 503+Retry-After: {errors}")
    print(f"server RSS: {rss0:.0f} MB before, {rss1:.0f} MB after ({rss1 - rss0:+.0f} MB over {res['requests']} requests)")
    print(f"raw batched forward: {raw:.0f} img/s; throughput ratio {res['rps'] / raw:.2f}x (goal >= 0.8)")


if __name__ == "__main__":
    main()

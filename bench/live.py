"""Live camera throughput: a scripted client sends 320x240 JPEG frames over the real transport
(WebSocket /ws/live) and prints frames/s shown and the p50/p95 latency (frame sent -> result received).

The client behaves like static/js/live.js: at most two frames in flight, a new frame as soon as a
result comes back; the server keeps only the newest pending frame per connection. The server runs
in a child process (uvicorn), so the client does not share its interpreter.

    .venv/bin/python bench/live.py [--seconds 10] [--models cifarnet,efficientnet-lite0] [--threads 1]

Goal: >= 15 frames/s for cifarnet, >= 5 for efficientnet-lite0 on the 2-core machine.
cifarnet is served from models/cifarnet (weights, or its newest training snapshot, or random weights
when neither exists yet: the time of a forward pass does not depend on the weight values).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from server import wait_ready  # noqa: E402


def frames(n: int = 24, w: int = 320, h: int = 240) -> list[bytes]:
    """Synthetic camera frames: a moving gradient with a bright disc, JPEG quality 80 (like the browser)."""
    out = []
    y, x = np.mgrid[0:h, 0:w]
    for i in range(n):
        t = i / n * 2 * np.pi
        r = 0.5 + 0.5 * np.sin(x / 23.0 + t)
        g = 0.5 + 0.5 * np.cos(y / 17.0 - t)
        b = ((x - w / 2 - 80 * np.cos(t)) ** 2 + (y - h / 2 - 50 * np.sin(t)) ** 2 < 40 ** 2).astype(float)
        img = Image.fromarray((np.stack([r, g, b], -1) * 255).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def _cifarnet_spec():  # type: ignore[no-untyped-def]
    import dataclasses

    import torch

    from app.core import nets
    from app.core.zoo import load_safetensors, our_model_spec

    folder = ROOT / "models" / "cifarnet"
    if (folder / "card.json").exists() and (folder / "weights.safetensors").exists():
        return our_model_spec(folder)
    from app.core.zoo import ModelSpec, Preprocess

    snaps = sorted((folder / "snapshots").glob("epoch-*.safetensors"))

    def load() -> torch.nn.Module:
        m = nets.build("cifarnet", 10)
        if snaps:
            m.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in load_safetensors(snaps[-1]).items()})
        return m

    pre = Preprocess(resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    spec = ModelSpec(name="cifarnet", title="CifarNet", source="convscope", preprocess=pre,
                     categories=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                 "truck"), load=load, card={"name": "cifarnet"})
    return dataclasses.replace(spec)


def serve(port: int, threads: int, models: list[str]) -> None:
    import uvicorn

    from app.config import Settings
    from app.core.zoo import Zoo, efficientnet_spec
    from app.main import create_app

    specs = []
    if "cifarnet" in models:
        specs.append(_cifarnet_spec())
    if "efficientnet-lite0" in models:
        specs.append(efficientnet_spec())
    import tempfile

    from app.runtime import compute

    # as the app does: only the lead thread runs torch on several threads (app.runtime.compute)
    zoo = compute.setup(threads).run(Zoo.load, specs)
    settings = Settings(data_dir=Path(tempfile.mkdtemp()) / "data", models_dir=ROOT / "models",
                        torchvision_models=[], default_model="cifarnet", torch_threads=threads)
    uvicorn.run(create_app(settings, zoo=zoo), host="127.0.0.1", port=port, log_level="warning")


async def run_client(url: str, model: str, seconds: float, data: list[bytes], in_flight: int = 2) -> dict[str, float]:
    import websockets

    lat: list[float] = []
    sent_at: dict[int, float] = {}
    async with websockets.connect(f"{url}/ws/live?model={model}", max_size=None) as ws:
        json.loads(await ws.recv())  # config
        # warm-up: a few frames, not counted
        for i in range(3):
            await ws.send(data[i % len(data)])
            json.loads(await ws.recv())
        seq = 3
        shown = 0
        dropped0 = None
        last = {}
        t0 = time.perf_counter()
        end = t0 + seconds

        async def send_one() -> None:
            nonlocal seq
            seq += 1
            sent_at[seq] = time.perf_counter()
            await ws.send(data[seq % len(data)])

        for _ in range(in_flight):
            await send_one()
        while True:
            m = json.loads(await ws.recv())
            now = time.perf_counter()
            if m.get("type") != "result":
                continue
            if dropped0 is None:
                dropped0 = m["dropped"]
            last = m
            lat.append((now - sent_at[m["seq"]]) * 1000)
            for k in [k for k in sent_at if k <= m["seq"]]:
                del sent_at[k]
            shown += 1
            if now >= end:
                break
            while len(sent_at) < in_flight:
                await send_one()
        elapsed = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=20)
    return {"fps": shown / elapsed, "p50": statistics.median(lat), "p95": q[18], "frames": shown,
            "dropped": float(last.get("dropped", 0) - (dropped0 or 0)), "server_ms": float(last.get("server_ms", 0))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--models", default="cifarnet,efficientnet-lite0")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    if a.serve:
        serve(a.serve, a.threads, models)
        return 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--threads", str(a.threads),
                             "--models", a.models], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout=120, path="/healthz")
        data = frames()
        print(f"live bench: 320x240 JPEG frames over WebSocket, {a.seconds:g} s per model, server torch threads "
              f"{a.threads}, {os.cpu_count()} CPUs")
        print(f"{'model':<20} {'frames/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'shown':>6} {'dropped':>8} {'server ms':>10}")
        for m in models:
            r = asyncio.run(run_client(f"ws://127.0.0.1:{port}", m, a.seconds, data))
            print(f"{m:<20} {r['fps']:>9.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['frames']:>6.0f} {r['dropped']:>8.0f} "
                  f"{r['server_ms']:>10.1f}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

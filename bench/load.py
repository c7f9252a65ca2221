"""Bounded load test on loopback: concurrent clients mixing uploads, predictions and activations.

Starts the server (``convscope serve``) as a subprocess on 127.0.0.1, then runs ``--clients``
concurrent clients for at most ``--seconds`` seconds and at most ``--requests`` requests:
30 % uploads of new photos, 50 % predictions (of fresh and earlier uploads), 20 % activation PNGs.

A warm-up of ``--warmup`` requests (same mix, 5,000 by default) comes first, so that the server's
bounded caches (preprocessed inputs, analyses, decoded pictures, probabilities, image records) are
full before RSS is read: what is left to see is growth with the number of requests. Prints
throughput, p50/p95/p99 latency, error counts (a 503 with Retry-After is counted apart), the
server's RSS (when ready, after the warm-up, at the end), and the raw batched forward throughput
of the same model measured in the same run (before and after the load, as one pass on every core
and as one pass per core side by side; the better one), with the ratio server req/s / raw forward
img/s (goal >= 0.8).

    .venv/bin/python bench/load.py [--model cifarnet] [--clients 32] [--seconds 60] [--requests 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
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
from server import wait_ready  # noqa: E402


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(a).resize((160, 120), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def raw_forward_throughput(model: str, seconds: float = 2.5) -> dict[str, float]:
    """Images per second of plain batched forward passes (batch 32) of the served model, two ways:

    * ``one pass``: one pass at a time using every core (intra-op threads);
    * ``side by side``: one pass per core at once, one thread each (how the server runs under load).

    The better of the two is the machine's raw batched throughput. The pass is the one predictions
    run (the traced network when the model has one).
    """
    import threading

    from app.config import Settings
    from app.core.zoo import Zoo, discover

    s = Settings()
    zoo = Zoo.load([sp for sp in discover(s.models_dir, effnet=model == "efficientnet-lite0") if sp.name == model])
    lm = zoo.get(model)
    cores = os.cpu_count() or 1

    net = lm.plain_pass  # the pass the server's predictions run

    def loop(threads: int, counts: list[int], stop: float) -> None:
        torch.get_num_threads()
        torch.set_num_threads(threads)
        x = torch.randn(32, *lm.spec.preprocess.input_size)
        with torch.inference_mode():
            net(x)
            while time.perf_counter() < stop:
                net(x)
                counts.append(32)

    out = {}
    for name, workers, threads in (("one pass", 1, cores), ("side by side", cores, 1)):
        counts: list[int] = []
        t0 = time.perf_counter()
        ts = [threading.Thread(target=loop, args=(threads, counts, t0 + seconds)) for _ in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        out[name] = sum(counts) / (time.perf_counter() - t0)
    return out


class Conn:
    """One keep-alive HTTP/1.1 connection with a minimal client (like one of wrk's connections).

    httpx costs about a millisecond of CPU per request, which on a 2-core machine is taken from the
    server under test; this client writes ready-made request bytes and reads back the status, a few
    headers and a Content-Length body.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", ctype: str = "") -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" not in headers:
            raise ConnectionError(f"response without Content-Length to {path}")
        data = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


BOUNDARY = "convscopebenchboundary"


def multipart(name: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


async def run_load(base: str, model: str, clients: int, seconds: float, max_requests: int,
                   photos: list[bytes]) -> dict[str, object]:
    host, port = base.removeprefix("http://").split(":")
    lat: list[float] = []
    codes: Counter[str] = Counter()
    ids: list[str] = []
    state = {"n": 0, "photo": 0}
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    first = Conn(host, int(port))
    st, _, body = await first.request("POST", "/api/images", multipart("seed.jpg", photos[0]), ctype)
    ids.append(json.loads(body)["id"])
    st, _, body = await first.request("GET", f"/api/models/{model}")
    layer = json.loads(body)["first_conv"]
    await first.close()
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        rnd = random.Random(k)
        conn = Conn(host, int(port))
        while time.perf_counter() < deadline and state["n"] < max_requests:
            state["n"] += 1
            roll = rnd.random()
            t0 = time.perf_counter()
            try:
                if roll < 0.3:
                    state["photo"] += 1
                    st, hdrs, body = await conn.request(
                        "POST", "/api/images", multipart("p.jpg", photos[state["photo"] % len(photos)]), ctype)
                    if st in (200, 201):
                        ids.append(json.loads(body)["id"])
                elif roll < 0.8:
                    iid = ids[-1] if rnd.random() < 0.5 else rnd.choice(ids)
                    st, hdrs, body = await conn.request("GET", f"/api/images/{iid}/predictions?model={model}")
                else:
                    st, hdrs, body = await conn.request(
                        "GET", f"/api/images/{rnd.choice(ids)}/activations/{layer}?model={model}&format=png")
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:  # counted, not fatal
                codes[f"client {type(e).__name__}"] += 1
                await conn.close()
                continue
            lat.append(time.perf_counter() - t0)
            codes["503+Retry-After" if st == 503 and "retry-after" in hdrs else str(st)] += 1
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=100)
    return {"requests": len(lat), "wall": wall, "rps": len(lat) / wall, "p50": q[49], "p95": q[94], "p99": q[98],
            "codes": dict(codes)}


def arun(coro):  # type: ignore[no-untyped-def]
    """asyncio.run on uvloop when it is there (as the server's uvicorn uses): less client CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=5000,
                    help="requests (same mix, same clients) before measuring, until the bounded caches are full "
                         "(the input cache alone holds 1,365 cifarnet inputs: ~4,500 requests of this mix)")
    ap.add_argument("--port", type=int, default=8799)
    a = ap.parse_args()
    raw_before = raw_forward_throughput(a.model)  # before and after the load: the machine's speed drifts
    data = Path(tempfile.mkdtemp())
    env = {**os.environ, "CONVSCOPE_DATA_DIR": str(data), "CONVSCOPE_DEFAULT_MODEL": a.model,
           "CONVSCOPE_SERVE_EFFICIENTNET": "true" if a.model == "efficientnet-lite0" else "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(a.port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{a.port}"
    try:
        wait_ready(base, proc, timeout=60)
        # warm-up (not counted), then measure
        rss_start = rss_mb(proc.pid)
        arun(run_load(base, a.model, a.clients, a.seconds, a.warmup,
                      [photo(10**6 + i) for i in range(int(a.warmup * 0.35) + 10)]))
        photos = [photo(i) for i in range(int(a.requests * 0.35) + 10)]  # every upload a new photo
        rss0, cpu0 = rss_mb(proc.pid), cpu_s(proc.pid)
        res = arun(run_load(base, a.model, a.clients, a.seconds, a.requests, photos))
        rss1, cpu1 = rss_mb(proc.pid), cpu_s(proc.pid)
        stats = httpx.get(base + "/api/stats", timeout=10).json()
    finally:
        proc.terminate()
        proc.wait(30)
    raw_after = raw_forward_throughput(a.model)
    raw_ways = {k: (raw_before[k] + raw_after[k]) / 2 for k in raw_before}
    raw = max(raw_ways.values())
    print(f"model {a.model}, {a.clients} clients, {res['requests']} requests in {res['wall']:.1f} s")
    print(f"throughput {res['rps']:.1f} req/s; latency p50 {1000 * res['p50']:.0f} ms, p95 {1000 * res['p95']:.0f} ms, "
          f"p99 {1000 * res['p99']:.0f} ms")
    print(f"status codes: {res['codes']}")
    errors = sum(v for k, v in res["codes"].items() if k not in ("200", "201", "503+Retry-After"))
    print(f"errors other than 503+Retry-After: {errors}")
    print(f"server RSS: {rss_start:.0f} MB when ready, {rss0:.0f} MB after {a.warmup} warm-up requests, "
          f"{rss1:.0f} MB after ({rss1 - rss0:+.0f} MB over {res['requests']} requests; goal <= 50 MB)")
    print(f"server CPU {1000 * (cpu1 - cpu0) / res['requests']:.2f} ms per request; mean batch: predictions "
          f"{stats['predictions']['mean_batch']}, analyses and single-layer passes {stats['analyses']['mean_batch']}")
    gcs = stats.get("gc") or {}
    print(f"server garbage collections since start (generations 0/1/2): {gcs.get('collections')}, longest "
          f"{gcs.get('longest_ms')} ms, in all {gcs.get('total_ms')} ms; objects frozen at start-up: {gcs.get('frozen')}")
    print("raw batched forward (batch 32), before / after the load: " + "; ".join(
        f"{k} {raw_before[k]:.0f} / {raw_after[k]:.0f} img/s" for k in raw_before))
    print(f"raw batched forward: {raw:.0f} img/s (the better way, mean of before and after); "
          f"throughput ratio {res['rps'] / raw:.2f}x (goal >= 0.8)")


if __name__ == "__main__":
    main()

"""Hostile uploads beside normal traffic: does an attacker slow the class down?

Starts ``convscope serve`` (its defaults: decoder processes, decode budget, timeouts), then runs two
phases of ``--seconds`` each with ``--clients`` threads: normal traffic alone (photo uploads and their
predictions), then the same with half of the clients sending the hostile pictures of
tests/hostile_files.py in turn. Prints the normal requests' p50 and p99 latency in each phase and their
ratio (mixed / alone), the server's peak resident memory (server and decoder processes), how the hostile
uploads were answered, and the errors other than 4xx/503 (there must be none).

    .venv/bin/python bench/hostile.py [--seconds 60] [--clients 8]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile_files import HOSTILE  # noqa: E402
from server import wait_ready  # noqa: E402


def photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    base = np.stack([xx / 320 * 255, yy / 240 * 255, (xx + yy) % 255], -1)
    img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def peak_rss_mb(pid: int) -> list[float]:
    """VmHWM of the server, then of each of its children (the decoder processes), in MB."""
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    out = []
    for p in pids:
        try:
            out += [int(line.split()[1]) / 1024 for line in Path(f"/proc/{p}/status").read_text().splitlines()
                    if line.startswith("VmHWM:")]
        except OSError:
            pass
    return out


def run_phase(url: str, seconds: float, clients: int, hostile_clients: int, files: dict[str, bytes]) -> dict:
    lat: list[float] = []
    answers: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.time() + seconds
    seed = iter(range(10**9))

    def normal() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.time() < stop:
                with lock:
                    s = next(seed)
                t0 = time.perf_counter()
                r = c.post("/api/images", files={"file": (f"p{s}.jpg", photo(s), "image/jpeg")})
                if r.status_code in (200, 201):
                    r = c.get(f"/api/images/{r.json()['id']}/predictions", params={"model": "cifarnet"})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        lat.append(dt)
                    elif r.status_code >= 500 and r.status_code != 503:
                        errors.append(f"normal {r.status_code}")

    def hostile(offset: int) -> None:
        names = list(files)
        i = offset
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.time() < stop:
                name = names[i % len(names)]
                i += 1
                r = c.post("/api/images", files={"file": (f"{name}.bin", files[name], "application/octet-stream")})
                with lock:
                    answers[f"{name}: {r.status_code} {r.json().get('code', '') if r.status_code >= 400 else ''}"] += 1
                    if r.status_code >= 500 and r.status_code != 503:
                        errors.append(f"{name} {r.status_code}")

    threads = [threading.Thread(target=normal) for _ in range(clients - hostile_clients)]
    threads += [threading.Thread(target=hostile, args=(k,)) for k in range(hostile_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return {"n": len(lat), "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
            "answers": answers, "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=8791)
    a = ap.parse_args()
    files = {name: make() for name, make in HOSTILE.items()}
    env = {**os.environ, "CONVSCOPE_DATA_DIR": tempfile.mkdtemp(), "CONVSCOPE_SERVE_EFFICIENTNET": "false",
           "CONVSCOPE_DEFAULT_MODEL": "cifarnet"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(a.port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{a.port}"
    try:
        wait_ready(url, proc, timeout=120)
        half = a.clients // 2
        alone = run_phase(url, a.seconds, half, 0, files)  # the same normal clients in both phases
        rss_alone = peak_rss_mb(proc.pid)
        mixed = run_phase(url, a.seconds, a.clients, half, files)
        health = httpx.get(url + "/healthz").status_code
        print(f"normal traffic alone ({half} clients): {alone['n']} requests, p50 {alone['p50'] * 1000:.1f} ms, "
              f"p99 {alone['p99'] * 1000:.1f} ms")
        print(f"the same with {a.clients - half} clients sending hostile uploads: {mixed['n']} normal requests, "
              f"p50 {mixed['p50'] * 1000:.1f} ms, p99 {mixed['p99'] * 1000:.1f} ms")
        print(f"p99 ratio (with hostile / alone): {mixed['p99'] / alone['p99']:.2f}; "
              f"normal throughput ratio: {mixed['n'] / max(1, alone['n']):.2f}")
        rss = peak_rss_mb(proc.pid)
        print(f"peak RSS after normal traffic: server {rss_alone[0]:.0f} MB; after the hostile mix: server "
              f"{rss[0]:.0f} MB, decoder processes {', '.join(f'{r:.0f}' for r in rss[1:])} MB; /healthz after: {health}")
        print("hostile uploads answered:")
        for k, n in sorted(mixed["answers"].items()):
            print(f"  {k}: {n}")
        errs = alone["errors"] + mixed["errors"]
        print(f"errors other than 4xx/503: {len(errs)}" + (f" ({Counter(errs).most_common(5)})" if errs else ""))
        return 1 if errs else 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())

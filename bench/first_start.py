"""A fresh install's first start: how long the background builds take, and how much they slow
interactive requests.

Starts ``convscope serve`` (lenet and cifarnet, the settings of ``make run``) on an empty data
directory with CIFAR-10 at hand, and runs one client that uploads a new photo and asks for its
cifarnet predictions and analysis, then thinks for ``--think`` seconds (a person clicking: the
background work resumes after a quiet second, so each round starts beside a running batch), over and
over: first while the first start's jobs run, then once they are all done. Prints the first start's
duration and the ratio of the mean round latencies (during / after). Other load on the machine skews
it: run it on a quiet one. usage: python bench/first_start.py [--seconds 60] [--think 1.5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from server import wait_ready  # noqa: E402

from conftest import make_photo  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _active(base: str) -> list[dict]:
    return [j for j in httpx.get(base + "/api/jobs", params={"limit": 100}).json()["jobs"] if j["state"] in ("queued", "running")]


def _round(base: str, seed: int) -> float:
    t = time.perf_counter()
    r = httpx.post(base + "/api/images", files={"file": ("p.jpg", make_photo(320, 240, seed=seed), "image/jpeg")}, timeout=60)
    iid = r.json()["id"]
    httpx.get(f"{base}/api/images/{iid}/predictions", params={"model": "cifarnet"}, timeout=60).raise_for_status()
    httpx.get(f"{base}/api/images/{iid}/analysis", params={"model": "cifarnet"}, timeout=60).raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="length of each measuring window")
    p.add_argument("--think", type=float, default=1.5, help="pause between rounds (seconds)")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    port = _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVSCOPE_")}
    env.update(CONVSCOPE_DATA_DIR=str(tmp / "data"), CONVSCOPE_SERVE_EFFICIENTNET="false")
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        print(f"ready after {time.time() - t0:.1f} s; jobs: {len(_active(base))}")
        seed, during = 1000, []
        end = time.time() + a.seconds
        while time.time() < end and _active(base):
            seed += 1
            during.append(_round(base, seed))
            time.sleep(a.think)
        while _active(base):
            time.sleep(1)
        total = time.time() - t0
        jobs = httpx.get(base + "/api/jobs", params={"limit": 100}).json()["jobs"]
        for j in reversed(jobs):
            print(f"  {j['kind']:13s} {j['params'].get('model')} {j['params'].get('layer') or ''}: {j['state']}, "
                  f"{j['total']} units, {(j['finished'] or 0) - (j['started'] or 0):.1f} s")
        print(f"first start done after {total:.0f} s (with {len(during)} interactive rounds during it)")
        after = []
        end = time.time() + a.seconds
        while time.time() < end:
            seed += 1
            after.append(_round(base, seed))
            time.sleep(a.think)
        md, ma = statistics.mean(during), statistics.mean(after)
        print(f"interactive round (upload + predictions + analysis): {md * 1000:.0f} ms during the builds, "
              f"{ma * 1000:.0f} ms after ({len(during)} / {len(after)} rounds): during / after = {md / ma:.2f}")
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()

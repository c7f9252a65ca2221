"""A/B under load: two servers that differ in settings (or code), loaded in turns.

On a shared machine whose speed drifts by tens of percent within minutes, two load runs one after
the other compare the machine more than the servers. This starts both servers side by side (idle
while the other is loaded) and runs ``bench/load.py``'s mix against A and B alternately, the order
swapped every round, after one warm-up round each; it prints each round's throughput and server
CPU per request, and the ratio of the means B / A.

Each side is a list of ``NAME=value`` environment settings for its server; ``REPO=path`` runs the
server from another checkout (e.g. a ``git worktree`` of the commit before a change).

    .venv/bin/python bench/ab_load.py "" "CONVSCOPE_TORCH_THREADS=1" [--rounds 3] [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
from server import wait_ready  # noqa: E402


def start(settings: str, port: int, model: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVSCOPE_DATA_DIR": tempfile.mkdtemp(), "CONVSCOPE_DEFAULT_MODEL": model,
           "CONVSCOPE_SERVE_EFFICIENTNET": "true" if model == "efficientnet-lite0" else "false"}
    for kv in settings.split():
        k, _, v = kv.partition("=")
        env[k] = v
    repo = env.pop("REPO", str(load.ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}", proc, timeout=120)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help='settings of server A, e.g. "" (the defaults)')
    ap.add_argument("b", help='settings of server B, e.g. "CONVSCOPE_TORCH_THREADS=1"')
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000, help="requests a round (32 clients)")
    a = ap.parse_args()
    servers = {"A": (start(a.a, 8811, a.model), 8811), "B": (start(a.b, 8812, a.model), 8812)}
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    seed = 0
    try:
        for r in range(a.rounds + 1):
            for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
                proc, port = servers[tag]
                photos = [load.photo(10**7 * (1 + r) + seed + i) for i in range(int(a.requests * 0.35) + 10)]
                seed += 100_000  # every upload a new photo
                cpu0 = load.cpu_s(proc.pid)
                res = load.arun(load.run_load(f"http://127.0.0.1:{port}", a.model, 32, 120, a.requests, photos))
                cpu = 1000 * (load.cpu_s(proc.pid) - cpu0) / res["requests"]
                if r:
                    results[tag].append((res["rps"], cpu))
                print(f"round {r} {tag}: {res['rps']:.1f} req/s, server CPU {cpu:.2f} ms a request, codes {res['codes']}"
                      + (" (warm-up)" if not r else ""), flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
    mean = {k: (statistics.mean(x for x, _ in v), statistics.mean(c for _, c in v)) for k, v in results.items()}
    print(f"A: {mean['A'][0]:.1f} req/s, {mean['A'][1]:.2f} ms CPU a request; "
          f"B: {mean['B'][0]:.1f} req/s, {mean['B'][1]:.2f} ms; B/A throughput {mean['B'][0] / mean['A'][0]:.3f}")


if __name__ == "__main__":
    main()

"""Scaling out, measured in one run: serving and index builds on more workers.

* ``serve``: throughput of `convscope serve --workers 1` against `--workers 2` under bench/load.py's mix
  (uploads, predictions, activation PNGs), each on a fresh store; prints both and their ratio.
* ``ray``: an index build over the same images on Ray with 1 actor, with 2 actors, and in one process
  (`convscope index`'s defaults: torch threads = cores, one decode worker), each on a fresh store, in turns
  for ``--rounds`` rounds; prints each one's images/s (steady: between its first and last progress step;
  wall: the whole build, the actors' start included) and the ratios 2 actors / 1 actor and 2 actors /
  one process, and checks that the three indexes are identical. For scale, the machine's own ceiling:
  the model's plain forward (1 thread, random input) in 2 Ray tasks at once / in 1 (the two cores of a
  shared machine are not always two cores' worth).

    .venv/bin/python bench/scale.py --model cifarnet --seconds 30 --requests 3000
    .venv/bin/python bench/scale.py --only ray --index-model cifarnet --limit 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import arun, photo, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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


def timed_build(run: Callable[..., Any], n: int) -> tuple[float, float, Any]:
    """(steady images/s, wall images/s, index) of one build; ``run(progress=...)`` builds."""
    steps: list[tuple[float, int]] = []
    t = time.perf_counter()
    index, _ = run(progress=lambda p: steps.append((time.perf_counter(), p.done)))
    wall = time.perf_counter() - t
    moved = [s for s in steps if s[1] > 0]
    steady = (moved[-1][1] - moved[0][1]) / (moved[-1][0] - moved[0][0]) if len(moved) > 2 else n / wall
    return steady, n / wall, index


def forward_rate(model: str, batch: int, start_at: float, seconds: float) -> float:
    """Images/s of the model's plain forward on one thread from ``start_at`` for ``seconds`` (a Ray task)."""
    import torch

    from app.config import Settings
    from app.features.examples.build import load_one_model

    torch.set_num_threads(1)
    lm = load_one_model(model, Settings())
    module, c = lm.private_copy(), lm.spec.preprocess.crop
    x = torch.randn(batch, 3, c, c)
    done = 0
    with torch.no_grad():
        module(x)
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < start_at + seconds:
            module(x)
            done += batch
    return done / (time.time() - start_at)


def ceiling(ray: Any, model: str, batch: int, seconds: float = 10.0) -> float:
    """The plain forward's throughput in 2 concurrent tasks over 1 (they start their loops together)."""
    task = ray.remote(num_cpus=1)(forward_rate)
    one = ray.get(task.remote(model, batch, time.time() + 10, seconds))
    two = sum(ray.get([task.remote(model, batch, time.time() + 15, seconds) for _ in range(2)]))
    print(f"  plain forward, 1 thread: 1 task {one:.1f} img/s, 2 tasks {two:.1f} img/s together", flush=True)
    return two / one


def ray_part(a: argparse.Namespace) -> None:
    import statistics

    import ray
    import torch

    from app.config import Settings
    from app.features.examples.build import auto_batch_size, build, load_one_model
    from app.features.examples.distributed import build_ray
    from app.features.examples.index_store import IndexStore
    from app.features.examples.sources import open_source
    from app.store.database import Store

    settings = Settings()
    cores = os.cpu_count() or 1
    torch.set_num_threads(settings.torch_threads)
    lm = load_one_model(a.index_model, settings)
    source, ds = open_source(a.data, a.split, a.limit)
    n, bs = len(ds), a.batch_size or auto_batch_size(lm)
    print(f"index build: {lm.name} over {source.describe()}: {n} images, batch {bs}, {cores} cores; "
          f"one process: {settings.torch_threads} torch threads + 1 decode worker; Ray: 1 CPU and 1 thread an actor",
          flush=True)
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")

    def one(engine: str, **kw: Any) -> tuple[float, float, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp))
            try:
                if engine == "local":
                    return timed_build(lambda **p: build(lm, source, ds, IndexStore(store), batch_size=bs, workers=1,
                                                         **p), n)
                return timed_build(lambda **p: build_ray(lm, source, ds, IndexStore(store), settings=settings,
                                                         batch_size=bs, **kw, **p), n)
            finally:
                store.close()

    roof = ceiling(ray, lm.name, bs)
    scale, vs_local = [], []
    for r in range(a.rounds):
        local, one_actor, two = one("local"), one("ray", actors=1), one("ray", actors=2)
        same = local[2].part.equal(one_actor[2].part) and local[2].part.equal(two[2].part)
        for name, m in (("one process", local), ("Ray, 1 actor", one_actor), ("Ray, 2 actors", two)):
            print(f"  round {r + 1} {name:13}: {m[0]:8.1f} img/s steady, {m[1]:8.1f} img/s wall", flush=True)
        scale.append(two[0] / one_actor[0])
        vs_local.append(two[0] / local[0])
        print(f"  round {r + 1}: 2 actors / 1 actor {scale[-1]:.2f}x, 2 actors / one process {vs_local[-1]:.2f}x "
              f"(steady); wall {two[1] / one_actor[1]:.2f}x and {two[1] / local[1]:.2f}x; indexes identical: {same}")
    ray.shutdown()
    print(f"Ray index build, 2 actors / 1 actor: {statistics.median(scale):.2f}x; 2 actors / one process: "
          f"{statistics.median(vs_local):.2f}x (steady img/s, median of {a.rounds} round(s), {cores} cores; "
          f"this machine's 2-process ceiling: {roof:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("serve", "ray"), help="run one part (default: both)")
    ap.add_argument("--model", default="cifarnet")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--port", type=int, default=8798)
    ap.add_argument("--index-model", default="cifarnet", help="ray part: the model indexed")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"), help="ray part")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=10000, help="ray part: images indexed")
    ap.add_argument("--batch-size", type=int, help="ray part (default: as convscope index)")
    ap.add_argument("--rounds", type=int, default=1, help="ray part: rounds of the three builds")
    a = ap.parse_args()
    if a.only != "serve":
        ray_part(a)
    if a.only == "ray":
        return
    one, two = measure(1, a), measure(2, a)
    for name, r in (("1 worker ", one), ("2 workers", two)):
        print(f"{name}: {r['rps']:.1f} requests/s  p50 {1000 * r['p50']:.0f} ms  p95 {1000 * r['p95']:.0f} ms  "
              f"codes {r['codes']}")
    print(f"2 workers / 1 worker throughput: {float(two['rps']) / float(one['rps']):.2f}x ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

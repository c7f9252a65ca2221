"""Serving overhead, per model: the predictions + all-activations JSON endpoint against the bare work.

For each served model, N distinct photos are uploaded first (not timed). Then, for each photo, in
the same run:

* endpoint: ``GET /api/images/{id}/analysis?model=`` over loopback HTTP (http.client, one
  keep-alive connection), which preprocesses the picture, runs one forward pass that takes every
  layer's per-channel min/max/mean and returns them with the predictions as JSON (timed until the
  whole body has arrived; parsing it afterwards is the client's work). Two cases, each photo once in each:
  - cold: no analysis and no decoded picture in memory (as after a restart): the stored PNG is
    read and decoded too;
  - after upload: the request a page makes right after its upload (the upload kept the decoded
    picture; no analysis cached).
* bare: decode the same stored PNG + preprocess + a plain forward pass (no hooks; the traced
  network that predictions run, when the model has one), in-process, on the thread where the
  server runs a lone request's pass (the process's lead thread, every core: app.runtime.compute).

The server runs in this process, with the malloc settings of ``convscope serve``. Prints the
median of each and their ratios (goal <= 1.25x). Then, per model, the parts measured in-process
on that thread: plain pass, overview pass (every layer's stats), JSON body, and the ratio the
endpoint would have with no serving cost at all. Times are printed only as context for the
ratios: this machine is shared and noisy.

    .venv/bin/python bench/serve_latency.py [--n 15] [--models lenet,cifarnet,efficientnet-lite0]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import compute  # noqa: E402
from app.config import ROOT, Settings  # noqa: E402
from app.core.inference import overview_batch  # noqa: E402
from app.core.zoo import LoadedModel, Zoo, discover  # noqa: E402
from app.features.analysis.api import _analysis_response  # noqa: E402
from app.main import create_app  # noqa: E402
from app.store.database import ImageRecord  # noqa: E402


def photo(seed: int, w: int = 640, h: int = 480) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([np.sin(x / (20 + seed)), np.cos(y / 30), np.sin((x + y) / 45)], -1) * 0.5 + 0.5
    a = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((a * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@torch.inference_mode()
def parts(lm: LoadedModel, rec: ImageRecord, png: bytes) -> tuple[float, float, float, int]:
    """In-process, on the same thread: plain pass, overview pass (stats of every layer), JSON body."""
    x = lm.spec.preprocess.tensor(Image.open(io.BytesIO(png)).convert("RGB"))
    t0 = time.perf_counter()
    lm.plain_pass(x)
    t1 = time.perf_counter()
    ov = overview_batch(lm, x)[0]
    t2 = time.perf_counter()
    body = _analysis_response(lm, rec, ov, k=5).body
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(body)


@torch.inference_mode()
def bare_pass(net: torch.nn.Module, lm: LoadedModel, png: bytes) -> None:
    """Decode the stored PNG, preprocess, forward."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    net(lm.spec.preprocess.tensor(img))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=15)
    ap.add_argument("--models", default="")
    args = ap.parse_args()
    import uvicorn

    from app.cli.main import _limit_malloc_arenas

    _limit_malloc_arenas()  # as `convscope serve` does

    tmp = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=tmp / "data", models_dir=ROOT / "models")
    # As the server does: one thread of the process (the lead) runs torch on every core, the others
    # on one each (app.runtime.compute). The bare pass below runs on that lead thread too.
    lead = compute.setup(settings.torch_threads)
    zoo = lead.run(Zoo.load, discover(settings.models_dir, settings.torchvision_models))
    names = [n for n in (args.models.split(",") if args.models else zoo.names()) if n]
    app = create_app(settings, zoo=zoo)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8765, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    engine = app.state.services.engine
    print(f"{'model':22s} {'cold ms':>8s} {'after upload':>13s} {'bare ms':>8s} {'cold ratio':>11s} "
          f"{'upload ratio':>13s}")
    # The timed requests go through http.client on one keep-alive connection: httpx costs about a
    # millisecond of CPU a request, in this process, which also runs the server.
    conn = http.client.HTTPConnection("127.0.0.1", 8765, timeout=120)

    def get(path: str) -> bytes:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status} {body[:200]!r}")
        return body

    work: list[tuple[str, float, float, float, int, float]] = []
    with httpx.Client(base_url="http://127.0.0.1:8765", timeout=120) as c:
        for mi, name in enumerate(names):
            lm = zoo.get(name)
            net = lm.plain_pass  # the fastest plain pass (traced)
            ids = []
            for i in range(args.n + 1):
                r = c.post("/api/images", files={"file": (f"{i}.jpg", photo(1000 * mi + i), "image/jpeg")})
                r.raise_for_status()
                ids.append(r.json()["id"])
            store_png = [c.get(f"/api/images/{i}/file").content for i in ids]
            cold, warm, bare, split = [], [], [], []
            for j, iid in enumerate(ids):
                rec = engine.image(iid)
                engine.forget(rec.id)  # as after a restart: nothing of this photo in memory
                path = f"/api/images/{iid}/analysis?model={name}"
                t0 = time.perf_counter()
                body = get(path)
                t1 = time.perf_counter()  # the whole body has arrived (parsing it is the client's work)
                assert len(json.loads(body)["layers"]) == len(lm.layers)
                engine.forget(rec.id)
                engine.picture(rec)  # what the upload leaves in memory
                tw = time.perf_counter()
                get(path)
                tw1 = time.perf_counter()
                t2 = time.perf_counter()
                lead.run(bare_pass, net, lm, store_png[j])
                t3 = time.perf_counter()
                if j:  # the first round warms up every path
                    cold.append(t1 - t0)
                    warm.append(tw1 - tw)
                    bare.append(t3 - t2)
                    split.append(lead.run(parts, lm, rec, store_png[j]))
            e, w, b = statistics.median(cold), statistics.median(warm), statistics.median(bare)
            print(f"{name:22s} {1000 * e:8.1f} {1000 * w:13.1f} {1000 * b:8.1f} {e / b:10.2f}x {w / b:12.2f}x")
            plain, over, js = (statistics.median(p[i] for p in split) for i in range(3))
            work.append((name, plain, over, js, split[0][3], b))
    server.should_exit = True
    serving.join(30)  # its shut-down runs (a server thread left running at exit can crash the interpreter)
    # What the answer costs apart from serving it (HTTP, hand-offs, reading the stored file): the
    # stats of every layer and the JSON. "work ratio": (bare + the stats' extra time + JSON) / bare,
    # what the endpoint would reach with no serving overhead at all.
    print(f"\n{'in-process parts':22s} {'plain ms':>8s} {'stats pass':>11s} {'JSON ms':>8s} {'JSON KB':>8s} "
          f"{'work ratio':>11s}")
    for name, plain, over, js, size, b in work:
        print(f"{name:22s} {1000 * plain:8.2f} {1000 * over:11.2f} {1000 * js:8.2f} {size / 1024:8.0f} "
              f"{(b + over - plain + js) / b:10.2f}x")


if __name__ == "__main__":
    main()

"""The overview JSON's cost over a plain forward pass, per model, measured in one run.

For each served model (our lenet and cifarnet, efficientnet-lite0 from its PyPI package): the median
time of a plain forward pass of one photo (``predict_batch``, the traced pass where the model has
one), of the overview JSON from scratch (the summary pass that keeps per-channel stats, the graph
lookup, the nodes with their top channels, orjson), and of the graph's symbolic trace (once per
model, on the first overview). Prints the ratio overview / forward.

``json ms`` is the part of the overview that is new (nodes, edges, top channels, orjson) on stats
already computed: the summary pass is the one ``/api/images/{id}/analysis`` already runs.

    .venv/bin/python bench/overview.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson
import torch
from PIL import Image

from app.config import Settings
from app.core.inference import overview_batch, predict_batch
from app.core.zoo import discover, load_model
from app.features.overview import service


def _interleaved_ms(fns: list, repeat: int) -> list[float]:  # noqa: ANN001
    """Median milliseconds of each function, run in turn on every round (a busy machine slows all alike)."""
    for fn in fns:
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    photo = Image.new("RGB", (320, 240), (120, 80, 200))
    print(f"{'model':22} {'forward ms':>11} {'overview ms':>12} {'ratio':>6} {'json ms':>10} {'trace ms (once)':>16}")
    for spec in discover(Settings().models_dir):
        lm = load_model(spec)
        x = spec.preprocess.tensor(photo)
        t = time.perf_counter()
        service.graph_of(lm)
        trace_ms = (time.perf_counter() - t) * 1000

        class _Rec:
            id = "bench"

        ov = overview_batch(lm, x)[0]
        fwd, whole, build = _interleaved_ms([
            lambda lm=lm, x=x: predict_batch(lm, x),
            lambda lm=lm, x=x: orjson.dumps(service.overview(lm, overview_batch(lm, x)[0], _Rec())),  # type: ignore[arg-type]
            lambda lm=lm, ov=ov: orjson.dumps(service.overview(lm, ov, _Rec())),  # type: ignore[arg-type]
        ], args.repeat)
        print(f"{spec.name:22} {fwd:11.2f} {whole:12.2f} {whole / fwd:6.2f} {build:10.2f} {trace_ms:16.1f}")


if __name__ == "__main__":
    main()

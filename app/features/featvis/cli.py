"""``convscope featvis``: render feature visualizations into the store (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("featvis", help="render feature visualizations (cached in the store; --all pre-renders a layer)")
    f.add_argument("--model", required=True)
    f.add_argument("--layer", required=True)
    f.add_argument("--channel", type=int, action="append", help="channel (repeatable); default 0")
    f.add_argument("--all", action="store_true", help="every channel of the layer")
    f.add_argument("--objective", default="channel", choices=["channel", "neuron", "unit", "class", "layer"])
    f.add_argument("--steps", type=int)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", help="also write PNG files here")
    f.add_argument("--threads", type=int)
    f.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from app.config import Settings
    from app.core.zoo import Zoo, discover
    from app.features.analysis.service import Engine
    from app.features.featvis.service import FeatVisService, images_png, make_objective
    from app.jobs import JobQueue
    from app.store.database import Store

    settings = Settings()
    if a.threads:
        torch.set_num_threads(a.threads)
    specs = [s for s in discover(settings.models_dir, settings.torchvision_models,
                                  effnet=a.model == "efficientnet-lite0") if s.name == a.model]
    if not specs:
        print(f"unknown model {a.model!r}", file=sys.stderr)
        return 2
    lm = Zoo.load(specs, strict=[a.model]).get(a.model)
    engine = Engine(settings, Zoo([lm]), Store(settings.data_dir, settings.database_url))
    svc = FeatVisService(engine, JobQueue(engine.gate))
    info = lm.layer(a.layer)
    channels = range(info.channels) if a.all else (a.channel or [0])
    out = Path(a.out) if a.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for c in tqdm(list(channels), desc=f"{a.model} {a.layer}", unit="ch", disable=len(list(channels)) < 2):
        obj = make_objective(lm, a.objective, a.layer, c)
        s = svc.settings_for(lm, steps=a.steps, seed=a.seed)
        hit = svc.cached(lm, obj, s)
        if hit is None:
            bar = tqdm(total=s.steps, desc=f"channel {c}", unit="step", leave=False)

            def tick(step: int, value: float, bar: tqdm = bar) -> None:  # type: ignore[type-arg]
                bar.update(step - bar.n)
                bar.set_postfix(objective=f"{value:.3g}")

            result = svc.run(lm, obj, s, progress=tick)
            bar.close()
            png = images_png(result.images)
        else:
            png = hit[0]
        if out:
            (out / f"{a.model}-{a.layer}-{a.objective}-{c}.png").write_bytes(png)
    return 0

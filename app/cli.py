"""The ``convscope`` command line: serve, train (and the long jobs that plug in later)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _limit_malloc_arenas(n: int = 2, mmap_threshold: int = 32 * 1024 * 1024) -> None:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core); freed
    activation buffers then stay spread over many arenas and the resident size only grows.
    Two arenas keep a long-running server's memory flat (same as MALLOC_ARENA_MAX=2).

    Blocks under ``mmap_threshold`` come from the arenas' heaps and are reused; larger ones get
    their own mapping, returned to the system when freed. A fixed threshold also turns off glibc's
    own adjustment of it. At 128 KB every activation of a batch is a fresh mapping whose pages
    fault in on first touch; under load a forward pass took ~1.7x the CPU time it takes in a plain
    loop. At 32 MB (the most glibc's adjustment would reach), two servers loaded in
    turns (3 rounds of 3,000 requests of bench/load.py's mix) used 3.76 vs 4.18 ms of CPU a
    request, +10 % throughput, for ~25 MB more resident once the bounded caches are full."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, n)  # M_ARENA_MAX
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


def _short_openmp_spin(count: int = 20_000) -> None:
    """Let OpenMP's idle helper threads spin ``count`` rounds (libgomp's default: 300,000) before
    they sleep; read once, when torch loads its libgomp, so this runs before torch is imported.

    A lone request's pass runs on the lead thread's team (app.compute), whose helper spins between
    the operations of a pass; 20,000 rounds still bridge those gaps (efficientnet-lite0 plain pass
    13.27 -> 13.29 ms, cifarnet 2.00 -> 1.98 ms; 2,000 would make them 16.9 and 2.24 ms), while
    under load a helper that spins on after its batch takes less of the core from the pass running
    beside it. bench/ab_load.py (rounds of 3,000 requests), B/A: 1.049 (3 rounds), 1.026 (4),
    1.023 (6 rounds: 643.4 -> 658.1 req/s, server CPU 2.49 -> 2.39 ms a request); two runs in which
    both sides had the same setting read 1.012 and 1.043, so the gain is small against the noise.
    An explicit GOMP_SPINCOUNT or OMP_WAIT_POLICY wins."""
    import os

    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(count)
    if "torch" in sys.modules:  # too late for this process's libgomp
        print("convscope: torch was imported before the OpenMP settings", file=sys.stderr)


def _cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    _limit_malloc_arenas()

    from app.config import Settings
    from app.main import create_app

    settings = Settings()
    app = create_app(settings)
    uvicorn.run(app, host=a.host, port=a.port, log_level="info", access_log=settings.access_log,
                timeout_graceful_shutdown=20)
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from app.train import RECIPES, train

    if a.model not in RECIPES:
        print(f"unknown model {a.model!r}; trainable: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    out = Path(a.out or f"models/{a.model}")
    train(a.model, a.data, out, Path(a.run_dir or f"runs/{a.model}"), seed=a.seed, epochs=a.epochs,
          resume=not a.fresh, limit=a.limit, threads=a.threads, stop_after=a.stop_after,
          finetune_epochs=a.finetune_epochs, finetune_lr=a.finetune_lr, note=a.note, lr=a.lr,
          init=Path(a.init) if a.init else None)
    return 0


def _cmd_featvis(a: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from app.config import Settings
    from app.core.zoo import Zoo, discover
    from app.featvis_service import FeatVisService, images_png, make_objective
    from app.services import Engine
    from app.store import Store

    settings = Settings()
    if a.threads:
        torch.set_num_threads(a.threads)
    specs = [s for s in discover(settings.models_dir, settings.torchvision_models,
                                  effnet=a.model == "efficientnet-lite0") if s.name == a.model]
    if not specs:
        print(f"unknown model {a.model!r}", file=sys.stderr)
        return 2
    lm = Zoo.load(specs, strict=[a.model]).get(a.model)
    svc = FeatVisService(Engine(settings, Zoo([lm]), Store(settings.data_dir)))
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


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:
        _short_openmp_spin()  # before anything imports torch (the commands' modules do)
    p = argparse.ArgumentParser(prog="convscope", description="Look inside convolutional networks.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="start the web app")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=_cmd_serve)

    t = sub.add_parser("train", help="train one of our CIFAR-10 models")
    t.add_argument("--model", required=True, help="lenet or cifarnet")
    t.add_argument("--data", required=True,
                   help="ImageFolder directory or zip (<split>/<class>/<img>), or 'cifar10' to download")
    t.add_argument("--out", help="output folder (default models/<model>)")
    t.add_argument("--run-dir", help="checkpoint folder (default runs/<model>)")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use only this many images per split (smoke runs)")
    t.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    t.add_argument("--finetune-epochs", type=int, help="a short cosine restart at a low learning rate after the cycle")
    t.add_argument("--finetune-lr", type=float, help="peak learning rate of that restart (default 0.01)")
    t.add_argument("--note", help="a sentence for the model card (how the run went)")
    t.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    t.add_argument("--init", help="start from these trained weights (.safetensors): a warm restart, "
                                  "e.g. models/cifarnet/weights.safetensors")
    t.set_defaults(func=_cmd_train)

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
    f.set_defaults(func=_cmd_featvis)

    from app import cli_ext

    cli_ext.register(sub)
    a = p.parse_args(argv)
    return int(a.func(a))


if __name__ == "__main__":
    raise SystemExit(main())

"""``convscope train``: train one of our CIFAR-10 models (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    t.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    from app.features.models.train import RECIPES, train

    if a.model not in RECIPES:
        print(f"unknown model {a.model!r}; trainable: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    out = Path(a.out or f"models/{a.model}")
    train(a.model, a.data, out, Path(a.run_dir or f"runs/{a.model}"), seed=a.seed, epochs=a.epochs,
          resume=not a.fresh, limit=a.limit, threads=a.threads, stop_after=a.stop_after,
          finetune_epochs=a.finetune_epochs, finetune_lr=a.finetune_lr, note=a.note, lr=a.lr,
          init=Path(a.init) if a.init else None)
    return 0

"""The ``convscope`` command line: serve, train (and the long jobs that plug in later)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn

    from app.config import Settings
    from app.main import create_app

    settings = Settings()
    app = create_app(settings)
    uvicorn.run(app, host=a.host, port=a.port, log_level="info", timeout_graceful_shutdown=20)
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    from app.train import RECIPES, train

    if a.model not in RECIPES:
        print(f"unknown model {a.model!r}; trainable: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    out = Path(a.out or f"models/{a.model}")
    train(a.model, a.data, out, Path(a.run_dir or f"runs/{a.model}"), seed=a.seed, epochs=a.epochs,
          resume=not a.fresh, limit=a.limit, threads=a.threads, stop_after=a.stop_after)
    return 0


def main(argv: list[str] | None = None) -> int:
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
    t.set_defaults(func=_cmd_train)

    from app import cli_ext

    cli_ext.register(sub)
    a = p.parse_args(argv)
    return int(a.func(a))


if __name__ == "__main__":
    raise SystemExit(main())

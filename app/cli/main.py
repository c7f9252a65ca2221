"""The ``convscope`` command line: one explicit list of commands; ``--help`` answers without importing torch."""

from __future__ import annotations

import argparse
import sys

from app import __version__
from app.cli import serve
from app.features.examples import cli as index
from app.features.featvis import cli as featvis
from app.features.models import cli as train
from app.features.models import evaluate
from app.features.privacy import cli as cleanup
from app.runtime.tuning import short_openmp_spin

COMMANDS = [serve, train, evaluate, featvis, index, cleanup]


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:
        short_openmp_spin()  # before anything imports torch (the commands import it when they run)
    p = argparse.ArgumentParser(prog="convscope", description="Look inside convolutional networks.")
    p.add_argument("--version", action="version", version=f"convscope {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    a = p.parse_args(argv)
    return int(a.func(a))


if __name__ == "__main__":
    raise SystemExit(main())

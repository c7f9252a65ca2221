"""Sub-commands contributed by other areas (index, featvis...). Each area adds its parser here."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the optional sub-commands to the ``convscope`` parser."""
    from app import indexing

    indexing.add_parser(sub)
    from app import privacy

    privacy.add_parser(sub)

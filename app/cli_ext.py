"""Sub-commands contributed by other areas (index, featvis...). Each area adds its parser here."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the optional sub-commands to the ``convscope`` parser."""
    return None

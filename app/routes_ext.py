"""Routers contributed by other areas (lecture, examples, featvis...). Each area adds its include here."""

from __future__ import annotations

from fastapi import FastAPI


def include(app: FastAPI) -> None:
    """Include the optional routers."""
    return None

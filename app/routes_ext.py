"""Routers contributed by other areas (lecture, examples, featvis...). Each area adds its include here."""

from __future__ import annotations

from fastapi import FastAPI


def include(app: FastAPI) -> None:
    """Include the optional routers."""
    from app.routes import lecture

    app.include_router(lecture.api)
    app.include_router(lecture.pages)
    from app.routes import examples

    examples.include(app)
    from app.routes import featvis

    app.include_router(featvis.api)
    app.include_router(featvis.pages)
    from app import extras

    extras.include(app)
    return None

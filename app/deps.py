"""Annotated dependencies for the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.services import Engine


# Coroutines, so that FastAPI calls them on the event loop: a plain function dependency is run in
# its worker-thread pool, one thread hand-off per request (~11 % of the loop's time for a cached
# prediction under load).
async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

"""One Annotated dependency per service; routes never touch ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.config import Settings
from app.features.analysis.service import Engine
from app.features.attribution.service import AttributionService
from app.features.examples.service import ExamplesService
from app.features.featvis.service import FeatVisService
from app.jobs import JobQueue
from app.services import Services


# Coroutines, so that FastAPI calls them on the event loop: a plain function dependency is run in
# its worker-thread pool, one thread hand-off per request. HTTPConnection: they serve WebSockets too.
async def get_services(conn: HTTPConnection) -> Services:
    return conn.app.state.services  # type: ignore[no-any-return]


async def get_engine(conn: HTTPConnection) -> Engine:
    return conn.app.state.services.engine  # type: ignore[no-any-return]


async def get_examples(conn: HTTPConnection) -> ExamplesService:
    return conn.app.state.services.examples  # type: ignore[no-any-return]


async def get_featvis(conn: HTTPConnection) -> FeatVisService:
    return conn.app.state.services.featvis  # type: ignore[no-any-return]


async def get_attribution(conn: HTTPConnection) -> AttributionService:
    return conn.app.state.services.attribution  # type: ignore[no-any-return]


async def get_jobs(conn: HTTPConnection) -> JobQueue:
    return conn.app.state.services.jobs  # type: ignore[no-any-return]


async def get_app_settings(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ExamplesDep = Annotated[ExamplesService, Depends(get_examples)]
FeatVisDep = Annotated[FeatVisService, Depends(get_featvis)]
AttributionDep = Annotated[AttributionService, Depends(get_attribution)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

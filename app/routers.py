"""ROUTERS: the one list of the features' routers (app/features/<area>/api.py, pages.py) that
:func:`app.main.create_app` includes, in this order."""

from __future__ import annotations

from fastapi import APIRouter

from app.features.ablation import pages as ablation_pages
from app.features.analysis import api as analysis_api
from app.features.analysis import pages as analysis_pages
from app.features.arithmetic import api as arithmetic_api
from app.features.arithmetic import pages as arithmetic_pages
from app.features.attribution import api as attribution_api
from app.features.attribution import pages as attribution_pages
from app.features.compare import api as compare_api
from app.features.compare import pages as compare_pages
from app.features.examples import api as examples_api
from app.features.examples import pages as examples_pages
from app.features.export import api as export_api
from app.features.featvis import api as featvis_api
from app.features.featvis import pages as featvis_pages
from app.features.health import api as health_api
from app.features.images import api as images_api
from app.features.images import pages as images_pages
from app.features.jobs import api as jobs_api
from app.features.jobs import pages as jobs_pages
from app.features.lecture import api as lecture_api
from app.features.lecture import pages as lecture_pages
from app.features.live import pages as live_pages
from app.features.live import socket as live_socket
from app.features.models import api as models_api
from app.features.models import pages as models_pages
from app.features.overview import api as overview_api
from app.features.overview import pages as overview_pages
from app.features.privacy import pages as privacy_pages
from app.features.samples import pages as samples_pages
from app.features.timeline import api as timeline_api
from app.features.timeline import pages as timeline_pages

ROUTERS: list[APIRouter] = [
    health_api.router,
    models_api.router,
    models_pages.router,
    images_api.router,
    images_pages.router,
    samples_pages.router,
    analysis_api.router,
    analysis_pages.router,
    overview_api.router,
    overview_pages.router,
    arithmetic_api.router,
    arithmetic_pages.router,
    ablation_pages.router,
    lecture_api.router,
    lecture_pages.router,
    examples_api.router,
    examples_pages.router,
    featvis_api.router,
    featvis_pages.router,
    attribution_api.router,
    attribution_pages.router,
    jobs_api.router,
    jobs_pages.router,
    live_pages.router,
    live_socket.router,
    compare_api.router,
    compare_pages.router,
    timeline_api.router,
    timeline_pages.router,
    export_api.router,
    privacy_pages.router,
]

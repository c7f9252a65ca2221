"""What a fresh install builds by itself at its first start, in the background.

When lenet's or cifarnet's examples index is missing and a CIFAR-10 test split can be found, the
server queues their builds in the job queue's low-priority lane (one job at a time, on one thread,
pausing while interactive requests run), then the feature visualizations of their first two conv
layers. Pages that need an index show the queued or running build's progress meanwhile; with no data
set at hand nothing is queued and they keep telling how to build one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.config import ROOT, Settings
from app.core.data import CIFAR10_ALIAS
from app.core.zoo import LoadedModel
from app.features.featvis.service import make_objective
from app.jobs import LOW_PRIORITY, Job
from app.services import Services

log = logging.getLogger("convscope")

MODELS = ("lenet", "cifarnet")  # the CIFAR-10 networks we ship
FEATVIS_LAYERS = 2  # the first conv layers whose feature visualizations are rendered
SHARED_CIFAR10 = Path("shared") / "data" / "cifar10-jpeg.zip"  # beside a checkout, on these machines


def find_cifar10(settings: Settings) -> str | None:
    """The CIFAR-10 data set to index: the configured one, else ``../shared/data/cifar10-jpeg.zip``
    beside a checkout, else torchvision's download where allowed; None when there is none."""
    if settings.dataset_path:
        return str(settings.dataset_path)
    shared = ROOT.parent / SHARED_CIFAR10
    if (ROOT / "pyproject.toml").is_file() and shared.is_file():
        return str(shared)
    return CIFAR10_ALIAS if settings.dataset_download else None


def first_convs(lm: LoadedModel, n: int = FEATVIS_LAYERS) -> list[str]:
    return [li.name for li in lm.layers if li.is_spatial and "Conv" in li.type][:n]


def start(services: Services) -> list[Job]:
    """Queue what this install lacks (called once by the lifespan); returns the queued jobs."""
    settings = services.settings
    if not settings.first_start_builds:
        return []
    zoo = services.engine.zoo
    models = [zoo.get(name) for name in MODELS if name in zoo]
    spec = find_cifar10(settings)
    jobs: list[Job] = []
    if spec is not None and spec != CIFAR10_ALIAS and services.examples.default_path is None:
        services.examples.default_path = spec  # the data set the pages offer as "default"
    for lm in models:
        if spec is not None and services.examples.find(lm) is None:
            jobs.append(services.examples.start_build(lm, spec, "test", lane=LOW_PRIORITY))
    for lm in models:
        s = services.featvis.settings_for(lm)
        for layer in first_convs(lm):
            objs = [make_objective(lm, "channel", layer, c) for c in range(lm.layer(layer).channels)]
            todo = [o for o, done in zip(objs, services.featvis.rendered(lm, objs, s), strict=True) if not done]
            job = services.featvis.start_many(lm, todo, s, page_url=f"/models/{lm.name}/featvis?layer={layer}",
                                              lane=LOW_PRIORITY)
            if job is not None:
                jobs.append(job)
    if jobs:
        log.info("first start: %d background jobs queued (%s)", len(jobs),
                 ", ".join(f"{j.kind} {j.params.get('model')}" for j in jobs))
    return jobs

"""The factory of every job kind: how any worker re-creates a job's work from its stored ``args`` (JSON).

A job queued by one worker may run in another (a shared store), or be taken over by another after its
worker died; so no job's work is a closure: each kind's factory gets the worker's services and the job's
``args`` and returns ``work(job)``. Importing this module registers them (:func:`app.jobs.factory`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.core import featvis as fv
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.examples.sources import IndexBuildError
from app.jobs import Job, factory

Work = Callable[[Job], None]


def served_model(engine: Any, args: dict[str, Any]) -> LoadedModel:
    """The model a job's ``args`` name, with the weights it was started on."""
    lm: LoadedModel = engine.model(args["model"])
    if args.get("weights") not in (None, lm.weights_sha256):
        raise IndexBuildError(f"model {lm.name} now has other weights than when this job was started")
    return lm


def _settings(d: dict[str, Any]) -> fv.Settings:
    return fv.Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@factory("index")
def index_work(services: Any, args: dict[str, Any]) -> Work:
    """An examples index build (resumes from its checkpoint)."""
    svc = services.examples
    lm, spec, k, workers = served_model(svc.engine, args), args["spec"], int(args["k"]), int(args["workers"])
    return lambda job: svc._build(job, lm=lm, spec=spec, k=k, workers=workers)


@factory("featvis")
def featvis_work(services: Any, args: dict[str, Any]) -> Work:
    """One feature visualization."""
    svc = services.featvis
    lm, obj, s = served_model(svc.engine, args), fv.Objective(**args["objective"]), _settings(args["settings"])
    return lambda job: svc._job(job, lm, obj, s)


@factory("featvis-many")
def featvis_many_work(services: Any, args: dict[str, Any]) -> Work:
    """A layer's missing feature visualizations, one after the other (those rendered meanwhile are skipped)."""
    svc = services.featvis
    lm, s = served_model(svc.engine, args), _settings(args["settings"])
    todo = [fv.Objective(**o) for o in args["objectives"]]
    return lambda job: svc._many(job, lm, todo, s)


@factory("occlusion")
def occlusion_work(services: Any, args: dict[str, Any]) -> Work:
    """An occlusion map (kept in the memory of the worker that computed it)."""
    svc = services.attribution
    lm = served_model(svc.engine, args)
    rec = svc.engine.store.get_image(args["image"])
    if rec is None:
        raise BadParameterError(f"photo {args['image']} was deleted")
    return lambda job: svc._occlusion(job, lm, rec, args["target"], int(args["window"]), int(args["stride"]),
                                      float(args["fill"]))

"""The examples feature's errors: another build running, no index yet (with the request that builds one on
this server), an index being built, nothing to index."""

from __future__ import annotations

import shlex
from typing import Any

from app.errors import AppError
from app.features.examples.sources import GALLERY
from app.jobs import Job


class BusyError(AppError):
    """Another build is running (one at a time)."""

    status, code = 409, "busy"

    def __init__(self, job: Job) -> None:
        super().__init__(f"a build is already running ({job.params['model']} on {job.params['dataset']}, "
                         f"{job.done}/{job.total} images); follow it at /api/jobs/{job.id}",
                         extra={"job": job.public()}, headers={"Retry-After": "5"}, key="err.busy",
                         params={"model": job.params["model"], "dataset": job.params["dataset"], "done": job.done,
                                 "total": job.total, "id": job.id})
        self.job = job


NOTHING_TO_INDEX = ("this server has no data set to index: set CONVSCOPE_DATASET_PATH to an ImageFolder directory "
                    "or zip (then `default` names it), or upload photos with POST /api/images (then `gallery`)")


def describe_missing(model: str, dataset: str | None = None) -> str:
    """How to build a missing index (CLI and API): the request names a data set this server has."""
    post = (f"POST /api/indexes {{\"model\": \"{model}\", \"dataset\": \"{dataset}\"}}" if dataset
            else f"POST /api/indexes {{\"model\": \"{model}\"}} once there is one ({NOTHING_TO_INDEX})")
    return (f"No examples index for model {model!r} yet. Build one with "
            f"`convscope index --model {model} --data PATH --split test` (PATH: an ImageFolder directory or zip), "
            f"or {post} (or start it on the page /indexes).")


class NoDatasetError(AppError):
    """An index build that names no data set when this server has none to offer."""

    status, code = 422, "no_dataset"


class IndexMissingError(AppError, LookupError):
    """No index for the request; the message says how to build one."""

    status, code = 404, "index_missing"

    @classmethod
    def for_model(cls, model: str, dataset: str | None = None) -> IndexMissingError:
        """No index at all for ``model``: the answer names the command and the request that build one on
        this server (``dataset``: one it has; None: none, and the message says what to set up)."""
        extra: dict[str, Any] = {"cli": f"convscope index --model {shlex.quote(model)} --data PATH --split test"}
        if dataset:
            extra["post"] = {"model": model, "dataset": dataset, **({"split": "test"} if dataset != GALLERY else {})}
        return cls(describe_missing(model, dataset), extra=extra)


class IndexBuildingError(AppError, LookupError):
    """No index yet, but one is being built."""

    status, code = 409, "index_building"

    def __init__(self, job: Job) -> None:
        super().__init__(f"the examples index of {job.params['model']} is being built: {job.done}/{job.total} images; "
                         f"retry when it is done (progress: GET /api/jobs/{job.id})",
                         extra={"job": job.public()}, headers={"Retry-After": "2"}, key="err.index_building",
                         params={"model": job.params["model"], "done": job.done, "total": job.total, "id": job.id})
        self.job = job

"""Feature visualization as a service: cached pictures by (weights, objective, settings), jobs that render them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

import torch

from app.core import featvis as fv
from app.core import imaging
from app.core.zoo import LoadedModel
from app.errors import AppError, BadParameterError
from app.features.analysis.service import Engine
from app.features.jobs import kinds as _kinds  # noqa: F401  (registers the job kinds' factories)
from app.features.units import check_channel, class_of
from app.jobs import Job, JobQueue


def make_objective(lm: LoadedModel, kind: str, layer: str, channel: int, y: int | None = None,
                   x: int | None = None) -> fv.Objective:
    """A validated objective: the layer exists, the channel / class / position are in range."""
    if kind not in fv.OBJECTIVES:
        raise BadParameterError(f"objective must be one of: {', '.join(fv.OBJECTIVES)}")
    info = lm.layer(layer)
    if kind == "class":
        class_of(lm, channel)
    elif kind != "layer":
        check_channel(channel, info.channels, layer, "unit" if kind == "unit" else "channel")
    if kind == "neuron":
        if not info.is_spatial:
            raise BadParameterError(f"a neuron needs a layer with spatial maps; {layer} outputs {info.output_shape}")
        h, w = info.output_shape[1:]
        y = h // 2 if y is None else y
        x = w // 2 if x is None else x
        if not (0 <= y < h and 0 <= x < w):
            raise BadParameterError(f"position ({y}, {x}) is outside the {h}x{w} map of {layer}")
    return fv.Objective(kind=kind, layer=layer, channel=0 if kind == "layer" else channel, y=y, x=x)


Kind = Literal["channel", "neuron", "unit", "class", "layer"]


def objective_of(engine: Engine, model: str, layer: str, channel: int | str, objective: str, y: int | None,
                 x: int | None) -> tuple[LoadedModel, fv.Objective]:
    """The served model and a validated objective on it; a class objective takes a class name too."""
    lm = engine.model(model)
    if isinstance(channel, str) and not channel.isdigit():
        if objective != "class":
            raise BadParameterError(f"channel must be a number, not {channel!r} (a class name is taken with "
                                    "objective=class)")
        channel = class_of(lm, channel) or 0
    return lm, make_objective(lm, objective, layer, int(channel), y, x)


@dataclass(frozen=True)
class FeatVisRequest:
    """One picture a request names: the model, the objective, the settings, and its URLs (relative)."""

    lm: LoadedModel
    obj: fv.Objective
    s: fv.Settings
    api_url: str
    page_url: str


class NotRendered(AppError):
    """A picture that is not rendered yet: GET never starts work, the same URL with POST does."""

    status, code = 404, "not_rendered"

    def __init__(self, api_url: str) -> None:
        super().__init__(f"this picture is not rendered yet: POST {api_url} renders it (202 and the job in "
                         "Location; the finished job's result_url is this URL)",
                         extra={"render": {"method": "POST", "url": api_url}})


class FeatVisService:
    """Cached feature visualizations by (model weights, objective, settings, seed) and the jobs that make them."""

    def __init__(self, engine: Engine, jobs: JobQueue) -> None:
        self.engine = engine
        self.jobs = jobs
        jobs.provide(featvis=self, engine=engine)
        self._copies: dict[tuple[str, str], torch.nn.Module] = {}

    @staticmethod
    def key(lm: LoadedModel, obj: fv.Objective, s: fv.Settings) -> str:
        return (f"featvis:v1:{lm.name}:{lm.weights_sha256[:16]}:{obj.kind}:{obj.layer}:{obj.channel}:{obj.y}:{obj.x}:"
                f"{s.key()}")

    def settings_for(self, lm: LoadedModel, **overrides: object) -> fv.Settings:
        return fv.default_settings(lm.spec.preprocess.crop, **overrides)

    def cached(self, lm: LoadedModel, obj: fv.Objective, s: fv.Settings) -> tuple[bytes, dict[str, object]] | None:
        key = self.key(lm, obj, s)
        png = self.engine.store.cache_get(key + ":png")
        meta = self.engine.store.cache_get(key + ":json")
        if png is None or meta is None:
            return None
        return png, json.loads(meta)

    def run(self, lm: LoadedModel, obj: fv.Objective, s: fv.Settings, job: Job | None = None,
            progress: object = None, *, job_steps: bool = True) -> fv.Result:
        """Render now (in this thread); stores the result unless cancelled. Used by jobs and the CLI.
        With ``job``, the render stops when it is cancelled and pauses for interactive requests; with
        ``job_steps`` the job also reports its steps (a layer's job reports pictures instead)."""
        p = lm.spec.preprocess

        def on_progress(step: int, value: float, images: torch.Tensor) -> None:
            if job is not None and job_steps:
                job.progress(step, value=value)
                job.preview = images_png(images)
            if callable(progress):
                progress(step, value)

        def should_stop() -> bool:
            return job is not None and self.jobs.yield_to_interactive(job, low=job.low_priority)

        module = self._private_copy(lm)  # hours of hooks must not slow or disturb the served module
        result = fv.render(module, p.mean, p.std, obj, s, input_size=p.crop, progress=on_progress,
                           should_stop=should_stop, every=4)
        if not result.cancelled:
            final = fv.evaluate(module, p.mean, p.std, obj, result.images, p.crop)
            meta = {"objective": obj.describe(), "kind": obj.kind, "layer": obj.layer, "channel": obj.channel,
                    "settings": s.key(), "history": result.history, "final_value": final.tolist(),
                    "steps": result.steps_done}
            key = self.key(lm, obj, s)
            # the PNG first, the metadata last: `cached` needs both, so a kill in between serves nothing
            self.engine.store.cache_put(key + ":png", images_png(result.images))
            self.engine.store.cache_put(key + ":json", json.dumps(meta).encode())
        return result

    def _private_copy(self, lm: LoadedModel) -> torch.nn.Module:
        key = (lm.name, lm.weights_sha256)
        if key not in self._copies:
            with lm.lock.exclusive():
                self._copies[key] = fv.working_copy(lm.module)
        return self._copies[key]

    def rendered(self, lm: LoadedModel, objs: list[fv.Objective], s: fv.Settings) -> list[bool]:
        """For each objective, whether its picture with settings ``s`` is in the cache."""
        keys = [self.key(lm, o, s) for o in objs]
        present = self.engine.store.cache_present([k + suffix for k in keys for suffix in (":png", ":json")])
        return [k + ":png" in present and k + ":json" in present for k in keys]

    def start_many(self, lm: LoadedModel, todo: list[fv.Objective], s: fv.Settings, page_url: str | None = None, *,
                   lane: str = "render") -> Job | None:
        """One background job that renders ``todo`` (a layer's missing pictures, ahead of class), one after
        the other, skipping any rendered meanwhile; its steps count pictures, its preview is the latest.
        None when there is nothing to do. ``lane``: the job queue's lane (the first start's renders run in
        the low-priority one)."""
        if not todo:
            return None
        key = "featvis-many:" + "|".join(self.key(lm, o, s) for o in (todo[0], todo[-1])) + f":{len(todo)}"
        return self.jobs.submit("featvis-many", key, lane=lane, total=len(todo), params={
            "model": lm.name, "layer": todo[0].layer, "objectives": [o.describe() for o in todo],
            "steps": s.steps, "seed": s.seed}, args={"model": lm.name, "weights": lm.weights_sha256,
                                                      "objectives": [asdict(o) for o in todo], "settings": asdict(s)},
            result_url=f"/api/models/{lm.name}/featvis?layer={todo[0].layer}", page_url=page_url)

    def _many(self, job: Job, lm: LoadedModel, todo: list[fv.Objective], s: fv.Settings) -> None:
        """The work of a featvis-many job: render what is not cached yet, one picture after the other."""
        for i, obj in enumerate(todo):
            if job.cancel_requested:
                return
            if self.cached(lm, obj, s) is None:  # rendered meanwhile by its own page's job
                result = self.run(lm, obj, s, job, job_steps=False)
                if result.cancelled:
                    return
                job.preview = images_png(result.images)
            job.progress(i + 1)

    def start(self, lm: LoadedModel, obj: fv.Objective, s: fv.Settings, *, result_url: str | None = None,
              page_url: str | None = None) -> Job:
        """A job that renders one picture (the running one when the same picture is being rendered)."""
        return self.jobs.submit("featvis", self.key(lm, obj, s), total=s.steps,
                                params={"model": lm.name, "objective": obj.describe(), "steps": s.steps, "seed": s.seed},
                                args={"model": lm.name, "weights": lm.weights_sha256, "objective": asdict(obj),
                                      "settings": asdict(s)}, result_url=result_url, page_url=page_url)

    def _job(self, job: Job, lm: LoadedModel, obj: fv.Objective, s: fv.Settings) -> None:
        if self.run(lm, obj, s, job).cancelled:
            job.cancel_requested = True


def images_png(images: torch.Tensor) -> bytes:
    """(N, 3, H, W) in [0, 1] -> one PNG, each image enlarged to ~224 px (nearest) side by side."""
    arr = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype("uint8")
    return imaging.png_bytes(imaging.mosaic(arr, cols=len(arr), scale=imaging.tile_scale(*arr.shape[1:3], 224), pad=2))


def last_spatial_conv(lm: LoadedModel) -> str:
    """The last layer with spatial output whose type is a convolution (Grad-CAM's usual choice)."""
    convs = [li.name for li in lm.layers if li.is_spatial and "Conv" in li.type]
    return convs[-1]

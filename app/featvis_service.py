"""Feature visualization and attribution as services: cached results, background jobs, PNGs."""

from __future__ import annotations

import json

import torch

from app.core import attribution as attr
from app.core import featvis as fv
from app.core import imaging
from app.core.zoo import LoadedModel
from app.jobs import JobQueue, JobState
from app.services import BadParameterError, Engine
from app.store import ImageRecord


def make_objective(lm: LoadedModel, kind: str, layer: str, channel: int, y: int | None = None,
                   x: int | None = None) -> fv.Objective:
    """A validated objective: the layer exists, the channel / class / position are in range."""
    if kind not in fv.OBJECTIVES:
        raise BadParameterError(f"objective must be one of: {', '.join(fv.OBJECTIVES)}")
    info = lm.layer(layer)
    limit = len(lm.spec.categories) if kind == "class" else info.channels
    if kind != "layer" and not 0 <= channel < limit:
        what = "class" if kind == "class" else "channel"
        raise BadParameterError(f"{what} {channel} is out of range: 0 to {limit - 1}")
    if kind == "neuron":
        if not info.is_spatial:
            raise BadParameterError(f"a neuron needs a layer with spatial maps; {layer} outputs {info.output_shape}")
        h, w = info.output_shape[1:]
        y = h // 2 if y is None else y
        x = w // 2 if x is None else x
        if not (0 <= y < h and 0 <= x < w):
            raise BadParameterError(f"position ({y}, {x}) is outside the {h}x{w} map of {layer}")
    return fv.Objective(kind=kind, layer=layer, channel=0 if kind == "layer" else channel, y=y, x=x)


class FeatVisService:
    """Cached feature visualizations by (model weights, objective, settings, seed); jobs to make them;
    attribution maps, kept in the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs = JobQueue(engine.gate)
        self._copies: dict[tuple[str, str], torch.nn.Module] = {}

    @staticmethod
    def map_key(lm: LoadedModel, rec: ImageRecord, method: str, target: int | None, layer: str | None,
                window: int, stride: int, fill: float, n: int, sigma: float) -> tuple[object, ...]:
        """The key of a kept attribution map in ``engine.attributions`` (the image second: deleting it drops them)."""
        return (lm.name, rec.id, lm.weights_sha256, method, target, layer, window, stride, fill, n, sigma)

    def attribution(self, lm: LoadedModel, rec: ImageRecord, method: str, target: int | None, layer: str | None,
                    window: int, stride: int, fill: float, n: int, sigma: float) -> attr.AttributionMap:
        """:func:`attribution_map`, kept for the next request (also under the class it resolved to)."""
        kept = self.engine.attributions
        key = self.map_key(lm, rec, method, target, layer, window, stride, fill, n, sigma)
        hit = kept.get(key)
        if hit is not None:
            return hit
        amap = attribution_map(self.engine, lm, rec, method, target, layer, window, stride, fill, n, sigma)
        kept.put(key, amap)
        kept.put(self.map_key(lm, rec, method, amap.target, layer, window, stride, fill, n, sigma), amap)
        return amap

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

    def run(self, lm: LoadedModel, obj: fv.Objective, s: fv.Settings, job: JobState | None = None,
            progress: object = None, *, job_steps: bool = True) -> fv.Result:
        """Render now (in this thread); stores the result unless cancelled. Used by jobs and the CLI.
        With ``job``, the render stops when it is cancelled and pauses for interactive requests; with
        ``job_steps`` the job also reports its steps (a layer's job reports pictures instead)."""
        p = lm.spec.preprocess

        def on_progress(step: int, value: float, images: torch.Tensor) -> None:
            if job is not None and job_steps:
                job.step, job.value = step, value
                job.preview = images_png(images)
            if callable(progress):
                progress(step, value)

        def should_stop() -> bool:
            return job is not None and self.jobs.yield_to_interactive(job)

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

    def start_many(self, lm: LoadedModel, todo: list[fv.Objective], s: fv.Settings) -> JobState | None:
        """One background job that renders ``todo`` (a layer's missing pictures, ahead of class), one after
        the other, skipping any rendered meanwhile; its steps count pictures, its preview is the latest.
        None when there is nothing to do."""
        if not todo:
            return None
        key = "featvis-many:" + "|".join(self.key(lm, o, s) for o in (todo[0], todo[-1])) + f":{len(todo)}"

        def work(job: JobState) -> None:
            for i, obj in enumerate(todo):
                if job.cancel_requested:
                    return
                if self.cached(lm, obj, s) is None:  # rendered meanwhile by its own page's job
                    result = self.run(lm, obj, s, job, job_steps=False)
                    if result.cancelled:
                        return
                    job.preview = images_png(result.images)
                job.step = i + 1

        return self.jobs.submit("featvis-many", key, len(todo), work)

    def start(self, lm: LoadedModel, obj: fv.Objective, s: fv.Settings) -> JobState:
        key = self.key(lm, obj, s)
        return self.jobs.submit("featvis", key, s.steps, lambda job: self._job(job, lm, obj, s))

    def _job(self, job: JobState, lm: LoadedModel, obj: fv.Objective, s: fv.Settings) -> None:
        result = self.run(lm, obj, s, job)
        job.status = "cancelled" if result.cancelled else "done"


def images_png(images: torch.Tensor) -> bytes:
    """(N, 3, H, W) in [0, 1] -> one PNG, each image enlarged to ~224 px (nearest) side by side."""
    arr = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype("uint8")
    return imaging.png_bytes(imaging.mosaic(arr, cols=len(arr), scale=imaging.tile_scale(*arr.shape[1:3], 224), pad=2))


def attribution_map(engine: Engine, lm: LoadedModel, rec: ImageRecord, method: str, target: int | None,
                    layer: str | None, window: int, stride: int, fill: float, n: int, sigma: float
                    ) -> attr.AttributionMap:
    """One attribution map on the network's input for ``target`` (default: the top class)."""
    if method not in attr.METHODS:
        raise BadParameterError(f"method must be one of: {', '.join(attr.METHODS)}")
    x = lm.spec.preprocess.tensor(engine.picture(rec))
    with lm.lock.exclusive():  # switches the module to gradients and back
        return _attribution(lm, x, method, target, layer, window, stride, fill, n, sigma)


def _attribution(lm: LoadedModel, x: torch.Tensor, method: str, target: int | None, layer: str | None, window: int,
                 stride: int, fill: float, n: int, sigma: float) -> attr.AttributionMap:
    if target is None:
        with torch.inference_mode():
            target = int(lm.module(x).argmax(1))
    if not 0 <= target < len(lm.spec.categories):
        raise BadParameterError(f"target class {target} is out of range: 0 to {len(lm.spec.categories) - 1}")
    m = lm.module
    if method == "saliency":
        return attr.saliency(m, x, target)
    if method == "smoothgrad":
        return attr.smoothgrad(m, x, target, n=n, sigma=sigma)
    if method == "gradcam":
        name = layer or last_spatial_conv(lm)
        if not lm.layer(name).is_spatial:
            raise BadParameterError(f"Grad-CAM needs a layer with spatial maps; {name} outputs {lm.layer(name).output_shape}")
        return attr.gradcam(m, x, target, name)
    if window > lm.spec.preprocess.crop:
        raise BadParameterError(f"window {window} is larger than the {lm.spec.preprocess.crop}-pixel input")
    return attr.occlusion(m, x, target, window=window, stride=stride, fill=fill)


def last_spatial_conv(lm: LoadedModel) -> str:
    """The last layer with spatial output whose type is a convolution (Grad-CAM's usual choice)."""
    convs = [li.name for li in lm.layers if li.is_spatial and "Conv" in li.type]
    return convs[-1]


def overlay_png(engine: Engine, lm: LoadedModel, rec: ImageRecord, amap: attr.AttributionMap) -> bytes:
    """The network's input with the map blended over it (viridis, scaled to the map's own range)."""
    import numpy as np
    from PIL import Image

    base = np.asarray(lm.spec.preprocess.image(engine.picture(rec)), dtype=np.float32)
    v = amap.values.float()
    lo, hi = float(v.min()), float(v.max())
    norm = ((v - lo) / (hi - lo)).numpy() if hi > lo else np.zeros(v.shape, np.float32)
    heat = imaging.colorize(norm).astype(np.float32)
    blend = (0.45 * base + 0.55 * heat).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(blend, "RGB")
    if img.width < 224:
        img = img.resize((224, 224), Image.Resampling.NEAREST)
    return imaging.png_bytes(img)

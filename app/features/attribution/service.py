"""Attribution maps as a service: one map per (model, photo, method, parameters), kept in the engine
beside the photo's other results (deleting the photo drops them).

Saliency, SmoothGrad and Grad-CAM take one to a few dozen passes and are answered at once. Occlusion costs
one forward pass per window position, which grows with the input and shrinks with window and stride: it
runs as a job of the one job model, on a private copy of the model (serving never waits for its lock),
after its number of passes was checked against ``max_occlusion_passes``."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.core import attribution as attr
from app.core import imaging
from app.core.zoo import LoadedModel
from app.errors import BadParameterError, TooCostlyError
from app.features.analysis.service import Engine
from app.features.featvis.service import last_spatial_conv
from app.features.jobs import kinds as _kinds  # noqa: F401  (registers the job kinds' factories)
from app.jobs import Job, JobCancelled, JobQueue
from app.store.database import ImageRecord

METHODS = ("saliency", "smoothgrad", "gradcam", "occlusion")


class AttributionService:
    """Attribution maps, kept in ``engine.attributions``; occlusion maps are made by jobs."""

    def __init__(self, engine: Engine, jobs: JobQueue, max_occlusion_passes: int = 1024) -> None:
        self.engine = engine
        self.jobs = jobs
        jobs.provide(attribution=self, engine=engine)
        self.max_occlusion_passes = max_occlusion_passes

    def kept(self, lm: LoadedModel, rec: ImageRecord, method: str, target: int | None, layer: str | None,
             window: int, stride: int, fill: float, n: int, sigma: float) -> attr.AttributionMap | None:
        return self.engine.attributions.get(self.key(lm, rec, method, target, layer, window, stride, fill, n, sigma))

    def check_occlusion(self, lm: LoadedModel, window: int, stride: int) -> int:
        """The number of forward passes occlusion would cost; :class:`TooCostlyError` over the budget,
        naming the smallest stride that fits it."""
        side = lm.spec.preprocess.crop
        if window > side:
            raise BadParameterError(f"window {window} is larger than the {side}-pixel input")
        passes = len(attr.occlusion_boxes(side, side, window, stride))
        if passes <= self.max_occlusion_passes:
            return passes
        fits = next((s for s in range(stride + 1, side + 1)
                     if len(attr.occlusion_boxes(side, side, window, s)) <= self.max_occlusion_passes), side)
        raise TooCostlyError(f"occlusion with window {window} and stride {stride} on the {side}x{side} input of "
                             f"{lm.name} needs {passes:,} forward passes; at most {self.max_occlusion_passes:,} are "
                             f"allowed. Use stride={fits} (or more) with window={window}, or a larger window.",
                             key="err.occlusion_cost", params={"window": window, "stride": stride, "side": side,
                                                               "model": lm.name, "passes": passes,
                                                               "max": self.max_occlusion_passes, "fits": fits})

    def start_occlusion(self, lm: LoadedModel, rec: ImageRecord, target: int | None, window: int, stride: int,
                        fill: float, *, result_url: str, page_url: str) -> Job:
        """A job that computes the occlusion map on a private copy of the model and keeps it."""
        passes = self.check_occlusion(lm, window, stride)
        key = "occlusion:" + ":".join(map(str, self.key(lm, rec, "occlusion", target, None, window, stride, fill, 0, 0)))
        return self.jobs.submit("occlusion", key, total=passes, params={
            "model": lm.name, "image": rec.id, "target": target, "window": window, "stride": stride, "fill": fill},
            args={"model": lm.name, "weights": lm.weights_sha256, "image": rec.id, "target": target, "window": window,
                  "stride": stride, "fill": fill}, result_url=result_url, page_url=page_url)

    def _occlusion(self, job: Job, lm: LoadedModel, rec: ImageRecord, target: int | None, window: int, stride: int,
                   fill: float) -> None:
        """The work of an occlusion job: the map, on a private copy of the model, kept in the engine."""
        x = lm.spec.preprocess.tensor(self.engine.picture(rec))
        module = lm.private_copy()
        tgt = target
        if tgt is None:
            with torch.inference_mode():
                tgt = int(module(x).argmax(1))
        elif not 0 <= tgt < len(lm.spec.categories):
            raise BadParameterError(f"target class {tgt} is out of range: 0 to {len(lm.spec.categories) - 1}")
        with torch.inference_mode():
            try:
                amap = attr.occlusion(module, x, tgt, window=window, stride=stride, fill=fill,
                                      progress=lambda done, total: job.progress(done, total),
                                      should_stop=lambda: self.jobs.yield_to_interactive(job))
            except attr.Stopped:
                raise JobCancelled("cancelled") from None
        for t in {target, tgt}:
            self.engine.attributions.put(self.key(lm, rec, "occlusion", t, None, window, stride, fill, 0, 0), amap)

    @staticmethod
    def key(lm: LoadedModel, rec: ImageRecord, method: str, target: int | None, layer: str | None,
                window: int, stride: int, fill: float, n: int, sigma: float) -> tuple[object, ...]:
        """The key of a kept attribution map in ``engine.attributions`` (the image second: deleting it drops them)."""
        if method == "occlusion":  # the parameters that do not change an occlusion map
            layer, n, sigma = None, 0, 0.0
        return (lm.name, rec.id, lm.weights_sha256, method, target, layer, window, stride, fill, n, sigma)

    def map(self, lm: LoadedModel, rec: ImageRecord, method: str, target: int | None, layer: str | None,
            window: int, stride: int, fill: float, n: int, sigma: float) -> attr.AttributionMap:
        """:func:`attribution_map`, kept for the next request (also under the class it resolved to)."""
        kept = self.engine.attributions
        key = self.key(lm, rec, method, target, layer, window, stride, fill, n, sigma)
        hit = kept.get(key)
        if hit is not None:
            return hit
        amap = attribution_map(self.engine, lm, rec, method, target, layer, window, stride, fill, n, sigma)
        kept.put(key, amap)
        kept.put(self.key(lm, rec, method, amap.target, layer, window, stride, fill, n, sigma), amap)
        return amap



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
    return attr.occlusion(m, x, target, window=window, stride=stride, fill=fill)  # callers check its cost


def overlay_png(engine: Engine, lm: LoadedModel, rec: ImageRecord, amap: attr.AttributionMap) -> bytes:
    """The network's input with the map blended over it (viridis, scaled to the map's own range)."""
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

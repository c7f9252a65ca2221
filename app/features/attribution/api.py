"""JSON and PNG faces of attribution maps: saliency, SmoothGrad, Grad-CAM and occlusion for one prediction.

Occlusion runs as a job: the first request answers 202 with the job (``Location``: /api/jobs/{id}); once it is
done the same request answers the map."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from app.core.attribution import AttributionMap
from app.core.zoo import LoadedModel
from app.deps import AttributionDep, EngineDep
from app.features.analysis.service import Engine, npy_bytes
from app.features.attribution.schemas import AttributionOut
from app.features.attribution.service import AttributionService, overlay_png
from app.features.jobs.schemas import AcceptedOut
from app.features.jobs.service import accepted
from app.features.units import class_of
from app.http.representation import FormatQ, fresh, pick_format
from app.http.responses import ERRORS, NPY, PNG, Problem, fast_json
from app.jobs import Job
from app.runtime.blocking import run_blocking
from app.store.database import ImageRecord

router = APIRouter(prefix="/api", tags=["attribution"])
Method = Literal["saliency", "smoothgrad", "gradcam", "occlusion"]


async def attribution_of(engine: Engine, svc: AttributionService, image_id: str, model: str | None, method: str,
                         target_in: int | str | None, layer: str | None, window: int, stride: int, fill: float, n: int,
                         sigma: float, *, page_url: str | None = None
                         ) -> tuple[ImageRecord, LoadedModel, AttributionMap | Job]:
    """The map when it is kept or cheap (computed in the inference gate), else the occlusion job making it."""
    rec = engine.image(image_id)
    lm = engine.pick(model)
    target = class_of(lm, target_in)  # an index or a class name
    args = (lm, rec, method, target, layer, window, stride, fill, n, sigma)
    amap = svc.kept(*args)  # the page's picture, right after its numbers: no second run
    if amap is not None:
        return rec, lm, amap
    if method == "occlusion":
        query = urlencode({k: v for k, v in {"model": lm.name, "method": method, "target": target, "window": window,
                                              "stride": stride, "fill": fill}.items() if v is not None})
        return rec, lm, svc.start_occlusion(lm, rec, target, window, stride, fill,
                                            result_url=f"/api/images/{rec.id}/attribution?{query}",
                                            page_url=page_url or f"/images/{rec.id}/attribution?{query}")
    return rec, lm, await engine.gate.run(svc.map, *args)


@router.get("/images/{image_id}/attribution", responses={
    **ERRORS, 200: {"model": AttributionOut, "content": {**PNG["content"], **NPY["content"]}},
    202: {"model": AcceptedOut, "description": "occlusion is being computed: poll the job in Location"},
    422: {"model": Problem, "description": "invalid parameter, or an occlusion over the pass budget (code too_costly)"}},
    summary="Attribution map for one prediction: saliency, SmoothGrad, Grad-CAM or occlusion (JSON or PNG overlay)")
async def get_attribution(request: Request, engine: EngineDep, svc: AttributionDep, image_id: Annotated[str, Path(max_length=64)],
                          model: Annotated[str | None, Query(max_length=64)] = None, method: Method = "gradcam",
                          target: Annotated[str | None, Query(max_length=100, description="the class: its index "
                                                              "or its name (cat); default: the top prediction")] = None,
                          layer: Annotated[str | None, Query(max_length=200)] = None,
                          window: Annotated[int, Query(ge=1, le=512)] = 8, stride: Annotated[int, Query(ge=1, le=512)] = 4,
                          fill: Annotated[float, Query(ge=-10, le=10)] = 0.0,
                          n: Annotated[int, Query(ge=1, le=64)] = 16, sigma: Annotated[float, Query(ge=0, le=1)] = 0.15,
                          format: FormatQ = None) -> Response:
    format = pick_format(request, format)
    fresh(request, engine.pick(model).weights_sha256, engine.image(image_id).sha256)  # 304 before any work
    rec, lm, amap = await attribution_of(engine, svc, image_id, model, method, target, layer, window, stride, fill,
                                         n, sigma)
    if isinstance(amap, Job):
        return accepted(amap)
    if format == "png":
        return Response(await run_blocking(overlay_png, engine, lm, rec, amap), media_type="image/png")
    v = amap.values
    if format == "npy":
        return Response(npy_bytes(v.float()), media_type="application/x-npy")
    return fast_json({"image": rec.id, "model": lm.name, "method": amap.method, "target": amap.target,
                      "label": lm.spec.categories[amap.target], "settings": amap.settings, "shape": list(v.shape),
                      "min": float(v.min()), "max": float(v.max()), "values": v.float().numpy()})

"""HTML face of attribution maps: the map over the photo, with the method and the class to explain; an
occlusion map still being computed shows its job's progress, and the map when the job ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import AttributionDep, EngineDep
from app.features.attribution.api import Method, attribution_of
from app.features.featvis.service import last_spatial_conv
from app.i18n import format as numbers
from app.jobs import Job
from app.web.templating import lang_of, render

router = APIRouter(include_in_schema=False)


@router.get("/images/{image_id}/attribution", response_class=HTMLResponse)
async def attribution_page(request: Request, engine: EngineDep, svc: AttributionDep,
                           image_id: Annotated[str, Path(max_length=64)],
                           model: Annotated[str | None, Query(max_length=64)] = None, method: Method = "gradcam",
                           target: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> HTMLResponse:
    small = engine.pick(model).spec.preprocess.crop <= 64
    window, stride = (8, 4) if small else (32, 16)
    rec, lm, amap = await attribution_of(engine, svc, image_id, model, method, target, None, window, stride, 0.0, 16,
                                         0.15, page_url=str(request.url.path) + "?" + str(request.url.query))
    ctx: dict[str, object] = {"rec": rec, "model": lm, "method": method, "categories": lm.spec.categories,
                              "methods": ("saliency", "smoothgrad", "gradcam", "occlusion")}
    if isinstance(amap, Job):
        return render(request, "attribution.html", {**ctx, "job": amap}, block="attribution")
    v = amap.values
    return render(request, "attribution.html", {
        **ctx, "job": None, "target": amap.target, "label": lm.spec.categories[amap.target],
        "lo": numbers.sig(float(v.min()), lang_of(request)),
        "hi": numbers.sig(float(v.max()), lang_of(request)), "gradcam_layer": last_spatial_conv(lm),
        "png_url": f"/api/images/{rec.id}/attribution?model={lm.name}&method={method}&target={amap.target}"
                   f"&format=png" + ("" if small else f"&window={window}&stride={stride}")},
        block="attribution")

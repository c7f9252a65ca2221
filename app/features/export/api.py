"""Export of a whole analysis as one ZIP: GET /api/images/{id}/export.zip?model=&snapshot=&layers=&limit=.

Inside: the photo (as stored: re-encoded, no metadata), the network input, predictions.json,
stats.json (every layer's shape and per-channel min/max/mean), one grid PNG per layer (the first
``limit`` layers, default 60, or those named in ``layers=``), the first-layer filters and a
manifest with the permalinks. Single activation tensors: /api/images/{id}/activations/{layer}?format=npy.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app import __version__
from app.core.imaging import png_bytes
from app.core.inference import channel_stats_arrays
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.errors import BadParameterError
from app.features.analysis.service import Engine
from app.http.responses import ERRORS, ZIP
from app.store.database import ImageRecord

router = APIRouter(prefix="/api", tags=["export"])
MAX_LAYERS = 400


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


def choose_layers(lm: LoadedModel, layers: str | None, limit: int) -> list[str]:
    if layers:
        names = [n.strip() for n in layers.split(",") if n.strip()]
        for n in names:
            lm.layer(n)  # 404 with the valid names
        if len(names) > MAX_LAYERS:
            raise BadParameterError(f"at most {MAX_LAYERS} layers per export")
        return names
    return [li.name for li in lm.layers[:limit]]


def build_zip(engine: Engine, lm: LoadedModel, rec: ImageRecord, names: list[str], k: int = 10) -> bytes:
    a = engine.analysis(lm, rec)
    preds = [vars(p) for p in a.top(lm.spec.categories, min(k, len(lm.spec.categories)))]
    stats = []
    for li in lm.layers:
        lo, hi, mean = channel_stats_arrays(a.activations[li.name])
        stats.append({"name": li.name, "type": li.type, "shape": list(li.output_shape), "parameters": li.parameters,
                      "min": lo.tolist(), "max": hi.tolist(), "mean": mean.tolist()})
    q = f"?model={lm.name}"
    manifest = {
        "convscope": __version__, "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image": {"id": rec.id, "sha256": rec.sha256, "width": rec.width, "height": rec.height,
                  "filename": rec.filename},
        "model": {"name": lm.name, "title": lm.spec.title, "weights_sha256": lm.weights_sha256,
                  "input_size": list(lm.spec.preprocess.input_size), "first_conv": lm.first_conv},
        "layers_exported": names, "layers_total": len(lm.layers),
        "permalinks": {"analysis": f"/images/{rec.id}{q}", "api": f"/api/images/{rec.id}/analysis{q}",
                       "npy": f"/api/images/{rec.id}/activations/<layer>{q}&format=npy"},
        "files": {"photo.png": "the stored photo (re-encoded, no metadata)",
                  "input.png": "what the network sees (resized, centre-cropped)",
                  "predictions.json": "top classes", "stats.json": "every layer: shape, per-channel min/max/mean",
                  "layers/NNN-<layer>.png": "one tile per channel, each scaled to its own min..max (viridis)",
                  "filters.png": "learned filters of the first conv layer"},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        def put(name: str, data: bytes, compress: bool = True) -> None:
            z.writestr(zipfile.ZipInfo(name, date_time=time.gmtime()[:6]), data,
                       compress_type=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)

        put("manifest.json", json.dumps(manifest, indent=2).encode())
        put("photo.png", engine.store.image_png(rec), compress=False)
        put("input.png", png_bytes(engine.network_input(lm, rec)), compress=False)
        put("predictions.json", json.dumps({"image": rec.id, "model": lm.name, "predictions": preds}, indent=2).encode())
        put("stats.json", json.dumps({"image": rec.id, "model": lm.name, "layers": stats}).encode())
        index = {li.name: i for i, li in enumerate(lm.layers)}
        for n in names:
            put(f"layers/{index[n]:03d}-{_safe(n)}.png", engine.activation_png(lm, rec, n), compress=False)
        try:
            put("filters.png", engine.filters_png(lm, None, "rgb"), compress=False)
        except (BadParameterError, ValueError):
            pass
    return buf.getvalue()


@router.get("/images/{image_id}/export.zip", responses={
    **ERRORS, 200: {**ZIP, "description": "the ZIP (Content-Disposition: attachment)"}},
         response_class=Response, summary="A whole analysis as a ZIP: photo, input, predictions, stats, grids, filters")
async def export_zip(engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                     model: Annotated[str | None, Query(max_length=64)] = None,
                     snapshot: Annotated[str | None, Query(max_length=32, description="e.g. epoch-003")] = None,
                     layers: Annotated[str | None, Query(max_length=4000, description="comma-separated layer names")] = None,
                     limit: Annotated[int, Query(ge=1, le=MAX_LAYERS,
                                                 description="first N layers when `layers` is not given")] = 60,
                     ) -> Response:
    rec = engine.image(image_id)
    lm = engine.zoo.variant(engine.pick(model).name, snapshot)
    names = choose_layers(lm, layers, limit)
    await engine.analysis_async(lm, rec)
    data = await engine.gate.run(build_zip, engine, lm, rec, names)
    fname = f"convscope-{rec.id}-{_safe(lm.name)}.zip"
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{fname}"'})

"""JSON (and raw array / PNG) faces: models, images, predictions, activations, filters."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, File, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from app.blocking import run_blocking
from app.core.inference import Overview, channel_stats, top_k
from app.core.zoo import LoadedModel
from app.deps import EngineDep
from app.schemas import (
    ActivationOut,
    AnalysisOut,
    FiltersOut,
    ImageOut,
    LayerOut,
    ModelDetail,
    ModelSummary,
    PredictionsOut,
    Problem,
)
from app.services import Engine, npy_bytes
from app.store import ImageRecord
from app.uploads import ensure_single_file, read_upload

router = APIRouter(prefix="/api", tags=["api"])
ERRORS = {404: {"model": Problem, "description": "unknown model, layer or image"},
          422: {"model": Problem, "description": "invalid parameter"},
          503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}
UPLOAD_ERRORS = {400: {"model": Problem, "description": "empty, truncated, several files or malformed multipart"},
                 413: {"model": Problem, "description": "over the size or pixel limits"},
                 415: {"model": Problem, "description": "not an accepted image format"},
                 422: {"model": Problem, "description": "no `file` field"},
                 429: {"model": Problem, "description": "too many uploads from this client (rate limit)"},
                 503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}

ModelQ = Annotated[str | None, Query(max_length=64, description="model name (default: the server's default model)")]
ImageId = Annotated[str, Path(max_length=64, description="image id from POST /api/images")]
PNG = {"content": {"image/png": {}}}
NPY = {"content": {"application/x-npy": {}}}


def fast_json(body: dict[str, object], status_code: int = 200) -> Response:
    """JSON through orjson, which writes NumPy arrays directly (activations are large)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")


def pick_model(engine: Engine, name: str | None) -> LoadedModel:
    if name is None:
        default = engine.settings.default_model
        name = default if default in engine.zoo else (engine.zoo.names() or [default])[0]
    return engine.model(name)


def model_summary(lm: LoadedModel) -> ModelSummary:
    return ModelSummary(name=lm.name, title=lm.spec.title, source=lm.spec.source,
                        input_size=list(lm.spec.preprocess.input_size), num_classes=len(lm.spec.categories),
                        parameters=lm.total_parameters, test_accuracy=lm.spec.card.get("test_accuracy"))


def layer_out(li: object) -> LayerOut:
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(li).items()}
    return LayerOut(**d)


def model_detail(lm: LoadedModel) -> ModelDetail:
    p = lm.spec.preprocess
    return ModelDetail(**model_summary(lm).model_dump(), categories=list(lm.spec.categories),
                       first_conv=lm.first_conv, weights_sha256=lm.weights_sha256,
                       preprocessing={"resize_shorter_side": p.resize, "center_crop": p.crop, "mean": list(p.mean),
                                      "std": list(p.std)},
                       layers=[layer_out(li) for li in lm.layers], card=lm.spec.card)


def image_out(rec: ImageRecord) -> ImageOut:
    return ImageOut(id=rec.id, width=rec.width, height=rec.height, sha256=rec.sha256,
                    original_width=rec.original_width, original_height=rec.original_height, format=rec.format,
                    filename=rec.filename, created=rec.created, url=f"/api/images/{rec.id}/file")


@router.get("/models", response_model=list[ModelSummary], summary="The served models")
async def list_models(engine: EngineDep) -> list[ModelSummary]:
    return [model_summary(m) for m in engine.zoo.models.values()]


@router.get("/models/{model}", response_model=ModelDetail, responses=ERRORS,
            summary="One model: layers with type, output shape and parameters")
async def get_model(engine: EngineDep, model: Annotated[str, Path(max_length=64)]) -> ModelDetail:
    return model_detail(engine.model(model))


@router.get("/models/{model}/filters", response_model=FiltersOut, responses={**ERRORS, 200: PNG},
            summary="Learned filters of a conv layer (default: the first) as JSON or a PNG grid")
async def get_filters(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                      layer: Annotated[str | None, Query(max_length=200)] = None,
                      format: Literal["json", "png"] = "json",
                      view: Literal["rgb", "channels"] = "rgb") -> Response:
    lm = engine.model(model)
    if format == "png":
        return Response(engine.filters_png(lm, layer, view), media_type="image/png")
    w = engine.filters(lm, layer)
    return fast_json({"model": lm.name, "layer": layer or lm.first_conv, "shape": list(w.shape),
                      "min": float(w.min()), "max": float(w.max()), "values": w.float().numpy()})


@router.post("/images", status_code=201, response_model=ImageOut, responses={
    200: {"model": ImageOut, "description": "the same bytes were uploaded before"}, **UPLOAD_ERRORS},
    summary="Upload a photo (multipart field `file`); stored once by content hash")
async def upload_image(request: Request, engine: EngineDep,
                       file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or GIF")]) -> JSONResponse:
    await ensure_single_file(request)
    data = await read_upload(file, engine.settings.max_upload_bytes)
    up = await engine.upload_gate.run(engine.ingest, data, file.filename or "upload")
    if up.created:
        from app.indexing import notify_upload  # gallery indexes catch up in the background

        notify_upload(request.app.state, engine)
    return JSONResponse(image_out(up.record).model_dump(), status_code=201 if up.created else 200,
                        headers={"Location": f"/api/images/{up.record.id}"})


@router.get("/images", response_model=list[ImageOut], responses={422: ERRORS[422]},
            summary="Stored uploads, newest first")
async def list_images(engine: EngineDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> list[ImageOut]:
    return [image_out(r) for r in engine.store.list_images(limit, offset)]


@router.get("/images/{image_id}", response_model=ImageOut, responses=ERRORS, summary="One upload's metadata")
async def get_image(engine: EngineDep, image_id: ImageId) -> ImageOut:
    return image_out(engine.image(image_id))


@router.get("/images/{image_id}/file", responses={**ERRORS, 200: PNG}, response_class=Response,
            summary="The stored picture (PNG), or with `model` the network's input crop")
async def get_image_file(engine: EngineDep, image_id: ImageId, model: ModelQ = None) -> Response:
    from app.core.imaging import png_bytes

    rec = engine.image(image_id)
    if model is None:
        return Response(engine.store.image_png(rec), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
    return Response(png_bytes(engine.network_input(engine.model(model), rec)), media_type="image/png")


@router.delete("/images/{image_id}", status_code=204, responses=ERRORS, response_class=Response,
               summary="Delete an upload and everything derived from it")
async def delete_image(engine: EngineDep, image_id: ImageId) -> Response:
    engine.image(image_id)
    engine.delete(image_id)
    return Response(status_code=204)


@router.get("/images/{image_id}/predictions", response_model=PredictionsOut, responses=ERRORS,
            summary="Top-k labels and probabilities")
async def get_predictions(engine: EngineDep, image_id: ImageId, model: ModelQ = None,
                          k: Annotated[int, Query(ge=1, le=1000)] = 5) -> Response:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    probs = await engine.predictions(lm, rec)
    # the shape of PredictionsOut, written directly (no second validation of our own output)
    return fast_json({"image": rec.id, "model": lm.name,
                      "predictions": [vars(p) for p in top_k(probs, lm.spec.categories, k)]})


def _analysis_response(lm: LoadedModel, rec: ImageRecord, ov: Overview, *, k: int) -> Response:
    layers = [{"name": li.name, "type": li.type, "shape": list(li.output_shape), "min": ov.stats[li.name][0],
               "max": ov.stats[li.name][1], "mean": ov.stats[li.name][2]} for li in lm.layers]
    return fast_json({"image": rec.id, "model": lm.name, "layers": layers,
                      "predictions": [vars(p) for p in ov.top(lm.spec.categories, k)]})


@router.get("/images/{image_id}/analysis", response_model=AnalysisOut, responses=ERRORS,
            summary="Predictions plus every layer's shape and per-channel min/max/mean")
async def get_analysis(engine: EngineDep, image_id: ImageId, model: ModelQ = None,
                       k: Annotated[int, Query(ge=1, le=1000)] = 5) -> Response:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    # JSON of a large model's stats takes milliseconds (efficientnet-lite0: 1.7 MB): off the loop,
    # in the thread that computes the overview
    _, response = await engine.overview_then(lm, rec, functools.partial(_analysis_response, lm, rec, k=k))
    return response


@router.get("/images/{image_id}/activations/{layer}", response_model=ActivationOut,
            responses={**ERRORS, 200: {"content": {"image/png": {}, "application/x-npy": {}}}},
            summary="One layer's activation: JSON values, raw .npy array, or a PNG grid")
async def get_activation(engine: EngineDep, image_id: ImageId, layer: Annotated[str, Path(max_length=200)],
                         model: ModelQ = None, format: Literal["json", "npy", "png"] = "json",
                         channel: Annotated[int | None, Query(ge=0, le=100_000)] = None) -> Response:
    rec = engine.image(image_id)
    lm = pick_model(engine, model)
    lm.layer(layer)
    if format == "png":
        data = await run_blocking(engine.cached_activation_png, lm, rec, layer, channel)
        if data is None:  # the forward pass (batched) outside the slot that draws the PNG
            act = await engine.layer_activation_async(lm, rec, layer)
            data = await engine.gate.run(engine.activation_png, lm, rec, layer, channel, act)
        return Response(data, media_type="image/png")
    act = await engine.layer_activation_async(lm, rec, layer)
    if channel is not None:
        from app.services import check_channel

        check_channel(channel, act.shape[0])
        act = act[channel]
    if format == "npy":
        fname = f"{rec.id}-{lm.name}-{layer}.npy"
        return Response(npy_bytes(act), media_type="application/x-npy",
                        headers={"Content-Disposition": f'attachment; filename="{fname}"'})
    s = channel_stats(act if channel is None else act[None])
    return fast_json({"image": rec.id, "model": lm.name, "layer": layer, "shape": list(act.shape),
                      "dtype": str(act.dtype).removeprefix("torch."), "min": s.min, "max": s.max, "mean": s.mean,
                      "values": act.numpy()})

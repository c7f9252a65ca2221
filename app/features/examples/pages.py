"""Max-activating examples, HTML faces: the partial under a channel (htmx), a channel's permalink,
a layer's overview and the page that starts index builds.

  GET  /models/{m}/layers/{l}/channels/{c}/examples   the partial shown under a channel (htmx) or a page
  GET  /models/{m}/layers/{l}/channels/{c}            permalink of one channel
  GET  /models/{m}/layers/{l}/examples                the top example of every channel of a layer
  GET  /indexes, POST /indexes, GET /indexes/{job}    start a build and watch it (htmx polling, 1 s)
"""

from __future__ import annotations

import shlex
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.core.zoo import LoadedModel
from app.deps import EngineDep, ExamplesDep, JobsDep
from app.errors import BadParameterError
from app.features.analysis.service import Engine
from app.features.examples.index_store import Manifest
from app.features.examples.schemas import ChannelP, DatasetQ, LayerP, LimitQ, ModelP, ModeQ, SplitQ, png_url
from app.features.examples.service import (
    BusyError,
    ExamplesService,
    IndexBuildingError,
    IndexMissingError,
    check_unit,
)
from app.features.jobs.service import find_job
from app.web.templating import fmt_num, lang_of, render, url_with

router = APIRouter(include_in_schema=False)


def _q(dataset: str | None, split: str | None, limit: int | None, **more: object) -> dict[str, object]:
    return {k: v for k, v in {"dataset": dataset, "split": split, "limit": limit, **more}.items() if v is not None}


def _examples_ctx(request: Request, engine: Engine, svc: ExamplesService, lm: LoadedModel, layer: str, channel: int, mode: str,
                  dataset: str | None, split: str | None, limit: int | None) -> dict[str, object]:
    """Everything the examples partial needs; state missing / building / ready."""
    info = lm.layer(layer)
    ctx: dict[str, object] = {"model": lm, "layer": layer, "c": channel, "mode": mode, "info": info,
                              "q": _q(dataset, split, limit), "fmt": fmt_num,
                              "cli": f"convscope index --model {shlex.quote(lm.name)} --data PATH --split test",
                              "datasets": svc.datasets()}
    try:
        idx, man = svc.lookup(lm, dataset, split, limit)
    except IndexBuildingError as e:
        ctx.update(state="building", job=e.job)
        return ctx
    except IndexMissingError:
        ctx.update(state="missing")
        return ctx
    if not idx.has_layer(layer):
        ctx.update(state="missing")
        return ctx
    exs = svc.examples(idx, man, layer, channel, mode)
    ctx.update(state="ready", man=man, kind=idx.layer(layer).kind, upscaled=_upscaled(lm, man),
               examples=[{"e": e, "src": png_url(lm.name, layer, channel, e.rank, mode, man),
                          "value": fmt_num(e.value, lang_of(request))}
                         for e in exs])
    return ctx


def _upscaled(lm: LoadedModel, man: Manifest) -> bool:
    """Whether the data set's images are smaller than the model's input (upscaled by its preprocessing)."""
    return bool(man.upscaled)


@router.get("/models/{model}/layers/{layer}/channels/{channel}/examples", response_class=HTMLResponse)
async def examples_partial(request: Request, engine: EngineDep, svc: ExamplesDep, model: ModelP, layer: LayerP, channel: ChannelP,
                           mode: ModeQ = "crop", dataset: DatasetQ = None, split: SplitQ = None,
                           limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    check_unit(lm, layer, channel)
    ctx = await engine.gate.run(_examples_ctx, request, engine, svc, lm, layer, channel, mode, dataset, split, limit)
    return render(request, "partials/examples.html", {"x": ctx}, block="examples")


@router.get("/models/{model}/layers/{layer}/channels/{channel}", response_class=HTMLResponse)
async def channel_permalink(request: Request, engine: EngineDep, svc: ExamplesDep, model: ModelP, layer: LayerP,
                            channel: ChannelP,
                            dataset: DatasetQ = None, split: SplitQ = None, limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    check_unit(lm, layer, channel)
    info = lm.layer(layer)
    crop = await engine.gate.run(_examples_ctx, request, engine, svc, lm, layer, channel, "crop", dataset, split, limit)
    image = await engine.gate.run(_examples_ctx, request, engine, svc, lm, layer, channel, "image", dataset, split, limit)
    crop["fixed"] = image["fixed"] = True
    fh, fw = svc.field_size(lm, layer)
    return render(request, "examples/channel.html", {
        "model": lm, "layer": layer, "c": channel, "info": info, "crop": crop, "image": image,
        "channels": info.output_shape[0], "q": _q(dataset, split, limit), "fh": fh, "fw": fw}, block="permalink")


@router.get("/models/{model}/layers/{layer}/examples", response_class=HTMLResponse)
async def layer_overview(request: Request, engine: EngineDep, svc: ExamplesDep, model: ModelP, layer: LayerP,
                         mode: ModeQ = "crop", dataset: DatasetQ = None, split: SplitQ = None,
                         limit: LimitQ = None) -> HTMLResponse:
    lm = engine.model(model)
    info = lm.layer(layer)
    check_unit(lm, layer, 0)
    ctx: dict[str, object] = {"model": lm, "layer": layer, "info": info, "mode": mode, "q": _q(dataset, split, limit),
                              "cli": f"convscope index --model {shlex.quote(lm.name)} --data PATH --split test",
                              "datasets": svc.datasets(), "fmt": fmt_num,
                              "layers": [li for li in lm.layers if len(li.output_shape) in (1, 3)]}
    try:
        idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
    except IndexBuildingError as e:
        ctx.update(state="building", job=e.job)
    except IndexMissingError:
        ctx.update(state="missing")
    else:
        tiles = []
        if idx.has_layer(layer):
            for c in range(info.output_shape[0]):
                exs = svc.examples(idx, man, layer, c, mode, 1)
                tiles.append({"c": c, "e": exs[0] if exs else None,
                              "src": png_url(lm.name, layer, c, 0, mode, man) if exs else None,
                              "value": fmt_num(exs[0].value, lang_of(request)) if exs else ""})
        ctx.update(state="ready" if tiles else "missing", man=man, tiles=tiles, upscaled=_upscaled(lm, man))
    return render(request, "examples/layer.html", ctx, block="overview")


def _indexes_ctx(request: Request, engine: Engine, svc: ExamplesService, error: str | None = None) -> dict[str, object]:
    return {"models": list(engine.zoo.models.values()), "datasets": svc.datasets(),
            "manifests": svc.istore.manifests(), "jobs": svc.builds(),
            "running": svc.running(), "error": error, "first_layer": _first_layer(engine)}


def _first_layer(engine: Engine) -> dict[str, str]:
    return {m.name: m.first_conv for m in engine.zoo.models.values()}


@router.get("/indexes", response_class=HTMLResponse)
async def indexes_page(request: Request, engine: EngineDep, svc: ExamplesDep) -> HTMLResponse:
    return render(request, "examples/indexes.html", _indexes_ctx(request, engine, svc))


@router.post("/indexes", response_class=HTMLResponse)
async def indexes_start(request: Request, engine: EngineDep, svc: ExamplesDep, model: Annotated[str, Form(max_length=64)],
                        dataset: Annotated[str, Form(max_length=64)] = "default",
                        split: Annotated[str, Form(max_length=32, pattern=r"^[A-Za-z0-9_-]*$")] = "test",
                        limit: Annotated[str, Form(max_length=12)] = "") -> Response:
    lm = engine.model(model)
    lim = None
    if limit.strip():
        if not limit.strip().isdigit() or int(limit) < 1:
            raise BadParameterError("limit must be a positive whole number (or empty for all images)")
        lim = int(limit)
    try:
        job = svc.start(lm, dataset, split or "test", lim)
    except BusyError as e:
        return render(request, "examples/indexes.html", _indexes_ctx(request, engine, svc, str(e)), status_code=409)
    target = url_with(request, f"/jobs/{job.id}")
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get("/indexes/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, jobs: JobsDep, job_id: Annotated[str, Path(max_length=64)]) -> HTMLResponse:
    """A build's page under its former address: the one job page (app.features.jobs.pages)."""
    job = find_job(jobs, job_id)
    return render(request, "pages/job.html", {"job": job, "done_url": job.page_url}, block="job")

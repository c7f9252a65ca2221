"""Max-activating examples, JSON and PNG faces under /api.

  GET    /api/models/{m}/layers/{l}/channels/{c}/examples?mode=crop|image&k=9   the examples
  GET    /api/models/{m}/layers/{l}/channels/{c}/examples/{rank}.png?mode=       one crop (PNG)
  GET    /api/indexes                     built indexes, recent builds, data sets that can be indexed
  POST   /api/indexes                     start a build -> 202 + job
  GET    /api/jobs/{job}                  progress of a build (also /api/indexes/{job}, deprecated)
  DELETE /api/jobs/{job}                  cancel a build (also /api/indexes/{job}, deprecated)

Every examples query takes optional ``dataset`` (a data set name, ``default``: the configured one),
``split`` and ``limit`` to pick among several indexes of the same model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from app.deps import EngineDep, ExamplesDep, JobsDep
from app.features.examples.schemas import (
    BuildIn,
    BuildingProblem,
    ChannelP,
    DatasetOut,
    DatasetQ,
    ExamplesOut,
    IndexesOut,
    LayerP,
    LimitQ,
    MissingProblem,
    ModelP,
    ModeQ,
    SplitQ,
    example_out,
    index_out,
)
from app.features.examples.service import IndexMissingError, check_unit
from app.features.jobs.schemas import JobOut, job_out
from app.features.jobs.service import find_job
from app.http.responses import ERRORS, PNG, Problem

router = APIRouter(prefix="/api", tags=["examples"])


@router.get("/models/{model}/layers/{layer}/channels/{channel}/examples", response_model=ExamplesOut,
            responses={**ERRORS, 404: {"model": MissingProblem, "description": "unknown model/layer, or no index yet "
                                                                                "(the message says how to build it)"},
                       409: {"model": BuildingProblem, "description": "the index is being built"}},
            summary="The images (or receptive-field crops) that excite one channel most")
async def get_examples(request: Request, engine: EngineDep, svc: ExamplesDep, model: ModelP, layer: LayerP, channel: ChannelP,
                       mode: ModeQ = "crop", k: Annotated[int, Query(ge=1, le=64)] = 9,
                       dataset: DatasetQ = None, split: SplitQ = None, limit: LimitQ = None) -> Response:
    lm = engine.model(model)
    check_unit(lm, layer, channel)
    idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
    if not idx.has_layer(layer):
        raise IndexMissingError(f"the index has no layer {layer!r}; rebuild it")
    exs = svc.examples(idx, man, layer, channel, mode, k)
    body = ExamplesOut(model=lm.name, layer=layer, channel=channel, mode=mode, kind=idx.layer(layer).kind,
                       input_size=list(lm.spec.preprocess.input_size), index=index_out(man),
                       examples=[example_out(e, lm.name, layer, channel, mode, man) for e in exs])
    return JSONResponse(body.model_dump())


@router.get("/models/{model}/layers/{layer}/channels/{channel}/examples/{rank}.png", response_class=Response,
            responses={**ERRORS, 200: PNG, 409: {"model": BuildingProblem}},
            summary="One example as PNG: the receptive-field crop (mode crop) or the network input (mode image)")
async def get_example_png(request: Request, engine: EngineDep, svc: ExamplesDep, model: ModelP, layer: LayerP, channel: ChannelP,
                          rank: Annotated[int, Path(ge=0, le=63)], mode: ModeQ = "crop", dataset: DatasetQ = None,
                          split: SplitQ = None, limit: LimitQ = None) -> Response:
    lm = engine.model(model)
    check_unit(lm, layer, channel)
    idx, man = await engine.gate.run(svc.lookup, lm, dataset, split, limit)
    data = await engine.gate.run(svc.crop_png, lm, man, idx, layer, channel, mode, rank)
    return Response(data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/indexes", response_model=IndexesOut, responses=ERRORS,
            summary="Built indexes, recent builds and the data sets to index")
async def list_indexes(request: Request, engine: EngineDep, svc: ExamplesDep,
                       model: Annotated[str | None, Query(max_length=64)] = None) -> IndexesOut:
    mans = svc.istore.manifests(model)
    return IndexesOut(indexes=[index_out(m) for m in mans],
                      jobs=[job_out(j) for j in svc.builds()],
                      datasets=[DatasetOut(name=d.name, description=d.description) for d in svc.datasets()])


@router.post("/indexes", status_code=202, response_model=JobOut,
             responses={**ERRORS, 409: {"model": BuildingProblem, "description": "another build is running"}},
             summary="Start building an examples index (one build at a time); follow it at the returned url")
async def post_index(request: Request, engine: EngineDep, svc: ExamplesDep, body: Annotated[BuildIn, Body()]) -> JSONResponse:
    lm = engine.model(body.model)
    job = svc.start(lm, body.dataset, body.split, body.limit, k=body.k, workers=body.workers)
    return JSONResponse(job_out(job).model_dump(), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


@router.get("/indexes/{job_id}", response_model=JobOut, responses={**ERRORS, 404: {"model": Problem}}, deprecated=True,
            summary="Progress of a build (deprecated: GET /api/jobs/{job_id} answers the same for every job)")
async def get_build(jobs: JobsDep, job_id: Annotated[str, Path(max_length=64)]) -> JobOut:
    return job_out(find_job(jobs, job_id))


@router.delete("/indexes/{job_id}", status_code=202, response_model=JobOut,
               responses={**ERRORS, 404: {"model": Problem}}, deprecated=True,
               summary="Cancel a build (deprecated: DELETE /api/jobs/{job_id}); its checkpoint is kept for a new build")
async def cancel_build(jobs: JobsDep, job_id: Annotated[str, Path(max_length=64)]) -> JSONResponse:
    job = find_job(jobs, job_id, cancel=True)
    return JSONResponse(job_out(job).model_dump(), status_code=202)  # type: ignore[arg-type]

"""JSON face of comparing two analyses: GET /api/compare, and the query parameters naming the two sides.

    ?a=<id>&b=<id>&model=m                         two photos, one model
    ?image=<id>&model_a=m1&model_b=m2              one photo, two models
    ?image=<id>&model=m&checkpoint_a=epoch-001&checkpoint_b=final   one photo, two checkpoints
``snapshot=`` sets both checkpoints at once; ``model=name@epoch-003`` also works.
The HTML pages (:mod:`app.features.compare.pages`) take the same parameters through :func:`sides`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from app.deps import EngineDep
from app.errors import BadParameterError
from app.features.compare.schemas import CompareOut
from app.features.compare.service import Sides, analyses, layer_rows, pair_layers, side_summary
from app.http.responses import ERRORS, fast_json
from app.runtime.blocking import run_blocking

router = APIRouter(prefix="/api", tags=["compare"])


Id = Annotated[str | None, Query(max_length=64)]
Name = Annotated[str | None, Query(max_length=64)]
Ckpt = Annotated[str | None, Query(max_length=32)]


def sides(engine: EngineDep, a: Id = None, b: Id = None, image: Id = None, model: Name = None,
          model_a: Name = None, model_b: Name = None, checkpoint_a: Ckpt = None, checkpoint_b: Ckpt = None,
          snapshot: Ckpt = None) -> Sides:
    ia, ib = a or image, b or image
    if not ia or not ib:
        raise NoPhotosNamed("name two photos (a= and b=) or one (image=); GET /api/images lists them")
    zoo = engine.zoo
    ma = engine.pick(model_a or model).name
    mb = engine.pick(model_b or model).name
    lm_a = zoo.variant(ma, checkpoint_a or snapshot)
    lm_b = zoo.variant(mb, checkpoint_b or snapshot)
    q = {k: v for k, v in {"a": a, "b": b, "image": image, "model": model, "model_a": model_a, "model_b": model_b,
                           "checkpoint_a": checkpoint_a, "checkpoint_b": checkpoint_b, "snapshot": snapshot}.items()
         if v}
    return Sides(engine.image(ia), engine.image(ib), lm_a, lm_b, q)


class NoPhotosNamed(BadParameterError):
    pass


SidesDep = Annotated[Sides, Depends(sides)]


@router.get("/compare", response_model=None, responses={**ERRORS, 200: {"model": CompareOut}},
            summary="Two analyses layer by layer, with per-layer difference statistics")
async def compare_api(engine: EngineDep, s: SidesDep) -> Response:
    an_a, an_b = await analyses(engine, s)
    pairs, how = pair_layers(s.lm_a, s.lm_b)
    rows = await run_blocking(layer_rows, pairs, an_a, an_b)
    return fast_json({"a": side_summary(s, "a", an_a), "b": side_summary(s, "b", an_b), "paired_by": how,
                      "layers": rows})

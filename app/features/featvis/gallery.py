"""A layer's (or the classes') feature-visualization gallery: which pictures are rendered, their links,
and the one job that renders the missing ones."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request

from app import i18n
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.analysis.service import Engine
from app.features.featvis.service import FeatVisService, last_spatial_conv, make_objective
from app.jobs import Job
from app.web.templating import lang_of, url_with

Show = Literal["channels", "classes"]
ModelName = Annotated[str, Path(max_length=64)]
GalleryLayer = Annotated[str | None, Query(max_length=200, description="default: the last convolution")]


def gallery(request: Request, engine: Engine, svc: FeatVisService, model: str, layer: str | None, show: str) -> dict[str, object]:
    """The feature visualizations of one layer's channels (or of the classes), each with its page and,
    when rendered with the default settings, its picture."""
    lm = engine.model(model)
    if show == "classes":
        layer = lm.layers[-1].name
        kind, labels = "class", list(lm.spec.categories)
    else:
        layer = layer or last_spatial_conv(lm)
        info = lm.layer(layer)
        kind, labels = ("channel" if info.is_spatial else "unit"), [str(c) for c in range(info.channels)]
    s = svc.settings_for(lm)
    objs = [make_objective(lm, kind, layer, c) for c in range(len(labels))]
    whole = make_objective(lm, "layer", layer, 0) if show != "classes" else None
    done = svc.rendered(lm, objs + ([whole] if whole else []), s)
    whole_done = done.pop() if whole else False
    qs = {} if kind == "channel" else {"objective": kind}

    def item(c: int, rendered: bool) -> dict[str, object]:
        path = f"/models/{lm.name}/layers/{layer}/channels/{c}/featvis"
        api_url = f"/api{path}" + (f"?objective={kind}" if qs else "")
        return {"index": c, "label": labels[c], "rendered": rendered, "page": url_with(request, path, **qs),
                "json": api_url, "image": api_url + ("&" if qs else "?") + "format=png" if rendered else None}

    items = [item(c, d) for c, d in enumerate(done)]
    cmd = f"convscope featvis --model {lm.name} --layer {layer} --all" + (f" --objective {kind}" if qs else "")
    self_params = {"layer": layer} if show == "channels" else {"show": show}  # this gallery's own URL
    return {"model": lm, "layers": [li.name for li in lm.layers], "layer": layer, "objective": kind, "show": show,
            "items": items, "rendered": sum(done), "steps": s.steps, "seed": s.seed, "objs": objs, "settings": s,
            "missing": len(done) - sum(done), "limit": _render_limit(lm), "cmd": cmd,
            "self_url": url_with(request, f"/models/{lm.name}/featvis", **self_params), "self_params": self_params,
            "whole": None if whole is None else {
                "rendered": whole_done,
                "page": url_with(request, f"/models/{lm.name}/layers/{layer}/channels/0/featvis", objective="layer"),
                "image": f"/api/models/{lm.name}/layers/{layer}/channels/0/featvis?objective=layer&format=png"}}


def _render_limit(lm: LoadedModel) -> int:
    """How many pictures one browser request may queue: a 32x32 picture takes about a second here, a
    224x224 one tens of seconds."""
    return 256 if lm.spec.preprocess.crop <= 64 else 16


def start_missing(request: Request, svc: FeatVisService, g: dict[str, Any]) -> Job | None:
    """One job that renders the gallery's missing pictures (None when none is missing)."""
    lm = g["model"]
    if g["missing"] > g["limit"]:
        raise BadParameterError(i18n.translator(lang_of(request))(
            "fvg.too_many", n=g["missing"], limit=g["limit"], cmd=g["cmd"]))
    todo = [o for o, it in zip(g["objs"], g["items"], strict=True) if not it["rendered"]]
    return svc.start_many(lm, todo, g["settings"], page_url=g["self_url"])

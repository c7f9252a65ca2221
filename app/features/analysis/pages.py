"""HTML faces of a photo's analysis: the photo's page (predictions, layers), a layer's channels (on a colour scale:
per channel, per layer or for the whole network), one channel (also over the photo, with receptive fields).

The pages work without JavaScript; the layer and channel views are also blocks that htmx loads as partials."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.core.imaging import SCALES, png_data_uri
from app.core.inference import channel_stats, top_k
from app.deps import EngineDep
from app.features.analysis import onphoto
from app.features.analysis.chart import channel_chart
from app.features.analysis.draw import layer_tiles
from app.features.models.schemas import model_detail
from app.features.units import check_channel
from app.runtime.blocking import run_blocking
from app.web.templating import fmt_num, lang_of, render, url_with

router = APIRouter(include_in_schema=False)
ScaleQ = Annotated[Literal["channel", "layer", "global"], Query()]


@router.get("/images/{image_id}", response_class=HTMLResponse)
async def image_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                     model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    probs = await engine.predictions(lm, rec)
    detail = model_detail(lm)
    return render(request, "image.html", {
        "rec": rec, "model": lm, "models": list(engine.zoo.models.values()), "detail": detail,
        "predictions": top_k(probs, lm.spec.categories, 5), "total": lm.total_parameters,
        "input_size": lm.spec.preprocess.crop})


@router.get("/images/{image_id}/layers/{layer}", response_class=HTMLResponse)
async def layer_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                     layer: Annotated[str, Path(max_length=200)],
                     model: Annotated[str | None, Query(max_length=64)] = None, scale: ScaleQ = "channel") -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    lm.layer(layer)
    a = await engine.analysis_async(lm, rec)
    network = await onphoto.scale_context(engine, lm, rec, scale)
    ctx = await engine.gate.run(functools.partial(layer_tiles, lm, a.activations[layer], layer, lang_of(request),
                                                  scale, network))
    chart = channel_chart(a.activations[layer], lang_of(request), lambda c: url_with(
        request, f"/images/{rec.id}/layers/{layer}/channels/{c}", model=lm.name))
    return render(request, "layer.html", {"rec": rec, "model": lm, "scales": SCALES, "channel_chart": chart, **ctx},
                  block="layer")


@router.get("/images/{image_id}/layers/{layer}/channels/{channel}", response_class=HTMLResponse)
async def channel_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                       model: Annotated[str | None, Query(max_length=64)] = None, scale: ScaleQ = "channel",
                       opacity: Annotated[float, Query(ge=0, le=1)] = onphoto.DEFAULT_OPACITY) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    info = lm.layer(layer)
    check_channel(channel, info.channels)
    a = await engine.analysis_async(lm, rec)
    network = await onphoto.scale_context(engine, lm, rec, scale)
    rf = await run_blocking(onphoto.data_attrs, lm, layer) if info.is_spatial else None
    act = a.activations[layer]
    m = act[channel] if act.dim() == 3 else act[channel:channel + 1][None]
    st = channel_stats(m[None])
    values = m.tolist() if m.numel() <= 32 * 32 else None
    return render(request, "channel.html", {
        "rec": rec, "model": lm, "info": info, "layer": layer, "c": channel,
        "src": png_data_uri(await engine.gate.run(functools.partial(engine.activation_png, lm, rec, layer, channel, a,
                                                                    scale=scale, network=network))),
        "scale": scale, "scales": SCALES, "opacity": opacity, "rf": rf,
        **dict(zip(("scale_lo", "scale_hi"), (fmt_num(v, lang_of(request))
                                              for v in onphoto.bounds(act, channel, scale, network)), strict=True)),
        "lo": fmt_num(st.min[0], lang_of(request)), "hi": fmt_num(st.max[0], lang_of(request)),
        "mean": fmt_num(st.mean[0], lang_of(request)), "values": values,
        "h": m.shape[0], "w": m.shape[1], "fmt": fmt_num}, block="channel")

"""HTML faces of a photo's analysis: the photo's page (predictions, layers), a layer's channels, one channel.

The pages work without JavaScript; the layer and channel views are also blocks that htmx loads as partials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app.core.imaging import png_data_uri
from app.core.inference import channel_stats, top_k
from app.deps import EngineDep
from app.features.analysis.draw import layer_tiles
from app.features.analysis.service import check_channel
from app.features.models.schemas import model_detail
from app.web.templating import fmt_num, lang_of, render

router = APIRouter(include_in_schema=False)


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
                     model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    lm.layer(layer)
    a = await engine.analysis_async(lm, rec)
    ctx = await engine.gate.run(layer_tiles, lm, a.activations[layer], layer, lang_of(request))
    return render(request, "layer.html", {"rec": rec, "model": lm, **ctx}, block="layer")


@router.get("/images/{image_id}/layers/{layer}/channels/{channel}", response_class=HTMLResponse)
async def channel_page(request: Request, engine: EngineDep, image_id: Annotated[str, Path(max_length=64)],
                       layer: Annotated[str, Path(max_length=200)], channel: Annotated[int, Path(ge=0, le=100_000)],
                       model: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    rec = engine.image(image_id)
    lm = engine.pick(model)
    info = lm.layer(layer)
    check_channel(channel, info.channels)
    a = await engine.analysis_async(lm, rec)
    act = a.activations[layer]
    m = act[channel] if act.dim() == 3 else act[channel:channel + 1][None]
    st = channel_stats(m[None])
    values = m.tolist() if m.numel() <= 32 * 32 else None
    return render(request, "channel.html", {
        "rec": rec, "model": lm, "info": info, "layer": layer, "c": channel,
        "src": png_data_uri(await engine.gate.run(engine.activation_png, lm, rec, layer, channel, a)),
        "lo": fmt_num(st.min[0], lang_of(request)), "hi": fmt_num(st.max[0], lang_of(request)),
        "mean": fmt_num(st.mean[0], lang_of(request)), "values": values,
        "h": m.shape[0], "w": m.shape[1], "fmt": fmt_num}, block="channel")

"""Lecture section 8's pictures: the four ways of looking inside a CNN, each shown with real pictures of the
served CIFAR-10 models (learned filters, a sample photo's activations, the top-9 examples of the channel that
fires most on that photo, rendered feature visualizations) and a link to its live view."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.features.featvis.gallery import gallery
from app.features.samples.service import catalogue, store_sample
from app.web.templating import url_with

LECTURE_SAMPLE = "cat"  # a CIFAR-10 class, so that the predictions and the examples make sense
FEATVIS_SHOWN = 6


async def section8(request: Request, services: Any, image: str | None) -> dict[str, Any]:
    """The page's context: for each CIFAR-10 model (32x32 input) the four pictures and their live views;
    the photo is ``image`` or the lecture's sample photo (stored like an upload, once)."""
    engine = services.engine
    rec = engine.image(image) if image else await store_sample(services, LECTURE_SAMPLE)
    models = [lm for lm in engine.zoo.models.values() if lm.spec.preprocess.crop <= 64][:2]
    rows = []
    for lm in models:
        deep = lm.first_conv  # the text speaks of the first layer: its orientations and colours
        act = (await engine.analysis_async(lm, rec)).activations[deep]
        strongest = int(act.detach().float().reshape(act.shape[0], -1).mean(1).argmax())
        man = services.examples.find(lm)
        building = services.examples.active_for(lm.name)
        ex_base = f"/api/models/{lm.name}/layers/{deep}/channels/{strongest}/examples"
        g = await engine.gate.run(gallery, request, engine, services.featvis, lm.name, lm.first_conv, "channels")
        rendered = [it for it in g["items"] if it["rendered"]][:FEATVIS_SHOWN]  # type: ignore[index]
        rows.append({
            "model": lm, "first": lm.first_conv, "deep": deep, "channel": strongest,
            "filters_src": f"/api/models/{lm.name}/filters?format=png",
            "filters_url": url_with(request, f"/models/{lm.name}/filters"),
            "act_src": f"/api/images/{rec.id}/activations/{lm.first_conv}?model={lm.name}&format=png",
            "act_url": url_with(request, f"/images/{rec.id}/layers/{lm.first_conv}", model=lm.name),
            "photo_url": url_with(request, f"/images/{rec.id}", model=lm.name),
            "examples": [f"{ex_base}/{k}.png?mode=image" for k in range(min(9, man.k, man.count))] if man else [],
            "examples_building": building is not None and man is None,
            "examples_url": url_with(request, f"/images/{rec.id}/layers/{deep}/channels/{strongest}", model=lm.name),
            "examples_overview": url_with(request, f"/models/{lm.name}/layers/{deep}/examples"),
            "featvis": rendered, "featvis_total": len(g["items"]),  # type: ignore[arg-type]
            "featvis_url": url_with(request, f"/models/{lm.name}/featvis", layer=lm.first_conv),
        })
    sample = catalogue()[LECTURE_SAMPLE]
    return {"rec": rec, "rows": rows, "sample": sample if not image else None, "image": image,
            "models": list(engine.zoo.models.values()), "samples": list(catalogue().values())[:6]}

"""HTML face of the checkpoint timeline: scrub across a model's training snapshots.

/models/{model}/timeline?image=&layer=&step= is the page (a range input; htmx swaps the frame and
pushes the URL, so every position is a permalink); ``snapshot=epoch-003`` may name the position
instead of ``step``. Each position also says how much the first layer's filters look like the lecture's
hand-made ones, and how that likeness goes over the checkpoints.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from app import i18n
from app.core.imaging import png_data_uri
from app.core.inference import top_k
from app.core.snapshots import normalize_snapshot
from app.deps import EngineDep
from app.features.models.charts import history_note, training_charts
from app.features.models.likeness import timeline_context
from app.features.timeline.service import strongest_channels
from app.i18n import format as numbers
from app.runtime.blocking import run_blocking
from app.web.templating import lang_of, render

router = APIRouter(include_in_schema=False)


@router.get("/models/{model}/timeline", response_class=HTMLResponse)
async def timeline_page(request: Request, engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                        image: Annotated[str | None, Query(max_length=64)] = None,
                        layer: Annotated[str | None, Query(max_length=200)] = None,
                        step: Annotated[int | None, Query(ge=0, le=10_000)] = None,
                        snapshot: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    zoo = engine.zoo
    base = zoo.get(model.split("@")[0])
    snaps = zoo.snapshots(base.name)
    stops = [s.id for s in snaps] + ["final"]
    if step is None:
        want = "final" if snapshot in (None, "", "final") else normalize_snapshot(snapshot)
        if want != "final":
            zoo.snapshot(base.name, want)  # 404 with the valid ones
        step = stops.index(want)
    step = min(step, len(stops) - 1)
    lm = zoo.variant(base.name, stops[step])
    when = _when(request, snaps, step)
    chosen = layer or lm.first_conv
    lm.layer(chosen)
    w = engine.filters(lm, None)
    ctx: dict[str, object] = {
        "base": base, "lm": lm, "stops": stops, "step": step, "snaps": snaps, "when": when, "layer": chosen,
        "filters_src": png_data_uri(await engine.gate.run(engine.filters_png, lm, None, "rgb")), "n_filters": w.shape[0],
        "images": engine.store.list_images(30), "image": image, "rec": None}
    card = base.spec.card or {}
    epoch = snaps[step].epoch if step < len(snaps) else card.get("epochs")  # type: ignore[attr-defined]
    ctx["curves"] = training_charts(card, lang_of(request), mark_epoch=epoch,
                                    mark_label=i18n.translator(lang_of(request))("ch.now", when=when))
    ctx["curves_note"] = history_note(card, lang_of(request)) if ctx["curves"] else ""
    ctx.update(await run_blocking(timeline_context, engine, lm, lang_of(request)))  # learned vs hand-made filters
    if image:
        rec = engine.image(image)
        an = await engine.analysis_async(lm, rec)
        act = an.activations[chosen]
        ctx.update(rec=rec, predictions=top_k(an.probabilities, lm.spec.categories, 5),
                   grid_src=png_data_uri(await engine.gate.run(engine.activation_png, lm, rec, chosen)),
                   channels=act.shape[0],
                   top=[{"c": c, "max": numbers.sig(mx, lang_of(request)), "mean": numbers.sig(mean, lang_of(request))}
                        for c, mx, mean in strongest_channels(act, 6)])
    return render(request, "timeline.html", ctx, block="frame")


def _when(request: Request, snaps: list[object], step: int) -> str:
    _ = i18n.translator(lang_of(request))
    if step >= len(snaps):
        return _("tl.final")
    return _("tl.epoch", e=snaps[step].epoch)  # type: ignore[attr-defined]

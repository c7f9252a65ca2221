"""Learned vs hand-made filters for the pages and the API: a model's first-layer filters ranked by their
similarity to the lecture's hand-made filters (:mod:`app.core.likeness`), with captions in the visitor's
language, and the same over the model's training snapshots (does the likeness grow while it learns?)."""

from __future__ import annotations

from typing import Any

from app import i18n
from app.core.likeness import COMPARED, Likeness, likeness, summary
from app.core.zoo import LoadedModel
from app.features.analysis.service import Engine
from app.i18n import format as numbers

SHOWN = 5  # the captions shown first on a page; the others behind "all filters"


def ranked(engine: Engine, lm: LoadedModel) -> list[Likeness]:
    return likeness(engine.filters(lm, None))


def caption(r: Likeness, lang: str) -> str:
    """"filter 5 ≈ vertical edges, 0.87" (with "inverted" when dark and light are swapped)."""
    _ = i18n.translator(lang)
    name = _("lec.filter." + r.match)
    name = name if name.startswith("Sobel") else name.lower()
    key = "lk.caption_inverted" if r.inverted else "lk.caption"
    return _(key, f=r.filter, name=name, sim=numbers.fixed(r.similarity, 2, lang))


def over_training(engine: Engine, lm: LoadedModel) -> list[dict[str, Any]]:
    """The likeness summary at every training snapshot of the model, then at its final weights."""
    base = lm.name.split("@")[0]
    out = []
    stops = [(s.id, s.epoch, s.variant) for s in engine.zoo.snapshots(base)] + [("final", None, base)]
    for sid, epoch, variant in stops:
        r = ranked(engine, engine.model(variant))
        top = r[0] if r else None
        out.append({"snapshot": sid, "epoch": epoch, **summary(r),
                    "top": None if top is None else {"filter": top.filter, "match": top.match,
                                                     "similarity": top.similarity}})
    return out


def likeness_json(engine: Engine, lm: LoadedModel, *, training: bool = True) -> dict[str, Any]:
    """The JSON of ``GET /api/models/{model}/filters/likeness``."""
    r = ranked(engine, lm)
    return {"model": lm.name, "layer": lm.first_conv, "compared": list(COMPARED), **summary(r),
            "filters": [{"filter": x.filter, "match": x.match, "similarity": x.similarity, "inverted": x.inverted,
                         "cosines": x.cosines, "caption": {"en": caption(x, "en"), "es": caption(x, "es")}}
                        for x in r],
            "over_training": over_training(engine, lm) if training and "@" not in lm.name else []}


def page_context(engine: Engine, lm: LoadedModel, lang: str) -> dict[str, Any]:
    """The filters view's captions: every filter ranked, each "filter 5 ≈ vertical edges, 0.87"."""
    r = ranked(engine, lm)
    return {"likeness": [{"filter": x.filter, "text": caption(x, lang), "sim": x.similarity} for x in r],
            "likeness_shown": SHOWN, "likeness_mean": numbers.fixed(summary(r)["mean_best"], 2, lang)}


def timeline_context(engine: Engine, lm: LoadedModel, lang: str) -> dict[str, Any]:
    """The timeline's likeness: the mean best similarity at every snapshot and the current one's captions."""
    steps = over_training(engine, lm)
    r = ranked(engine, lm)
    return {"lk_steps": [{"snapshot": s["snapshot"], "epoch": s["epoch"], "mean": numbers.fixed(s["mean_best"], 2, lang),
                          "value": round(s["mean_best"], 4)} for s in steps],
            "lk_now": [caption(x, lang) for x in r[:3]], "lk_mean": numbers.fixed(summary(r)["mean_best"], 2, lang)}

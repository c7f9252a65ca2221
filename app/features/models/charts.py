"""A model card's numbers as charts: the training curves (the card's ``history``), per-class accuracy bars
and the confusion matrix on the test split. The model page and the training timeline draw these; the
numbers are the card's own, never recomputed here."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from app import i18n
from app.i18n import format as numbers
from app.web.charts import Series, confusion_chart, hbar_chart, line_chart


def history_of(card: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The card's per-epoch history, by epoch ([] when it has none)."""
    return sorted((card or {}).get("history") or [], key=lambda h: h["epoch"])


def history_note(card: dict[str, Any], lang: str) -> str:
    """Where the curves come from: recorded while training, or evaluated afterwards from snapshots."""
    _ = i18n.translator(lang)
    hist = history_of(card)
    n = numbers.integer((card.get("dataset") or {}).get("test_images") or 0, lang)
    if any(h.get("train_loss") is not None for h in hist):
        return _("ch.recorded", n=n)
    return _("ch.from_snapshots", epochs=numbers.numlist([h["epoch"] for h in hist], lang), n=n)


def training_charts(card: dict[str, Any] | None, lang: str, *, mark_epoch: float | None = None,
                    mark_label: str = "") -> list[Markup]:
    """Accuracy and loss over the epochs (train and test where recorded), and the learning rate where
    recorded; ``mark_epoch`` draws the timeline's position."""
    hist = history_of(card)
    if not hist:
        return []
    _ = i18n.translator(lang)
    note = history_note(card or {}, lang)

    def series(key: str, label: str, css: str) -> Series:
        return Series(key, label, [(h["epoch"], h.get(key)) for h in hist], css)

    common = {"x_label": _("ch.epoch"), "lang": lang, "mark_x": mark_epoch, "mark_label": mark_label, "note": note}
    recorded = any(h.get("train_loss") is not None for h in hist)
    title = (lambda t: t) if recorded else (lambda t: _("ch.from_snapshots_short", title=t))  # noqa: E731
    acc = [s for s in (series("train_accuracy", _("ch.train_acc"), "s1"), series("test_accuracy", _("ch.test_acc"), "s0"))
           if any(y is not None for _x, y in s.points)]
    loss = [s for s in (series("train_loss", _("ch.train_loss"), "s1"), series("test_loss", _("ch.test_loss"), "s0"))
            if any(y is not None for _x, y in s.points)]
    out = [line_chart(acc, title=title(_("ch.accuracy")), percent=True, y_min=0.0, y_max=1.0, **common),  # type: ignore[arg-type]
           line_chart(loss, title=title(_("ch.loss")), y_min=0.0, **common)]  # type: ignore[arg-type]
    if any(h.get("lr") is not None for h in hist):
        lr = [Series("lr", _("ch.lr"), [(h["epoch"], h.get("lr")) for h in hist if h["epoch"] > 0], "s2")]
        out.append(line_chart(lr, title=_("ch.lr"), y_min=0.0, height=200, **common))  # type: ignore[arg-type]
    return out


def class_charts(card: dict[str, Any] | None, lang: str) -> dict[str, Any] | None:
    """Per-class accuracy bars and the confusion matrix of the card (None when the card has no matrix)."""
    card = card or {}
    cm = card.get("confusion_matrix")
    classes = card.get("classes") or []
    if not cm or len(cm) != len(classes):
        return None
    _ = i18n.translator(lang)
    labels = [numbers.class_name(c, lang) for c in classes]
    total = sum(map(sum, cm))
    correct = sum(cm[i][i] for i in range(len(cm)))
    acc = correct / max(1, total)
    per_class = [(c, lab, row[i] / max(1, sum(row))) for i, (c, lab, row) in enumerate(zip(classes, labels, cm))]
    counts = sorted({sum(row) for row in cm})
    per = "–".join(numbers.integer(c, lang) for c in sorted({counts[0], counts[-1]}))
    return {
        "bars": hbar_chart(per_class, title=_("ch.per_class", acc=numbers.percent(acc, 1, lang)), lang=lang, highlight=acc),
        "confusion": confusion_chart(cm, labels, title=_("ch.confusion"), lang=lang, true_label=_("ch.true"),
                                     pred_label=_("ch.pred")),
        "note": _("ch.confusion_note", per=per, correct=numbers.integer(correct, lang), total=numbers.integer(total, lang),
                  acc=numbers.percent(acc, 1, lang)),
        "accuracy": acc,
    }

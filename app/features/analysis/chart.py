"""The layer view's per-channel chart: the photo's mean activation of every channel, sorted from the
strongest, each column a link to its channel's view."""

from __future__ import annotations

from collections.abc import Callable

import torch
from markupsafe import Markup

from app import i18n
from app.web.charts import column_chart


def channel_means(act: torch.Tensor) -> list[tuple[int, float]]:
    """(channel, mean activation) of a (C, H, W) activation, strongest first (ties by channel)."""
    means = act.detach().float().reshape(act.shape[0], -1).mean(1).tolist()
    return sorted(enumerate(means), key=lambda cv: (-cv[1], cv[0]))


def channel_chart(act: torch.Tensor, lang: str, href: Callable[[int], str]) -> Markup | None:
    """The sorted column chart of a conv layer's channels (None for a vector layer)."""
    if act.dim() != 3:
        return None
    _ = i18n.translator(lang)
    return column_chart(channel_means(act), title=_("ch.channels"), lang=lang, x_label=_("ch.channel"),
                        y_label=_("ch.mean_act"), href=href)

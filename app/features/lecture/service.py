"""The lecture's logic over :mod:`app.core.lecture` that both faces (the JSON API and the projector pages)
use: a served model's parameter table, and a hand-made filter applied to a photo (the lecture's own photo or
an uploaded one) with its PNG (or JPEG for the projector page), the last results kept for the page's repeated
requests."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from PIL import Image

from app.config import package_path
from app.core import imaging
from app.core import lecture as L
from app.core.zoo import LoadedModel
from app.features.analysis.service import Engine

DEFAULT_PHOTO = package_path("static") / "img" / "astronaut.jpg"


def model_table(lm: LoadedModel) -> L.ParamTable:
    """A served model's parameters, layer by layer, with its layers' output shapes."""
    return L.parameter_table(lm.module, shapes={li.name: li.output_shape for li in lm.layers})


@lru_cache(maxsize=1)
def _default_photo() -> Image.Image:
    with Image.open(DEFAULT_PHOTO) as im:
        return im.convert("RGB")


def _photo(engine: Engine, image: str | None) -> Image.Image:
    return _default_photo() if not image else engine.picture(engine.image(image))


def _filtered_image(res: L.FilteredPhoto) -> Image.Image:
    if res.display == "grey":
        return Image.fromarray((res.unit * 255 + 0.5).astype(np.uint8), "L")
    return Image.fromarray(imaging.colorize(res.unit), "RGB")


def _filtered_png(res: L.FilteredPhoto) -> bytes:
    return imaging.png_bytes(_filtered_image(res))


_FILTERED: OrderedDict[tuple[str, L.HandFilter], tuple[L.FilteredPhoto, bytes]] = OrderedDict()
_JPEG: OrderedDict[tuple[str, L.HandFilter], bytes] = OrderedDict()
_FILTERED_LOCK = threading.Lock()


def filter_photo(engine: Engine, image: str | None, flt: L.HandFilter) -> tuple[L.FilteredPhoto, bytes]:
    """The filtered photo and its PNG; the last 32 (photo, filter) pairs are kept (a page shows the same
    result three times: the legend's numbers, the input and the output)."""
    pic = _photo(engine, image)  # checks that the image still exists
    key = (image or "", flt)
    with _FILTERED_LOCK:
        hit = _FILTERED.get(key)
        if hit is not None:
            _FILTERED.move_to_end(key)
            return hit
    res = L.apply_filter(pic, flt)
    out = (res, _filtered_png(res))
    with _FILTERED_LOCK:
        _FILTERED[key] = out
        while len(_FILTERED) > 32:
            _FILTERED.popitem(last=False)
    return out


def filter_photo_jpeg(engine: Engine, image: str | None, flt: L.HandFilter) -> tuple[L.FilteredPhoto, bytes]:
    """The filtered photo as JPEG (quality 90, full-resolution colour), for the projector page: a third of the
    PNG's bytes, the same picture from the back of the room; kept like :func:`filter_photo`'s results."""
    res, _png = filter_photo(engine, image, flt)
    key = (image or "", flt)
    with _FILTERED_LOCK:
        hit = _JPEG.get(key)
        if hit is not None:
            _JPEG.move_to_end(key)
            return res, hit
    data = imaging.jpeg_bytes(_filtered_image(res))
    with _FILTERED_LOCK:
        _JPEG[key] = data
        while len(_JPEG) > 32:
            _JPEG.popitem(last=False)
    return res, data

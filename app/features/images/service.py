"""Stored photos at the size a page shows them: a thumbnail for lists and galleries, a display size for the
photo and compare pages (and twice that for 2x screens), as WebP, made once and kept in the store's cache
under the photo's content hash and the size (deleted with the photo). The stored original stays available
as it is (``GET /api/images/{id}/file``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image

from app.core import imaging
from app.store.database import ImageRecord, Store

SizeName = Literal["thumb", "display", "display2x"]


class Photos(Protocol):
    """What a rendition needs of the engine (app.features.analysis.service.Engine): the store, the pictures."""

    store: Store

    def picture(self, rec: ImageRecord) -> Image.Image: ...


@dataclass(frozen=True)
class Size:
    max_w: int
    max_h: int
    min_short: int = 0  # a thumbnail's shorter side, so that a gallery's cropped cell stays sharp at 2x
    quality: int = 80


# thumb: a gallery cell is ~140x110 CSS pixels, cropped to fill (object-fit: cover): 240 px on the short side
# covers it on a 2x screen. display: the photo page shows a photo at most 320 px high (compare: 220).
SIZES: dict[str, Size] = {
    "thumb": Size(320, 320, min_short=240, quality=75),
    "display": Size(1024, 320),
    "display2x": Size(2048, 640, quality=72),
}
VERSION = 1  # part of the cache key: bump it when a size or the encoding changes


def rendition_size(rec: ImageRecord, size: SizeName) -> tuple[int, int]:
    """The pixel size of ``rec`` at ``size`` (for a page's width and height attributes: no layout shift)."""
    s = SIZES[size]
    return imaging.fit_size(rec.width, rec.height, s.max_w, s.max_h, s.min_short)


def cache_key(rec: ImageRecord, size: SizeName) -> str:
    return f"photo-web:v{VERSION}:{rec.sha256}:{size}"


def rendition(engine: Photos, rec: ImageRecord, size: SizeName) -> bytes:
    """``rec`` at ``size`` as WebP: from the store's cache, else made from the stored picture and cached
    (blocking: decoding, resizing and encoding; run it off the event loop)."""
    key = cache_key(rec, size)
    data = engine.store.cache_get(key)
    if data is None:
        s = SIZES[size]
        data = imaging.web_bytes(engine.picture(rec), rendition_size(rec, size), s.quality)
        engine.store.cache_put(key, data, rec.id, durable=False)
    return data

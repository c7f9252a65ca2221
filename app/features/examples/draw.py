"""Drawing one example: the receptive-field crop, enlarged, with its off-image sides marked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.core import imaging

MARK = np.array([225, 29, 72], dtype=np.uint8)  # the colour of "the field runs off the image here"


def render_crop(picture: np.ndarray, box: Sequence[int], off: Sequence[str], target: int = 96) -> Image.Image:
    """Cut ``box`` (x0, y0, x1, y1) from an (H, W, 3) picture, enlarge it (nearest neighbour) towards
    ``target`` pixels and mark with a dashed line each side where the receptive field runs off the image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    tile = picture[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
    if tile.size == 0:
        tile = np.zeros((1, 1, 3), dtype=np.uint8)
    h, w = tile.shape[:2]
    scale = max(1, min(16, round(target / max(h, w))))
    img = np.array(imaging.mosaic(tile[None], cols=1, scale=scale, pad=0))
    H, W = img.shape[:2]
    t = max(2, min(H, W) // 24)
    dash = (np.arange(max(H, W)) // 4) % 2 == 0
    for side in off:
        if side == "left":
            img[:, :t][dash[:H]] = MARK
            img[:, :t][~dash[:H]] = 255
        elif side == "right":
            img[:, W - t:][dash[:H]] = MARK
            img[:, W - t:][~dash[:H]] = 255
        elif side == "top":
            img[:t, :][:, dash[:W]] = MARK
            img[:t, :][:, ~dash[:W]] = 255
        elif side == "bottom":
            img[H - t:, :][:, dash[:W]] = MARK
            img[H - t:, :][:, ~dash[:W]] = 255
    return Image.fromarray(img, "RGB")

"""Live camera frames: decode one frame, forward it capturing one layer, build a small result.

The transport (a WebSocket, see :mod:`app.features.live.socket`) keeps only the newest pending frame per
connection, so a slow model shows fewer frames per second instead of an ever-growing delay.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.core import imaging
from app.core.decode import DecodedImage
from app.core.inference import analyze_batch, top_k
from app.core.zoo import LoadedModel

MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_FRAME_SIDE = 1920
FRAME_DECODE_SIDE = 640  # frames are decoded (JPEG: DCT-scaled) to at most this side; models take far less
LIVE_TILES = 64  # channels shown in the live grid (the rest: open the frozen frame)
LIVE_MAP_SIDE = 40  # larger maps are area-pooled to this side first (PNG size and time)


@dataclass
class LiveConfig:
    model: LoadedModel
    layer: str


def layers_of(lm: LoadedModel) -> list[dict[str, object]]:
    return [{"name": li.name, "type": li.type, "shape": list(li.output_shape)} for li in lm.layers]


def default_layer(lm: LoadedModel) -> str:
    return lm.first_conv


def _grid(act: torch.Tensor) -> tuple[bytes, int]:
    """A small PNG grid of (at most) the first LIVE_TILES channels; returns (png, channels shown)."""
    if act.dim() == 1:
        return imaging.png_bytes(imaging.vector_image(act, cell=4)), act.shape[0]
    a = act[:LIVE_TILES].float()
    if max(a.shape[1], a.shape[2]) > LIVE_MAP_SIDE:
        s = LIVE_MAP_SIDE / max(a.shape[1], a.shape[2])
        a = F.interpolate(a[None], size=(max(1, round(a.shape[1] * s)), max(1, round(a.shape[2] * s))),
                          mode="area")[0]
    return imaging.png_bytes(imaging.activation_grid(a, target=32)), a.shape[0]


class LiveSockets:
    """How many live sockets each client has open: a client past ``per_client`` is refused another."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str) -> bool:
        with self._lock:
            if self._open.get(client, 0) >= self.per_client:
                return False
            self._open[client] = self._open.get(client, 0) + 1
            return True

    def release(self, client: str) -> None:
        with self._lock:
            n = self._open.get(client, 0) - 1
            if n > 0:
                self._open[client] = n
            else:
                self._open.pop(client, None)


def process_frame(cfg: LiveConfig, dec: DecodedImage, k: int = 5, top_channels: int = 6) -> dict[str, object]:
    """One decoded camera frame -> predictions, the layer's grid and its strongest channels."""
    t0 = time.perf_counter()
    lm = cfg.model
    x = lm.spec.preprocess.tensor(dec.image)
    a = analyze_batch(lm, x, [cfg.layer])[0]
    act = a.activations[cfg.layer]
    png, shown = _grid(act)
    flat = act.detach().float().reshape(act.shape[0], -1)
    mx, mean = flat.amax(1), flat.mean(1)
    order = torch.argsort(mx, descending=True)[:top_channels]
    return {
        "type": "result", "model": lm.name, "layer": cfg.layer, "shape": list(act.shape),
        "width": dec.image.width, "height": dec.image.height,
        "predictions": [vars(p) for p in top_k(a.probabilities, lm.spec.categories, k)],
        "top_channels": [{"channel": int(c), "max": round(float(mx[c]), 4), "mean": round(float(mean[c]), 4)}
                         for c in order],
        "channels_shown": shown,
        "grid": imaging.png_data_uri(png),
        "server_ms": round((time.perf_counter() - t0) * 1000, 2),
    }

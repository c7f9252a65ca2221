"""The glue between the store, the zoo and the computation core, shared by the JSON and HTML routes.

Routes call these methods and only turn the results into JSON, PNG, .npy or HTML.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.batching import MicroBatcher
from app.config import Settings
from app.core import imaging
from app.core.errors import NotFoundError
from app.core.inference import Analysis, analyze, analyze_batch, predict_batch
from app.core.zoo import LoadedModel, Zoo
from app.gate import Gate
from app.store import ImageRecord, Store


class UnknownImageError(NotFoundError):
    """An image id that the store does not hold."""

    kind = "image"

    def __init__(self, image_id: str) -> None:
        super().__init__(image_id, hint="upload one with POST /api/images (GET /api/images lists the stored ones)")


class BadParameterError(ValueError):
    """A query parameter out of range (channel, k, view...)."""


@dataclass(frozen=True)
class Upload:
    record: ImageRecord
    created: bool


class _LRU:
    """A byte-bounded LRU of analyses (activations are large: keep only recent ones)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[tuple[str, str], Analysis] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Analysis | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: tuple[str, str], value: Analysis) -> None:
        with self._lock:
            if key in self._d:
                return
            self._d[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and len(self._d) > 1:
                _, old = self._d.popitem(last=False)
                self._bytes -= old.nbytes

    def drop_image(self, image_id: str) -> None:
        with self._lock:
            for k in [k for k in self._d if k[1] == image_id]:
                self._bytes -= self._d.pop(k).nbytes


class Engine:
    """Everything the routes need: uploads, analyses, images of activations and filters."""

    def __init__(self, settings: Settings, zoo: Zoo, store: Store) -> None:
        self.settings = settings
        self.zoo = zoo
        self.store = store
        self.gate = Gate(settings.inference_concurrency, settings.inference_wait_s)
        # Uploads (decode, sanitise, fsync'ed write) have their own slots: a disk flush must not
        # hold a slot that a forward pass could use.
        self.upload_gate = Gate(settings.inference_concurrency, settings.inference_wait_s)
        # Predictions batch widely; full analyses (every activation kept) in small batches: memory.
        self.predict_batcher = MicroBatcher(self.gate, max_batch=16)
        self.analysis_batcher = MicroBatcher(self.gate, max_batch=4)
        self._analyses = _LRU(settings.analysis_cache_mb * 1024 * 1024)  # activations are large
        self._probs: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._pictures: OrderedDict[str, Image.Image] = OrderedDict()
        self._pic_lock = threading.Lock()

    # -- uploads ----------------------------------------------------------------------------
    def ingest(self, data: bytes, filename: str) -> Upload:
        """Validate, sanitise (upright RGB, no metadata) and store an upload, once per content."""
        sha = hashlib.sha256(data).hexdigest()
        existing = self.store.get_image_by_sha(sha)
        if existing is not None:
            return Upload(existing, False)
        s = self.settings
        dec = imaging.decode_image(data, max_pixels=s.max_pixels, max_side=s.max_side)
        img = imaging.limit_side(dec.image, s.max_stored_side)
        rec, created = self.store.put_image(sha256=sha, png=imaging.png_bytes(img), width=img.width,
                                            height=img.height, original_size=dec.original_size, fmt=dec.format,
                                            filename=_safe_filename(filename))
        # An upload is analysed right away: keep the picture (PNG is lossless: the same pixels).
        self._remember_picture(rec.id, img)
        return Upload(rec, created)

    def image(self, image_id: str) -> ImageRecord:
        rec = self.store.get_image(image_id) if _looks_like_id(image_id) else None
        if rec is None:
            raise UnknownImageError(image_id)
        return rec

    def picture(self, rec: ImageRecord) -> Image.Image:
        """The stored upright RGB picture of an upload."""
        with self._pic_lock:
            pic = self._pictures.get(rec.id)
            if pic is not None:
                self._pictures.move_to_end(rec.id)
                return pic
        with Image.open(io.BytesIO(self.store.image_png(rec))) as im:
            pic = im.convert("RGB")
        self._remember_picture(rec.id, pic)
        return pic

    def _remember_picture(self, image_id: str, pic: Image.Image) -> None:
        with self._pic_lock:
            self._pictures[image_id] = pic
            self._pictures.move_to_end(image_id)
            while len(self._pictures) > 16:  # up to 3 MB each
                self._pictures.popitem(last=False)

    def delete(self, image_id: str) -> bool:
        self.forget(image_id)
        return self.store.delete_image(image_id)

    def forget(self, image_id: str) -> None:
        """Drop what memory holds for an upload (analyses, picture, probabilities); the store keeps it."""
        self._analyses.drop_image(image_id)
        with self._pic_lock:
            self._pictures.pop(image_id, None)
            for key in [k for k in self._probs if k[1] == image_id]:
                del self._probs[key]

    # -- analyses ---------------------------------------------------------------------------
    def model(self, name: str) -> LoadedModel:
        return self.zoo.get(name)

    def analysis(self, lm: LoadedModel, rec: ImageRecord) -> Analysis:
        """Prediction + every layer's activation for one (model, image), kept in a bounded LRU."""
        key = (lm.name, rec.id)
        hit = self._analyses.get(key)
        if hit is not None:
            return hit
        result = analyze(lm, self.picture(rec))
        self._analyses.put(key, result)
        return result

    def _input(self, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
        return lm.spec.preprocess.tensor(self.picture(rec))

    async def predictions(self, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
        """Class probabilities; concurrent requests share batched forward passes (no activations kept)."""
        key = (lm.name, rec.id)
        full = self._analyses.get(key)
        if full is not None:
            return full.probabilities
        with self._pic_lock:
            hit = self._probs.get(key)
        if hit is not None:
            return hit
        x = await run_in_threadpool(self._input, lm, rec)
        probs = await self.predict_batcher.run(f"{lm.name}:probs", lambda b: predict_batch(lm, b), x)
        assert isinstance(probs, torch.Tensor)
        with self._pic_lock:
            self._probs[key] = probs
            while len(self._probs) > 4096:
                self._probs.popitem(last=False)
        return probs

    async def analysis_async(self, lm: LoadedModel, rec: ImageRecord) -> Analysis:
        """:meth:`analysis` for the event loop: batched with concurrent requests, kept in the LRU."""
        key = (lm.name, rec.id)
        hit = self._analyses.get(key)
        if hit is not None:
            return hit
        x = await run_in_threadpool(self._input, lm, rec)
        result = await self.analysis_batcher.run(f"{lm.name}:all", lambda b: analyze_batch(lm, b), x)
        assert isinstance(result, Analysis)
        self._analyses.put(key, result)
        return result

    async def close(self) -> None:
        await self.predict_batcher.close()
        await self.analysis_batcher.close()

    def network_input(self, lm: LoadedModel, rec: ImageRecord) -> Image.Image:
        """The picture as the network sees it (resized and cropped)."""
        return lm.spec.preprocess.image(self.picture(rec))

    def activation(self, lm: LoadedModel, rec: ImageRecord, layer: str) -> torch.Tensor:
        lm.layer(layer)  # validates the name
        return self.analysis(lm, rec).activations[layer]

    def _act_png_key(self, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int | None) -> str:
        info = lm.layer(layer)
        if channel is not None:
            check_channel(channel, info.channels)
        return f"act-png:v1:{lm.name}:{lm.weights_sha256[:16]}:{rec.sha256}:{layer}:{channel}"

    def cached_activation_png(self, lm: LoadedModel, rec: ImageRecord, layer: str,
                              channel: int | None = None) -> bytes | None:
        """The layer's PNG if the store has it (no forward pass needed), else None."""
        return self.store.cache_get(self._act_png_key(lm, rec, layer, channel))

    def activation_png(self, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int | None = None,
                       analysis: Analysis | None = None) -> bytes:
        """The layer's grid (or one channel enlarged) as PNG, cached in the store."""
        key = self._act_png_key(lm, rec, layer, channel)
        data = self.store.cache_get(key)
        if data is None:
            act = (analysis or self.analysis(lm, rec)).activations[layer]
            if channel is not None:
                img = imaging.channel_image(act[channel]) if act.dim() == 3 else imaging.vector_image(act[channel:channel + 1])
            elif act.dim() == 3:
                img = imaging.activation_grid(act)
            else:
                img = imaging.vector_image(act)
            data = imaging.png_bytes(img)
            self.store.cache_put(key, data, image_id=rec.id)
        return data

    def filters(self, lm: LoadedModel, layer: str | None) -> torch.Tensor:
        """Weights (K, C, kh, kw) of a conv layer (default: the first one)."""
        name = layer or lm.first_conv
        lm.layer(name)
        modules = dict(lm.module.named_modules())
        mod = modules[name]
        if not isinstance(mod, torch.nn.Conv2d):
            convs = [li.name for li in lm.layers if isinstance(modules[li.name], torch.nn.Conv2d)]
            raise BadParameterError(f"layer {name!r} is not a convolution; filters exist for: {', '.join(convs)}")
        return mod.weight.detach()

    def filters_png(self, lm: LoadedModel, layer: str | None, view: str) -> bytes:
        if view not in ("rgb", "channels"):
            raise BadParameterError("view must be 'rgb' (colour patches) or 'channels' (one tile per input channel)")
        w = self.filters(lm, layer)
        return imaging.png_bytes(imaging.filter_grid(w, view=view))


def check_channel(channel: int, channels: int) -> None:
    if not 0 <= channel < channels:
        raise BadParameterError(f"channel {channel} is out of range: this layer has channels 0 to {channels - 1}")


def npy_bytes(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, t.detach().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


def _looks_like_id(s: str) -> bool:
    return len(s) == 16 and all(c in "0123456789abcdef" for c in s)


def _safe_filename(name: str) -> str:
    """Keep only the last path component, printable and short (it is only ever displayed, escaped)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:200] or "upload"

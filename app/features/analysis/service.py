"""Engine: the glue between the store, the zoo and the computation core that every feature's routes share.

It ingests uploads, runs (batched) predictions and analyses, keeps recent results in bounded memory
(:mod:`app.store.cache`) and makes the PNGs of activations and filters (drawn by :mod:`.draw`). Routes
call its methods and only turn the results into JSON, PNG, .npy or HTML.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from app.config import Settings
from app.core import imaging
from app.core.attribution import AttributionMap
from app.core.decode import DecodedImage, decode_image, limit_side
from app.core.errors import NotFoundError
from app.core.inference import Analysis, Overview, analyze, analyze_batch, layer_batch, overview_batch, overview_of, predict_batch
from app.core.snapshots import SnapshotZoo
from app.core.zoo import LoadedModel, Zoo
from app.errors import BadParameterError
from app.features.analysis import draw
from app.features.units import check_channel
from app.runtime.batching import MicroBatcher
from app.runtime.blocking import run_blocking
from app.runtime.decoder import DecoderPool
from app.runtime.gate import Gate
from app.runtime.gcwatch import GcWatch
from app.store.cache import LRUCache
from app.store.database import ImageGone, ImageRecord, Store


class UnknownImageError(NotFoundError):
    """An image id that the store does not hold."""

    kind = "image"

    def __init__(self, image_id: str) -> None:
        super().__init__(image_id, hint="upload one with POST /api/images (GET /api/images lists the stored ones)")


T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    record: ImageRecord
    created: bool


class Engine:
    """Everything the routes need: uploads, analyses, images of activations and filters."""

    def __init__(self, settings: Settings, zoo: Zoo, store: Store, decoder: DecoderPool | None = None) -> None:
        self.settings = settings
        self.decoder = decoder  # worker processes with a hard ceiling; None: decode here (header checks only)
        self.zoo: SnapshotZoo = SnapshotZoo.wrap(zoo, settings.models_dir)  # also serves training snapshots (lenet@epoch-003)
        self.store = store
        self.gc_watch: GcWatch | None = None  # set while the app serves (app.main)
        self.gate = Gate(settings.inference_concurrency, settings.inference_wait_s, threads=settings.torch_threads)
        # Uploads (decode, sanitise, fsync'ed write) have their own slots: a disk flush must not
        # hold a slot that a forward pass could use.
        self.upload_gate = Gate(settings.upload_concurrency, settings.inference_wait_s)
        # Predictions batch widely (a CPU forward is ~1.9x cheaper per image at 32 than alone); full
        # analyses keep every activation, so their batches are as large as analysis_batch_mb allows.
        self.predict_batcher = MicroBatcher(self.gate, max_batch=32, threads=settings.torch_threads)
        self.analysis_batcher = MicroBatcher(self.gate, max_batch=16, threads=settings.torch_threads)
        # Results by (model, image, ...), the newest always kept (one analysis may be over the budget).
        mb = 1024 * 1024
        self._analyses: LRUCache[tuple[str, str], Analysis] = LRUCache(max_bytes=settings.analysis_cache_mb * mb,
                                                                       keep_newest=True)  # activations are large
        self._overviews: LRUCache[tuple[str, str], Overview] = LRUCache(max_bytes=settings.overview_cache_mb * mb,
                                                                        keep_newest=True)
        # attribution maps by (model, image, method, settings...): a page asks for a map's numbers, then its picture
        self.attributions: LRUCache[tuple[object, ...], AttributionMap] = LRUCache(max_bytes=16 * mb, keep_newest=True)
        # What memory holds of a photo itself, under one lock: its picture (up to 3 MB each), its
        # probabilities by model, and its preprocessed network inputs (a few KB for a 32x32 model: a
        # later forward pass needs no PNG decode; the default model's is made at upload).
        self._pic_lock = threading.RLock()
        self._pictures: LRUCache[str, Image.Image] = LRUCache(max_items=16, lock=self._pic_lock)
        self._probs: LRUCache[tuple[str, str], torch.Tensor] = LRUCache(max_items=4096, lock=self._pic_lock)
        self._inputs: LRUCache[tuple[str, str], torch.Tensor] = LRUCache(max_bytes=settings.input_cache_mb * mb,
                                                                         lock=self._pic_lock)
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="convscope-checksum")

    # -- uploads ----------------------------------------------------------------------------
    def ingest(self, data: bytes, filename: str) -> Upload:
        """Validate, sanitise (upright RGB, no metadata) and store an upload, once per content."""
        sha = hashlib.sha256(data).hexdigest()
        existing = self.store.get_image_by_sha(sha)
        if existing is not None:
            return Upload(existing, False)
        s = self.settings
        dec = self.decode(data, max_pixels=s.max_pixels, max_side=s.max_side, target_side=s.max_stored_side)
        img = dec.image
        rec, created = self.store.put_image(sha256=sha, png=imaging.png_bytes(img, s.stored_png_level), width=img.width,
                                            height=img.height, original_size=dec.original_size, fmt=dec.format,
                                            filename=_safe_filename(filename))
        # An upload is analysed right away: keep the picture (PNG is lossless: the same pixels).
        self._pictures.put(rec.id, img)
        default = self.zoo.models.get(s.default_model)
        if default is not None:
            self._input(default, rec)
        return Upload(rec, created)

    def decode(self, data: bytes, *, max_pixels: int, max_side: int, target_side: int) -> DecodedImage:
        """Untrusted picture bytes -> upright RGB at most ``target_side`` a side, within the decode budget
        (estimated from the header first), in a decoder process when the app has them."""
        s = self.settings
        limits = {"max_pixels": max_pixels, "max_side": max_side, "target_side": target_side,
                  "memory_bytes": s.decode_memory_mb * 1024 * 1024, "max_scans": s.max_jpeg_scans,
                  "max_python_pixels": s.max_rle_pixels}
        if self.decoder is not None:
            return self.decoder.decode(data, **limits)
        dec = decode_image(data, **limits)  # type: ignore[arg-type]
        return DecodedImage(limit_side(dec.image, target_side), dec.format, dec.original_size, dec.frames)

    def image(self, image_id: str) -> ImageRecord:
        rec = self.store.get_image(image_id) if _looks_like_id(image_id) else None
        if rec is None:
            raise UnknownImageError(image_id)
        return rec

    def picture(self, rec: ImageRecord) -> Image.Image:
        """The stored upright RGB picture of an upload."""
        pic = self._pictures.get(rec.id)
        if pic is not None:
            return pic
        try:
            png = self.store.image_png(rec, verify=False)
        except ImageGone:
            raise UnknownImageError(rec.id) from None
        # The checksum (0.6 ms for a 640x480 photo) runs beside the decoding (both release the GIL).
        check = None
        if len(png) > 256 * 1024:
            check = self._checker.submit(self.store.verify_image, rec, png)
        else:
            self.store.verify_image(rec, png)
        try:
            im = Image.open(io.BytesIO(png))
            im.load()
            pic = im if im.mode == "RGB" else im.convert("RGB")  # stored uploads are RGB: no copy
        finally:
            if check is not None:
                check.result()  # a damaged file raises here (also when its decoding failed)
        self._pictures.put(rec.id, pic)
        return pic

    def delete(self, image_id: str) -> bool:
        self.forget(image_id)
        return self.store.delete_image(image_id)

    def forget(self, image_id: str) -> None:
        """Drop what memory holds for an upload (analyses, picture, probabilities); the store keeps it."""
        self._analyses.drop_image(image_id)
        self._overviews.drop_image(image_id)
        self.attributions.drop_image(image_id)
        with self._pic_lock:
            self._pictures.pop(image_id)
            self._inputs.drop_image(image_id)
            self._probs.drop_image(image_id)

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

    async def _input_async(self, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
        """:meth:`_input` for the event loop: a kept input without a thread hand-off."""
        x = self._inputs.get((lm.name, rec.id))
        return x if x is not None else await run_blocking(self._input, lm, rec)

    def _input(self, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
        """The preprocessed (1, 3, H, W) input of ``lm`` for this photo, kept within input_cache_mb."""
        key = (lm.name, rec.id)
        x = self._inputs.get(key)
        if x is None:
            x = lm.spec.preprocess.tensor(self.picture(rec))
            self._inputs.put(key, x)
        return x

    async def predictions(self, lm: LoadedModel, rec: ImageRecord) -> torch.Tensor:
        """Class probabilities; concurrent requests share batched forward passes (no activations kept)."""
        key = (lm.name, rec.id)
        full = self._analyses.get(key)
        if full is not None:
            return full.probabilities
        hit = self._probs.get(key)
        if hit is not None:
            return hit
        x = await self._input_async(lm, rec)
        probs = await self.predict_batcher.run(f"{lm.name}:probs", lambda b: predict_batch(lm, b), x)
        assert isinstance(probs, torch.Tensor)
        self._probs.put(key, probs)
        return probs

    async def analysis_async(self, lm: LoadedModel, rec: ImageRecord) -> Analysis:
        """:meth:`analysis` for the event loop: batched with concurrent requests, kept in the LRU."""
        key = (lm.name, rec.id)
        hit = self._analyses.get(key)
        if hit is not None:
            return hit
        x = await self._input_async(lm, rec)
        result = await self.analysis_batcher.run(f"{lm.name}:all", lambda b: analyze_batch(lm, b), x,
                                                 max_batch=self.analysis_batch_size(lm))
        assert isinstance(result, Analysis)
        self._analyses.put(key, result)
        return result

    async def overview_then(self, lm: LoadedModel, rec: ImageRecord,
                            then: Callable[[Overview], T]) -> tuple[Overview, T]:
        """Probabilities + every layer's per-channel stats (from a kept analysis, else from a batched
        pass that keeps no layer's output; kept within overview_cache_mb), and ``then(overview)``
        computed off the event loop in the thread that made the overview (the JSON of a large
        model's stats takes milliseconds: one hand-off less)."""
        key = (lm.name, rec.id)
        hit = self._overviews.get(key)
        if hit is not None:
            return hit, await run_blocking(then, hit)
        full = self._analyses.get(key)
        if full is not None:
            def derive() -> tuple[Overview, T]:
                made = overview_of(lm, full)
                return made, then(made)

            ov, out = await run_blocking(derive)
        else:
            # the input, when no kept one: made in the thread that runs the pass (one hand-off in all)
            x = self._inputs.get(key)
            ov, out = await self.analysis_batcher.run(  # type: ignore[misc]
                f"{lm.name}:overview", lambda b: overview_batch(lm, b),
                x if x is not None else functools.partial(self._input, lm, rec), then=then)
        assert isinstance(ov, Overview)
        self._overviews.put(key, ov)
        self._probs.put(key, ov.probabilities)
        return ov, out

    async def layer_activation_async(self, lm: LoadedModel, rec: ImageRecord, layer: str) -> torch.Tensor:
        """One layer's activation (C, H, W) or (F,): from a kept analysis, else from a batched pass that
        stops at that layer (the rest of the network is not computed and nothing else is kept)."""
        info = lm.layer(layer)  # validates the name
        hit = self._analyses.get((lm.name, rec.id))
        if hit is not None:
            return hit.activations[layer]
        if layer in lm.reused_layers:  # a module run twice: the full pass keeps its last output
            return (await self.analysis_async(lm, rec)).activations[layer]
        x = await self._input_async(lm, rec)
        act = await self.analysis_batcher.run(f"{lm.name}:until:{layer}", lambda b: layer_batch(lm, b, layer), x,
                                              max_batch=self._batch_within_budget(4 * math.prod(info.output_shape)))
        assert isinstance(act, torch.Tensor)
        return act

    def stats(self) -> dict[str, object]:
        """Counters for operators (``GET /api/stats``): how well requests batch, refusals, cache fill."""
        def batcher(b: MicroBatcher) -> dict[str, object]:
            return {"batches": b.batches, "items": b.items, "mean_batch": round(b.items / b.batches, 2) if b.batches else None}

        with self._pic_lock:
            pictures, probs, inputs = len(self._pictures), len(self._probs), len(self._inputs)
        return {"predictions": batcher(self.predict_batcher), "analyses": batcher(self.analysis_batcher),
                "overload_refusals": self.gate.rejected + self.upload_gate.rejected,
                "analyses_kept": self._analyses.count, "pictures_kept": pictures, "probabilities_kept": probs,
                "inputs_kept": inputs, "overviews_kept": self._overviews.count,
                "attributions_kept": self.attributions.count,
                "decoders_replaced": self.decoder.killed if self.decoder is not None else 0,
                "disk": self.store.disk_usage(),
                # the garbage collector's pauses while serving (app.runtime.gcwatch), objects frozen at start-up
                "gc": self.gc_watch.snapshot() if self.gc_watch is not None else None}

    def analysis_batch_size(self, lm: LoadedModel) -> int:
        """How many photos one batched full analysis of ``lm`` takes (activations within analysis_batch_mb)."""
        return self._batch_within_budget(lm.activation_bytes)

    def _batch_within_budget(self, bytes_per_image: int) -> int:
        """Photos per batch whose kept outputs fit in analysis_batch_mb (1 to the batcher's 16)."""
        budget = self.settings.analysis_batch_mb * 1024 * 1024
        return max(1, min(self.analysis_batcher.max_batch, budget // max(1, bytes_per_image)))

    def pick(self, name: str | None) -> LoadedModel:
        """The named model, or the default one (the setting, else the first served) when no name is given."""
        if name is None:
            default = self.settings.default_model
            name = default if default in self.zoo else (self.zoo.names() or [default])[0]
        return self.model(name)

    async def close(self) -> None:
        await self.predict_batcher.close()
        await self.analysis_batcher.close()
        self._checker.shutdown(wait=False)

    def network_input(self, lm: LoadedModel, rec: ImageRecord) -> Image.Image:
        """The picture as the network sees it (resized and cropped)."""
        return lm.spec.preprocess.image(self.picture(rec))

    def activation(self, lm: LoadedModel, rec: ImageRecord, layer: str) -> torch.Tensor:
        lm.layer(layer)  # validates the name
        return self.analysis(lm, rec).activations[layer]

    def _act_png_key(self, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int | None, scale: str) -> str:
        info = lm.layer(layer)
        if channel is not None:
            check_channel(channel, info.channels)
        suffix = "" if scale == "channel" else f":{scale}"
        return f"act-png:v1:{lm.name}:{lm.weights_sha256[:16]}:{rec.sha256}:{layer}:{channel}{suffix}"

    def cached_activation_png(self, lm: LoadedModel, rec: ImageRecord, layer: str,
                              channel: int | None = None, scale: str = "channel") -> bytes | None:
        """The layer's PNG if the store has it (no forward pass needed), else None."""
        return self.store.cache_get(self._act_png_key(lm, rec, layer, channel, scale))

    def activation_png(self, lm: LoadedModel, rec: ImageRecord, layer: str, channel: int | None = None,
                       analysis: Analysis | torch.Tensor | None = None, scale: str = "channel",
                       network: tuple[float, float] | None = None) -> bytes:
        """The layer's grid (or one channel enlarged) as PNG on a colour ``scale``, cached in the store.

        ``analysis`` is a kept analysis or the layer's activation itself (else one is computed); ``network``
        is the photo's range over the whole network (the ``global`` scale)."""
        key = self._act_png_key(lm, rec, layer, channel, scale)
        data = self.store.cache_get(key)
        if data is None:
            if isinstance(analysis, torch.Tensor):
                act = analysis
            else:
                act = (analysis or self.analysis(lm, rec)).activations[layer]
            data = draw.activation_png(act, channel, scale, network)
            self.store.cache_put(key, data, image_id=rec.id, durable=False)  # a PNG is quick to redraw
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
        return draw.filters_png(self.filters(lm, layer), view)


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

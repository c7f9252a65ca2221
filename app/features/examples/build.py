"""Building an index: streams a data set through a model and keeps the top-k of every channel.

A build streams the data set through a DataLoader (decoding in worker processes), feeds batches to
:class:`app.core.examples.Accumulator` and every ``checkpoint_every`` seconds writes the running
top-k atomically to ``<data_dir>/examples/checkpoints/``. Batches always start at multiples of the
batch size, so a run that is killed and resumed processes exactly the same batches as one that
is not, and (the merge being associative, ties broken by data set index) ends with a bit-identical
index. A gallery index is extended with the new uploads (``base``) instead of being rebuilt.
Builds on Ray (:mod:`app.features.examples.distributed`) share the checkpoint and the end
(:func:`read_checkpoint`, :func:`write_checkpoint`, :func:`finish`) with this one.

Used by ``convscope index`` (:mod:`app.features.examples.cli`) and by the server's index jobs
(:class:`app.features.examples.service.ExamplesService`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from app.core.data import ImageDataset
from app.core.examples import Accumulator, ExamplesIndex, IndexPart, finalize
from app.core.receptive import receptive_fields
from app.core.zoo import LoadedModel, UnknownModelError, discover, load_model
from app.features.examples.index_store import IndexStore, Manifest, index_key
from app.features.examples.sources import GalleryDataset, IndexBuildError, Source, _Decoded, collate_batch, normalize
from app.jobs import JobCancelled
from app.store.database import atomic_write

log = logging.getLogger("convscope.indexing")

DEFAULT_K = 9


class BuildCancelled(IndexBuildError, JobCancelled):
    """The build's job was cancelled (the job ends 'cancelled')."""


@dataclass
class Progress:
    done: int
    total: int
    started: float
    resumed_from: int = 0

    @property
    def rate(self) -> float:
        dt = time.time() - self.started
        return (self.done - self.resumed_from) / dt if dt > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        r = self.rate
        return (self.total - self.done) / r if r > 0 else None


def load_one_model(name: str, settings: Any) -> LoadedModel:
    """Load only the named model (the CLI and a Ray build's actors do not need the whole zoo).

    ``settings``: anything with ``models_dir`` and ``torchvision_models`` (:class:`app.config.Settings`)."""
    specs = discover(settings.models_dir, settings.torchvision_models, effnet=name == "efficientnet-lite0")
    for s in specs:
        if s.name == name:
            return load_model(s)
    raise UnknownModelError(name, [s.name for s in specs] + ([] if name == "efficientnet-lite0"
                                                             else ["efficientnet-lite0"]))


def auto_batch_size(lm: LoadedModel) -> int:
    """256 small (CIFAR-sized) inputs a batch; 16 at 224x224 (activation memory grows with the area)."""
    side = lm.spec.preprocess.crop
    return max(16, min(256, 256 * 32 * 32 // (side * side)))


def index_layers(lm: LoadedModel) -> list[str]:
    return [li.name for li in lm.layers if len(li.output_shape) in (1, 3)]


def _checkpoint_meta(key: str, k: int, batch_size: int, layers: Sequence[str]) -> dict[str, Any]:
    return {"key": key, "k": k, "batch_size": batch_size,
            "layers": hashlib.sha256("\n".join(layers).encode()).hexdigest()}


def read_checkpoint(ck_path: Path, ck_meta: dict[str, Any]) -> IndexPart | None:
    """The part saved at ``ck_path`` when this very build wrote it (same key, k, batch size, layers), else None."""
    if not ck_path.is_file():
        return None
    try:
        part, meta, _ = IndexPart.from_npz(ck_path.read_bytes())
    except (ValueError, KeyError, OSError) as e:
        log.warning("checkpoint %s unreadable (%s): starting over", ck_path, e)
        return None
    if meta.get("check") != ck_meta:
        log.warning("checkpoint %s was written by another build: starting over", ck_path)
        return None
    return part


def write_checkpoint(ck_path: Path, part: IndexPart, ck_meta: dict[str, Any]) -> None:
    atomic_write(ck_path, part.to_npz({"check": ck_meta}))


def build(lm: LoadedModel, source: Source, ds: ImageDataset | GalleryDataset, istore: IndexStore, *,
          k: int = DEFAULT_K, batch_size: int | None = None, workers: int = 0, checkpoint_every: float = 30.0,
          resume: bool = True, progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, throttle_s: float | Callable[[], float] = 0.0,
          base: ExamplesIndex | None = None,
          mp_context: str | None = None) -> tuple[ExamplesIndex, Manifest]:
    """Build (or extend ``base`` with the images after its last one) and save an index.

    ``checkpoint_every``: seconds between checkpoints (0: after every batch; negative: never).
    ``throttle_s``: pause after each batch (seconds, or a function read after every batch), to leave CPU
    to other work.
    """
    key = index_key(lm.name, lm.weights_sha256, source)
    batch_size = batch_size or auto_batch_size(lm)
    pre = lm.spec.preprocess
    layers = index_layers(lm)
    module = lm.private_copy()  # hooks go on a private copy: serving continues on the original
    acc = Accumulator(module, layers, k)
    n = len(ds)
    start = 0
    t0 = time.time()
    ck_path = istore.checkpoint_path(key)
    ck_meta = _checkpoint_meta(key, k, batch_size, layers)
    if base is not None:
        acc.load(base.part)
        start = base.part.count
        if base.part.covered not in ([], [(0, start)]):
            raise IndexBuildError("the base index does not cover a prefix of the data set")
    elif resume and (part := read_checkpoint(ck_path, ck_meta)) is not None:
        if part.covered in ([], [(0, part.count)]):
            acc.load(part)
            start = part.count
        else:  # a build on Ray maps shards in any order: resume it with --engine ray
            log.warning("checkpoint %s covers scattered images (a build on Ray's): starting over", ck_path)
    prog = Progress(start, n, time.time(), resumed_from=start)
    if progress:
        progress(prog)
    if start < n:
        # Workers decode; a gallery is read through the engine (same process only).
        nw = workers if isinstance(ds, ImageDataset) else 0
        loader = torch.utils.data.DataLoader(
            _Decoded(ds, pre, start), batch_size=batch_size, shuffle=False, num_workers=nw, collate_fn=collate_batch,
            multiprocessing_context=mp_context if nw else None, persistent_workers=False)
        last_ck = time.time()
        for u8, index, label in loader:
            if should_stop and should_stop():
                raise BuildCancelled("the build was cancelled")
            acc.add(normalize(u8, pre), index, label)
            prog.done = acc.count
            if progress:
                progress(prog)
            if checkpoint_every >= 0 and prog.done < n and time.time() - last_ck >= checkpoint_every:
                write_checkpoint(ck_path, acc.part, ck_meta)
                last_ck = time.time()
            pause = throttle_s() if callable(throttle_s) else throttle_s
            if pause > 0:
                time.sleep(pause)
    return finish(lm, source, ds, istore, acc.part, module=module, layers=layers, k=k, started=t0)


def finish(lm: LoadedModel, source: Source, ds: ImageDataset | GalleryDataset, istore: IndexStore, part: IndexPart, *,
           module: torch.nn.Module, layers: Sequence[str], k: int, started: float) -> tuple[ExamplesIndex, Manifest]:
    """The end of every build: receptive fields (on ``module``, a private copy of the model), :func:`finalize`,
    the index and its manifest saved, the checkpoint removed."""
    pre = lm.spec.preprocess
    n = len(ds)
    key = index_key(lm.name, lm.weights_sha256, source)
    fields = receptive_fields(module, pre.input_size)
    upscaled = n > 0 and min(ds[0][0].size) < pre.crop  # e.g. CIFAR-10 through an ImageNet model
    meta: dict[str, Any] = {"upscaled": upscaled,
        "model": lm.name, "weights_sha256": lm.weights_sha256, "source": asdict(source),
        "classes": list(ds.classes), "categories": list(lm.spec.categories),
        "input_size": list(pre.input_size), "k": k, "created": time.time(),
        "layers": {li.name: list(li.output_shape) for li in lm.layers if li.name in set(layers)},
    }
    ref_of = ds.ref if isinstance(ds, GalleryDataset) else (lambda i: ds.samples[i].ref)  # type: ignore[union-attr]
    index = finalize(part, fields, meta, ref_of)
    seconds = time.time() - started
    index.meta["seconds"] = seconds
    man = Manifest(key=key, model=lm.name, weights_sha256=lm.weights_sha256, source=asdict(source), k=k,
                   count=part.count, layers=len(layers), created=time.time(), seconds=seconds,
                   gallery_ids=ds.ids if isinstance(ds, GalleryDataset) else [], upscaled=upscaled)
    istore.save(index, man)
    istore.checkpoint_path(key).unlink(missing_ok=True)
    return index, man

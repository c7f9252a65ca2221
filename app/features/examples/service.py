"""ExamplesService: what the examples routes use (finding indexes, starting builds as jobs, crops,
receptive-field sizes), and the errors it answers with.

The web server runs builds in one background lane of the job queue (one build at a time); requests
never wait for one. A gallery index is refreshed in the background when photos are uploaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from app.core import imaging
from app.core.data import CIFAR10_ALIAS, ImageDataset
from app.core.examples import Example, ExamplesIndex
from app.core.receptive import LayerField, receptive_fields
from app.core.zoo import LoadedModel
from app.errors import BadParameterError
from app.features.examples.build import DEFAULT_K, Progress, build, index_layers, load_one_model  # noqa: F401 (moved)
from app.features.examples.distributed import build_ray
from app.features.examples.draw import render_crop
from app.features.examples.errors import (  # noqa: F401 (the routes import them from here)
    NOTHING_TO_INDEX,
    BusyError,
    IndexBuildingError,
    IndexMissingError,
    NoDatasetError,
    describe_missing,
)
from app.features.examples.index_store import IndexStore, Manifest, index_key
from app.features.examples.sources import GALLERY, GalleryDataset, IndexBuildError, open_source
from app.features.units import check_channel
from app.jobs import LOW_PRIORITY, Job, JobQueue

if TYPE_CHECKING:
    from app.features.analysis.service import Engine

log = logging.getLogger("convscope.indexing")


# --------------------------------------------------------------------------- helpers


def check_unit(lm: LoadedModel, layer: str, channel: int) -> None:
    """422 ``bad_parameter`` for a channel the layer does not have (the message gives the valid range), as on
    every route that takes a channel."""
    info = lm.layer(layer)
    if len(info.output_shape) not in (1, 3):
        raise BadParameterError(f"layer {layer!r} has output {info.output_shape}; examples exist for (C, H, W) "
                                "and (F,) layers")
    check_channel(channel, info.output_shape[0], layer, "unit" if len(info.output_shape) == 1 else "channel")


@dataclass(frozen=True)
class DatasetChoice:
    """A data set the web server may index (clients name these, never paths)."""

    name: str
    spec: str
    description: str

    @property
    def file(self) -> str:
        """The data set's file or folder name (pages name it in their own words: messages ``ds.<name>``)."""
        return self.spec.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- the service the routes use


class ExamplesService:
    """What the routes need: finding indexes, starting builds, cutting crops."""

    def __init__(self, engine: Engine, jobs: JobQueue) -> None:
        self.engine = engine
        self.istore = IndexStore(engine.store)
        self.jobs = jobs
        jobs.provide(examples=self, engine=engine)
        self._readers: dict[str, ImageDataset] = {}
        self._start_lock = threading.Lock()
        self.throttle_s = 0.0  # pause after each batch of a build (seconds)
        self.default_path: str | None = engine.settings.dataset_path  # the data set offered as "default"
        self.batch_size: int | None = None  # None: auto_batch_size
        self.low_batch_size = 64  # low-priority builds: short steps between their pauses for requests
        self.checkpoint_every = 30.0
        self._fields: dict[tuple[str, str], dict[str, LayerField | None]] = {}  # receptive fields per model

    # -- builds (jobs of kind "index", one at a time, in their own lane) -------------------------
    def running(self) -> Job | None:
        return self.jobs.running("index")

    def builds(self) -> list[Job]:
        """The index builds this server ran or runs, newest first."""
        return self.jobs.list("index")

    def active_for(self, model: str) -> Job | None:
        """The build of ``model``'s index that runs or waits its turn (the first start queues several)."""
        return next((j for j in reversed(self.builds()) if j.active and j.params["model"] == model), None)

    def start_build(self, lm: LoadedModel, spec: str, split: str = "test", limit: int | None = None, *,
                    k: int = DEFAULT_K, workers: int = 0, lane: str = "index") -> Job:
        """Start a build, or return the running one for the same index; :class:`BusyError` for another.

        ``spec`` is a path (the caller checks that it may be used), ``cifar10`` or ``gallery``. In the
        low-priority lane (the first start's builds) a build queues behind the others instead, runs on
        one thread and pauses while interactive requests run.
        """
        key = f"index:{lm.name}:{lm.weights_sha256}:{spec}:{split}:{limit}"
        shown = spec if spec in (GALLERY, CIFAR10_ALIAS) else spec.replace("\\", "/").rsplit("/", 1)[-1]
        with self._start_lock:
            cur = self.running()
            if cur is not None and cur.key != key and lane != LOW_PRIORITY:
                raise BusyError(cur)
            first = index_layers(lm)[0]
            job = self.jobs.submit("index", key, lane=lane, params={"model": lm.name, "dataset": shown, "split": split,
                                                                    "limit": limit},
                                   args={"model": lm.name, "weights": lm.weights_sha256, "spec": spec, "k": k,
                                         "workers": workers},
                                   result_url=f"/api/models/{lm.name}/layers/{first}/channels/0/examples",
                                   page_url=f"/models/{lm.name}/layers/{first}/examples")
        return job

    def _build(self, job: Job, *, lm: LoadedModel, spec: str, k: int, workers: int) -> None:
        """The work of an index job (in the job queue's index lane)."""
        p = job.params
        job.message = "opening the data set"
        source, ds = open_source(spec, p["split"], p["limit"], engine=self.engine,
                                 cache_dir=Path(self.engine.settings.data_dir) / "datasets")
        base = self._gallery_base(index_key(lm.name, lm.weights_sha256, source), ds) \
            if isinstance(ds, GalleryDataset) else None
        job.total = len(ds)
        if job.total == 0:
            raise IndexBuildError("the data set has no images" if spec != GALLERY
                                  else "the gallery is empty: upload photos first")
        job.message = "indexing"

        def on_progress(pr: Progress) -> None:
            job.progress(pr.done, pr.total)
            job.resumed_from = pr.resumed_from

        low = job.low_priority  # small batches, each after a quiet moment
        batch_size = self.low_batch_size if low else self.batch_size
        stop = (lambda: self.jobs.yield_to_interactive(job, low=True)) if low else (lambda: job.cancel_requested)
        st = self.engine.settings
        if st.index_engine == "ray" and isinstance(ds, ImageDataset) and base is None:  # the gallery stays here
            build_ray(lm, source, ds, self.istore, settings=st, k=k, batch_size=batch_size,
                      checkpoint_every=self.checkpoint_every, progress=on_progress, should_stop=stop,
                      address=st.ray_address, actors=st.ray_actors or None)
        else:
            build(lm, source, ds, self.istore, k=k, batch_size=batch_size, workers=workers,
                  checkpoint_every=self.checkpoint_every, progress=on_progress, should_stop=stop,
                  throttle_s=lambda: self.throttle_s, base=base, mp_context="spawn")
        job.message = "finished"

    def _gallery_base(self, key: str, ds: GalleryDataset) -> ExamplesIndex | None:
        """The existing gallery index when the current gallery only adds photos to it (incremental)."""
        man = self.istore.manifest(key)
        if man is None or man.gallery_ids != ds.ids[:len(man.gallery_ids)]:
            return None
        return self.istore.load(key)

    # -- data sets ------------------------------------------------------------------------------
    def datasets(self) -> list[DatasetChoice]:
        out = []
        path = self.default_path
        if path:
            out.append(DatasetChoice("default", str(path), f"the server's data set {Path(str(path)).name}"))
        out.append(DatasetChoice(GALLERY, GALLERY, "the photos uploaded to this server (refreshed as uploads arrive)"))
        out.append(DatasetChoice(CIFAR10_ALIAS, CIFAR10_ALIAS, "CIFAR-10 through torchvision's download "
                                                               "(needs internet the first time)"))
        return out

    def best_dataset(self) -> str | None:
        """The data set a build names by default: the configured one, else the gallery when it has photos."""
        if self.default_path:
            return "default"
        return GALLERY if self.engine.store.count_images() > 0 else None

    def dataset_spec(self, name: str) -> str:
        for d in self.datasets():
            if d.name == name:
                return d.spec
        raise BadParameterError(f"unknown data set {name!r}; choose one of: "
                                + ", ".join(d.name for d in self.datasets())
                                + ("" if self.default_path else
                                   " ('default' needs the setting CONVSCOPE_DATASET_PATH)"))

    def dataset_name(self, name: str | None) -> str | None:
        """The manifest data set name a request means (``default`` -> the configured file's name)."""
        if name == "default":
            p = self.default_path
            return Path(str(p)).name if p else "default"
        return name

    # -- finding an index -----------------------------------------------------------------------
    def manifests(self, lm: LoadedModel) -> list[Manifest]:
        return self.istore.manifests(lm.name, lm.weights_sha256)

    def find(self, lm: LoadedModel, dataset: str | None = None, split: str | None = None,
             limit: int | None = None) -> Manifest | None:
        """The best matching index: the configured data set first, then whole over limited, test, newest."""
        want = self.dataset_name(dataset)
        default = self.dataset_name("default")
        cands = [m for m in self.manifests(lm)
                 if (want is None or m.dataset == want) and (split is None or m.split == split)
                 and (limit is None or m.limit == limit)]
        if not cands:
            return None
        return min(cands, key=lambda m: (m.dataset != default, m.dataset == GALLERY, m.limit is not None,
                                         m.split != "test", -(m.count), -m.created))

    def lookup(self, lm: LoadedModel, dataset: str | None = None, split: str | None = None,
               limit: int | None = None) -> tuple[ExamplesIndex, Manifest]:
        """The index to serve, or :class:`IndexBuildingError` / :class:`IndexMissingError`."""
        man = self.find(lm, dataset, split, limit)
        idx = self.istore.load(man.key) if man is not None else None
        if man is None or idx is None:
            job = self.active_for(lm.name)
            if job is not None:
                raise IndexBuildingError(job)
            raise IndexMissingError.for_model(lm.name, self.best_dataset())
        if man.source.get("kind") == GALLERY:
            self.refresh_gallery(lm, man)
        return idx, man

    def refresh_gallery(self, lm: LoadedModel, man: Manifest) -> Job | None:
        """Start an update of a gallery index when photos were uploaded (or deleted) since it was built."""
        if self.running() is not None:
            return None
        n = self.engine.store.count_images()
        if n == len(man.gallery_ids):
            latest = self.engine.store.list_images(1)
            if not latest or latest[0].id in man.gallery_ids:
                return None
        try:
            return self.start_build(lm, GALLERY, "", man.limit)
        except BusyError:
            return None

    def notify_upload(self) -> None:
        """Call after a photo was stored: gallery indexes are brought up to date in the background."""
        try:
            self.refresh_galleries()
        except Exception:  # never fail an upload because of an index
            log.exception("gallery index refresh failed")

    def refresh_galleries(self) -> Job | None:
        """After an upload: update the (first stale) gallery index of a served model, if no build runs."""
        for man in self.istore.manifests():
            if man.source.get("kind") != GALLERY or man.model not in self.engine.zoo:
                continue
            lm = self.engine.zoo.get(man.model)
            if lm.weights_sha256 == man.weights_sha256:
                job = self.refresh_gallery(lm, man)
                if job is not None:
                    return job
        return None

    def start(self, lm: LoadedModel, dataset: str | None, split: str, limit: int | None, k: int = DEFAULT_K,
              workers: int = 0) -> Job:
        """Start a build of ``dataset`` (None: :meth:`best_dataset`; :class:`NoDatasetError` when there is none)."""
        dataset = dataset or self.best_dataset()
        if dataset is None:
            raise NoDatasetError(NOTHING_TO_INDEX)
        spec = self.dataset_spec(dataset)
        return self.start_build(lm, spec, "" if spec == GALLERY else split, limit, k=k, workers=workers)

    # -- examples -------------------------------------------------------------------------------
    def examples(self, index: ExamplesIndex, man: Manifest, layer: str, channel: int, mode: str,
                 k: int | None = None) -> list[Example]:
        """The best ``k`` examples, ranked from 0, without the photos deleted since a gallery index was built:
        a deletion is complete when its answer arrives (the index is rebuilt in the background)."""
        exs = index.examples(layer, channel, mode)
        if man.source.get("kind") == GALLERY:
            store = self.engine.store
            exs = [dataclasses.replace(e, rank=i)
                   for i, e in enumerate(e for e in exs if store.get_image(e.ref) is not None)]
        return exs[:k] if k is not None else exs

    # -- crops ----------------------------------------------------------------------------------
    def _picture(self, man: Manifest, ref: str) -> Image.Image:
        src = man.source
        if src.get("kind") == GALLERY:
            rec = self.engine.store.get_image(ref)
            if rec is None:
                raise IndexMissingError(f"photo {ref} was deleted from the gallery; the index is being refreshed")
            return self.engine.picture(rec)
        root = str(src["path"])
        reader = self._readers.get(root)
        if reader is None:
            if not os.path.exists(root):
                raise IndexMissingError(f"the data set of this index is no longer at {root}; rebuild the index")
            reader = ImageDataset(name=str(src["name"]), root=root, split=str(src.get("split") or ""), classes=[],
                                  samples=[])
            self._readers[root] = reader
        return reader.open(ref)

    def crop_png(self, lm: LoadedModel, man: Manifest, index: ExamplesIndex, layer: str, channel: int, mode: str,
                 rank: int) -> bytes:
        """The receptive-field crop (or whole image) of one example as PNG, enlarged (nearest), cached."""
        key = f"ex-crop:v1:{man.key}:{man.created}:{layer}:{channel}:{mode}:{rank}"
        data = self.engine.store.cache_get(key)
        if data is not None:
            return data
        exs = self.examples(index, man, layer, channel, mode, rank + 1)
        if rank >= len(exs):
            raise BadParameterError(f"there is no example {rank}: this channel has {len(exs)} (ranks 0 to "
                                    f"{len(exs) - 1})", extra={"valid_range": [0, len(exs) - 1]})
        ex = exs[rank]
        pic = np.asarray(lm.spec.preprocess.image(self._picture(man, ex.ref)), dtype=np.uint8)
        data = imaging.png_bytes(render_crop(pic, ex.box, ex.off_image))
        self.engine.store.cache_put(key, data)
        return data

    # -- receptive fields -----------------------------------------------------------------------
    def field_size(self, lm: LoadedModel, layer: str) -> tuple[int, int]:
        """Height and width of the layer's receptive field (of a central position), cached per model."""
        key = (lm.name, lm.weights_sha256)
        if key not in self._fields:
            self._fields[key] = receptive_fields(lm.private_copy(), lm.spec.preprocess.input_size)
        lf = self._fields[key].get(layer)
        if lf is None:
            return lm.spec.preprocess.crop, lm.spec.preprocess.crop
        yi, xi = lf.unit(0, (lf.y.n // 2) * lf.x.n + lf.x.n // 2) if lf.spatial else (0, 0)
        x0, y0, x1, y1 = lf.field(yi, xi)
        return y1 - y0, x1 - x0

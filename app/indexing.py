"""Building max-activating-example indexes: data sources, the resumable job, the store, the CLI.

    convscope index --model cifarnet --data ../shared/data/cifar10-jpeg.zip [--split test] [--limit N]

A build streams the data set through a DataLoader (decoding in worker processes), feeds batches to
:class:`app.core.examples.Accumulator` and every ``checkpoint_every`` seconds writes the running
top-k atomically to ``<data_dir>/examples/checkpoints/``. Batches always start at multiples of the
batch size, so a run that is killed and resumed processes exactly the same batches as one that
is not, and (the merge being associative, ties broken by data set index) ends with a bit-identical
index. The finished index goes into the store's cache (atomic: readers see the old index or the
whole new one) under a key made of model name, weights sha256, data set identity, split and limit,
plus a small manifest file that lets the server find it.

Data sources: an ImageFolder directory or zip, ``cifar10`` (torchvision's download, exported as an
ImageFolder once), and ``gallery`` (the photos uploaded to this server). A gallery index is
refreshed by merging the new uploads into it (a full rebuild when photos were deleted).

The web server runs builds in one background thread (one build at a time) through :class:`IndexJobs`;
requests never wait for it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app import compute
from app.core.data import CIFAR10_ALIAS, ImageDataset, open_dataset
from app.core.examples import Accumulator, ExamplesIndex, IndexPart, finalize
from app.core.receptive import receptive_fields
from app.core.zoo import LoadedModel, Preprocess
from app.store import Store, atomic_write

if TYPE_CHECKING:
    from app.services import Engine

log = logging.getLogger("convscope.indexing")

KEY_VERSION = "v1"
GALLERY = "gallery"
DEFAULT_K = 9


class IndexBuildError(RuntimeError):
    """A build that cannot start or failed (bad data set, cancelled ...)."""


class BuildCancelled(IndexBuildError):
    pass


# --------------------------------------------------------------------------- data sources


@dataclass(frozen=True)
class Source:
    """What an index was built from: ``kind`` "folder" (dir or zip, incl. the cifar10 export) or "gallery"."""

    kind: str
    name: str
    path: str
    split: str
    limit: int | None
    identity: str

    def describe(self) -> str:
        lim = f", first {self.limit}" if self.limit else ""
        return f"{self.name} ({self.split}{lim})" if self.kind == "folder" else f"{self.name}{lim}"


def dataset_identity(ds: ImageDataset) -> str:
    """sha256 over the samples (reference, label) and each file's content signature.

    Zip members contribute their CRC-32 and size (content-based, no decoding); directory files
    their size and modification time.
    """
    h = hashlib.sha256()
    h.update(f"{ds.split}\n{len(ds)}\n{','.join(ds.classes)}\n".encode())
    sig: dict[str, str] = {}
    if os.path.isfile(ds.root):
        if ds.samples:
            ds.read_bytes(ds.samples[0].ref)  # opens the data set's own handle (reused for reading, same process)
        zf = ds._zip
        if zf is None:
            with zipfile.ZipFile(ds.root) as zf:
                sig = {i.filename: f"{i.CRC:08x}:{i.file_size}" for i in zf.infolist()}
        else:
            sig = {i.filename: f"{i.CRC:08x}:{i.file_size}" for i in zf.infolist()}
    for s in ds.samples:
        if not sig:
            st = os.stat(Path(ds.root) / s.ref)
            tag = f"{st.st_size}:{st.st_mtime_ns}"
        else:
            tag = sig.get(s.ref, "?")
        h.update(f"{s.ref}\t{s.label}\t{tag}\n".encode())
    return h.hexdigest()


class GalleryDataset:
    """The uploaded photos, oldest first (so that new uploads get new, larger indexes)."""

    def __init__(self, engine: Engine, limit: int | None = None) -> None:
        self.engine = engine
        n = engine.store.count_images()
        recs = list(reversed(engine.store.list_images(max(n, 1))))
        recs.sort(key=lambda r: (r.created, r.id))
        self.records = recs[:limit] if limit else recs
        self.classes: list[str] = []
        self.name = GALLERY

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return self.engine.picture(self.records[i]), -1

    def ref(self, i: int) -> str:
        return self.records[i].id


def open_source(spec: str, split: str = "test", limit: int | None = None, *, engine: Engine | None = None,
                cache_dir: Path | None = None) -> tuple[Source, ImageDataset | GalleryDataset]:
    """Open a data set named by the user: a path, ``cifar10`` or ``gallery``."""
    if spec == GALLERY:
        if engine is None:
            raise IndexBuildError("the gallery can only be indexed by the server (it reads the uploads)")
        g = GalleryDataset(engine, limit)
        ident = hashlib.sha256("\n".join(g.ids).encode()).hexdigest()
        return Source("gallery", GALLERY, "", "", limit, ident), g
    try:
        ds = open_dataset(spec, split, limit=limit, cache_dir=cache_dir)
    except (FileNotFoundError, OSError, zipfile.BadZipFile) as e:
        raise IndexBuildError(str(e)) from e
    name = CIFAR10_ALIAS if spec == CIFAR10_ALIAS else Path(spec).name
    return Source("folder", name, str(Path(ds.root).resolve()), split, limit, dataset_identity(ds)), ds


class _ZipTable:
    """Reads the members of a zip archive by offset: a table built once from the data set's own
    ``ZipFile`` (parsing a 60,000-entry directory costs seconds; reading one member through
    ``zipfile`` about 30 us, this way 5 us). Every read is checked against the member's CRC-32;
    anything unusual returns None and the caller falls back to ``ImageDataset.read_bytes``."""

    def __init__(self, path: str, table: dict[str, tuple[int, int, int, int]]) -> None:
        self.path, self.table = path, table
        self._f: Any = None
        self._pid = -1

    @classmethod
    def of(cls, ds: ImageDataset) -> _ZipTable | None:
        if not (os.path.isfile(ds.root) and ds.samples):
            return None
        ds.read_bytes(ds.samples[0].ref)  # the data set's handle, opened once in this process
        zf = ds._zip
        if zf is None:
            return None
        refs = {s.ref for s in ds.samples}
        return cls(ds.root, {i.filename: (i.header_offset, i.compress_type, i.compress_size, i.CRC)
                             for i in zf.infolist() if i.filename in refs and not i.flag_bits & 0x1})

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_f": None, "_pid": -1}

    def read(self, ref: str) -> bytes | None:
        import struct
        import zlib

        entry = self.table.get(ref)
        if entry is None:
            return None
        off, method, size, crc = entry
        if self._f is None or self._pid != os.getpid():
            self._f, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115 - kept open for the process
        f = self._f
        f.seek(off)
        head = f.read(30)
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            return None
        n, e = struct.unpack("<HH", head[26:30])
        f.seek(off + 30 + n + e)
        data = f.read(size)
        if method == zipfile.ZIP_DEFLATED:
            data = zlib.decompressobj(-15).decompress(data)
        elif method != zipfile.ZIP_STORED:
            return None
        return data if zlib.crc32(data) == crc else None


def _jpeg_decoder_matches(ds: ImageDataset, table: _ZipTable | None, n: int = 32) -> bool:
    """Whether torchvision's JPEG decoder gives exactly Pillow's pixels on the first ``n`` images
    (the served pictures are decoded by Pillow; the index must see the same pixels)."""
    raws = [(table.read(s.ref) if table else None) or ds.read_bytes(s.ref) for s in ds.samples[:n]]
    try:
        got = _Decoded._decode_jpegs(raws)
    except (ImportError, AttributeError):  # a torchvision without image decoders: Pillow it is
        return False
    for raw, hwc in zip(raws, got):
        if raw[:2] != b"\xff\xd8":
            continue
        with Image.open(io.BytesIO(raw)) as im:
            ref = np.asarray(im.convert("RGB"))
        if hwc is None or not np.array_equal(hwc, ref):
            return False
    return True


class _Decoded(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Items ``(uint8 (3,H,W) network input, data set index, label)``; picklable for workers.

    ``__getitems__`` decodes a whole batch into one array (the DataLoader calls it instead of
    ``__getitem__`` once per image), and :func:`collate_batch` passes it through. For a zip of
    JPEGs it reads members by offset and decodes with torchvision (libjpeg-turbo, no per-image
    Python overhead) after checking that this gives Pillow's pixels; everything else goes through
    ``ImageDataset`` and Pillow, exactly like the served pictures.
    """

    def __init__(self, ds: ImageDataset | GalleryDataset, pre: Preprocess, start: int, fast: bool = True) -> None:
        self.ds, self.pre, self.start = ds, pre, start
        self.table = _ZipTable.of(ds) if fast and isinstance(ds, ImageDataset) else None
        self.jpeg = fast and isinstance(ds, ImageDataset) and _jpeg_decoder_matches(ds, self.table)

    def __len__(self) -> int:
        return len(self.ds) - self.start

    def _pixels(self, img: Image.Image) -> np.ndarray:
        p = self.pre
        if img.size == (p.crop, p.crop) and p.resize == p.crop:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)  # what Preprocess.image gives, without copies
        return np.asarray(p.image(img), dtype=np.uint8)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, int]:
        u8, index, label = self.__getitems__([j])
        return u8[0], int(index[0]), int(label[0])

    def __getitems__(self, js: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.pre.crop
        out = np.empty((len(js), c, c, 3), dtype=np.uint8)
        labels = np.empty(len(js), dtype=np.int64)
        raws: list[tuple[int, bytes]] = []
        for k, j in enumerate(js):
            i = self.start + j
            if not isinstance(self.ds, ImageDataset):
                img, labels[k] = self.ds[i]
                out[k] = self._pixels(img)
                continue
            s = self.ds.samples[i]
            labels[k] = s.label
            raws.append((k, (self.table.read(s.ref) if self.table else None) or self.ds.read_bytes(s.ref)))
        decoded = self._decode_jpegs([r for _, r in raws]) if self.jpeg else [None] * len(raws)
        for (k, raw), hwc in zip(raws, decoded):
            out[k] = self._pixels_hwc(hwc) if hwc is not None else self._decode_pil(raw)
        index = torch.tensor([self.start + j for j in js], dtype=torch.int64)
        return torch.from_numpy(out).permute(0, 3, 1, 2), index, torch.from_numpy(labels)

    def _pixels_hwc(self, hwc: np.ndarray) -> np.ndarray:
        p = self.pre
        if hwc.shape[:2] == (p.crop, p.crop) and p.resize == p.crop:
            return hwc
        return self._pixels(Image.fromarray(np.ascontiguousarray(hwc), "RGB"))

    def _decode_pil(self, raw: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(raw)) as im:
            return self._pixels(im.convert("RGB"))

    @staticmethod
    def _decode_jpegs(raws: list[bytes]) -> list[np.ndarray | None]:
        """RGB (H, W, 3) arrays of the 3-channel JPEGs, None for anything else (decoded by Pillow)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        pos = [i for i, r in enumerate(raws) if r[:2] == b"\xff\xd8"]
        out: list[np.ndarray | None] = [None] * len(raws)
        if not pos:
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 deprecates its decoders
            data = [torch.frombuffer(bytearray(raws[i]), dtype=torch.uint8) for i in pos]
            ts: list[torch.Tensor | None]
            try:
                ts = list(decode_jpeg(data, mode=ImageReadMode.UNCHANGED))
            except RuntimeError:  # one bad file: decode them one by one
                ts = []
                for d in data:
                    try:
                        ts.append(decode_jpeg(d, mode=ImageReadMode.UNCHANGED))
                    except RuntimeError:
                        ts.append(None)
        for i, t in zip(pos, ts):
            if t is not None and t.dim() == 3 and t.shape[0] == 3:
                out[i] = t.permute(1, 2, 0).numpy()
        return out


def collate_batch(batch: object) -> object:
    """The batch as :meth:`_Decoded.__getitems__` made it (picklable, for worker processes)."""
    return batch


def normalize(u8: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 (N,3,H,W) -> the normalised float input (same arithmetic as ``Preprocess.to_tensor``)."""
    x = u8.float().div_(255.0)
    return (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- keys, manifests, the store


def index_key(model: str, weights_sha256: str, source: Source) -> str:
    ident = GALLERY if source.kind == "gallery" else source.identity[:16]
    return f"examples:{KEY_VERSION}:{model}:{weights_sha256[:16]}:{ident}:{source.split or '-'}:{source.limit or 'all'}"


def _key_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass
class Manifest:
    """Where a finished index is and what it holds (one small JSON file per index)."""

    key: str
    model: str
    weights_sha256: str
    source: dict[str, Any]
    k: int
    count: int
    layers: int
    created: float
    seconds: float
    gallery_ids: list[str] = field(default_factory=list)
    upscaled: bool = False

    @property
    def dataset(self) -> str:
        return str(self.source["name"])

    @property
    def split(self) -> str:
        return str(self.source.get("split") or "")

    @property
    def limit(self) -> int | None:
        v = self.source.get("limit")
        return int(v) if v else None

    def label(self) -> str:
        s = Source(**self.source)
        return s.describe()


class IndexStore:
    """Finished indexes (store cache + manifests) and checkpoints under ``<data_dir>/examples``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = Path(store.root) / "examples"
        self._cache: OrderedDict[str, ExamplesIndex] = OrderedDict()
        self._lock = threading.Lock()

    def manifest_path(self, key: str) -> Path:
        return self.root / "manifests" / f"{_key_file(key)}.json"

    def checkpoint_path(self, key: str) -> Path:
        return self.root / "checkpoints" / f"{_key_file(key)}.npz"

    def save(self, index: ExamplesIndex, manifest: Manifest) -> None:
        """Index blob first (atomic, checksummed), then its manifest: a reader never sees half of it."""
        self.store.cache_put(manifest.key, index.to_bytes())
        atomic_write(self.manifest_path(manifest.key), json.dumps(asdict(manifest)).encode())
        with self._lock:
            self._cache.pop(manifest.key, None)

    def manifests(self, model: str | None = None, weights_sha256: str | None = None) -> list[Manifest]:
        out = []
        for p in sorted((self.root / "manifests").glob("*.json")):
            try:
                m = Manifest(**json.loads(p.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if (model is None or m.model == model) and (weights_sha256 is None or m.weights_sha256 == weights_sha256):
                out.append(m)
        return sorted(out, key=lambda m: -m.created)

    def manifest(self, key: str) -> Manifest | None:
        try:
            return Manifest(**json.loads(self.manifest_path(key).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def load(self, key: str) -> ExamplesIndex | None:
        """The index (cached in memory, a few at a time), or None when missing or damaged."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        data = self.store.cache_get(key)
        if data is None:
            return None
        try:
            idx = ExamplesIndex.from_bytes(data)
        except (ValueError, KeyError, OSError) as e:
            log.warning("examples index %s is unreadable (%s); rebuild it", key, e)
            return None
        with self._lock:
            self._cache[key] = idx
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        return idx


# --------------------------------------------------------------------------- the build


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


def auto_batch_size(lm: LoadedModel) -> int:
    """256 small (CIFAR-sized) inputs a batch; 16 at 224x224 (activation memory grows with the area)."""
    side = lm.spec.preprocess.crop
    return max(16, min(256, 256 * 32 * 32 // (side * side)))


def _layers_of(lm: LoadedModel) -> list[str]:
    return [li.name for li in lm.layers if len(li.output_shape) in (1, 3)]


def _checkpoint_meta(key: str, k: int, batch_size: int, layers: Sequence[str]) -> dict[str, Any]:
    return {"key": key, "k": k, "batch_size": batch_size,
            "layers": hashlib.sha256("\n".join(layers).encode()).hexdigest()}


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
    layers = _layers_of(lm)
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
    elif resume and ck_path.is_file():
        try:
            part, meta, _ = IndexPart.from_npz(ck_path.read_bytes())
        except (ValueError, KeyError, OSError) as e:
            log.warning("checkpoint %s unreadable (%s): starting over", ck_path, e)
        else:
            if meta.get("check") == ck_meta and part.covered in ([], [(0, part.count)]):
                acc.load(part)
                start = part.count
            else:
                log.warning("checkpoint %s was written by another build: starting over", ck_path)
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
            prog.done = acc.part.count
            if progress:
                progress(prog)
            if checkpoint_every >= 0 and prog.done < n and time.time() - last_ck >= checkpoint_every:
                atomic_write(ck_path, acc.part.to_npz({"check": ck_meta}))
                last_ck = time.time()
            pause = throttle_s() if callable(throttle_s) else throttle_s
            if pause > 0:
                time.sleep(pause)
    fields = receptive_fields(module, pre.input_size)
    upscaled = n > 0 and min(ds[0][0].size) < pre.crop  # e.g. CIFAR-10 through an ImageNet model
    meta: dict[str, Any] = {"upscaled": upscaled,
        "model": lm.name, "weights_sha256": lm.weights_sha256, "source": asdict(source),
        "classes": list(ds.classes), "categories": list(lm.spec.categories),
        "input_size": list(pre.input_size), "k": k, "created": time.time(),
        "layers": {li.name: list(li.output_shape) for li in lm.layers if li.name in set(layers)},
    }
    ref_of = ds.ref if isinstance(ds, GalleryDataset) else (lambda i: ds.samples[i].ref)  # type: ignore[union-attr]
    index = finalize(acc.part, fields, meta, ref_of)
    seconds = time.time() - t0
    index.meta["seconds"] = seconds
    man = Manifest(key=key, model=lm.name, weights_sha256=lm.weights_sha256, source=asdict(source), k=k,
                   count=acc.part.count, layers=len(layers), created=time.time(), seconds=seconds,
                   gallery_ids=ds.ids if isinstance(ds, GalleryDataset) else [], upscaled=upscaled)
    istore.save(index, man)
    ck_path.unlink(missing_ok=True)
    return index, man


# --------------------------------------------------------------------------- background jobs (server)


@dataclass
class Job:
    id: str
    model: str
    dataset: str
    split: str
    limit: int | None
    key: str = ""
    state: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = 0
    resumed_from: int = 0  # images already indexed (checkpoint, or the gallery index being extended)
    rate: float = 0.0
    eta_s: float | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    error: str | None = None
    message: str = ""
    cancel: bool = False

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0


class BusyError(RuntimeError):
    """Another build is running (one at a time)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"a build is already running ({job.model} on {job.dataset}, {job.done}/{job.total} images); "
                         f"follow it at /api/indexes/{job.id}")
        self.job = job


class IndexJobs:
    """At most one build at a time, in a daemon thread; keeps the recent jobs for progress queries."""

    def __init__(self, engine: Engine, istore: IndexStore) -> None:
        self.engine = engine
        self.istore = istore
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.throttle_s = 0.0
        self.batch_size: int | None = None  # None: auto_batch_size
        self.checkpoint_every = 30.0

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs.values() if j.active), None)

    def active_for(self, model: str, dataset: str | None = None) -> Job | None:
        j = self.running()
        if j is not None and j.model == model and (dataset is None or j.dataset == dataset):
            return j
        return None

    def start(self, lm: LoadedModel, dataset: str, split: str = "test", limit: int | None = None, *,
              k: int = DEFAULT_K, workers: int = 0) -> Job:
        """Start a build, or return the running one for the same index; :class:`BusyError` for another.

        ``dataset`` is a path (the caller checks that it may be used), ``cifar10`` or ``gallery``.
        """
        with self._lock:
            cur = next((j for j in self.jobs.values() if j.active), None)
            if cur is not None:
                if (cur.model, cur.dataset, cur.split, cur.limit) == (lm.name, dataset, split, limit):
                    return cur
                raise BusyError(cur)
            job = Job(id=uuid.uuid4().hex[:12], model=lm.name, dataset=dataset, split=split, limit=limit)
            self.jobs[job.id] = job
            while len(self.jobs) > 50:
                self.jobs.popitem(last=False)
        threading.Thread(target=self._run, args=(job, lm, k, workers), name=f"index-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, lm: LoadedModel, k: int, workers: int) -> None:
        try:
            job.state = "running"
            job.message = "opening the data set"
            source, ds = open_source(job.dataset, job.split, job.limit, engine=self.engine,
                                     cache_dir=Path(self.engine.settings.data_dir) / "datasets")
            job.key = index_key(lm.name, lm.weights_sha256, source)
            base = None
            if isinstance(ds, GalleryDataset):
                base = self._gallery_base(job.key, ds)
            job.total = len(ds)
            if job.total == 0:
                raise IndexBuildError("the data set has no images" if job.dataset != GALLERY
                                      else "the gallery is empty: upload photos first")
            job.message = "indexing"

            def on_progress(p: Progress) -> None:
                job.done, job.total, job.rate, job.eta_s = p.done, p.total, p.rate, p.eta_s
                job.resumed_from = p.resumed_from

            # on the lead thread's intra-op threads when it is free, else on this one's (see app.compute)
            compute.lead().run(functools.partial(
                build, lm, source, ds, self.istore, k=k, batch_size=self.batch_size, workers=workers,
                checkpoint_every=self.checkpoint_every, progress=on_progress, should_stop=lambda: job.cancel,
                throttle_s=lambda: self.throttle_s, base=base, mp_context="spawn"))
            job.state, job.message = "done", "finished"
        except BuildCancelled:
            job.state, job.message = "cancelled", "cancelled"
        except Exception as e:  # reported to the client; the server keeps running
            log.exception("index build %s failed", job.id)
            job.state, job.error, job.message = "failed", str(e), "failed"
        finally:
            job.finished = time.time()

    def _gallery_base(self, key: str, ds: GalleryDataset) -> ExamplesIndex | None:
        """The existing gallery index when the current gallery only adds photos to it (incremental)."""
        man = self.istore.manifest(key)
        if man is None or man.gallery_ids != ds.ids[:len(man.gallery_ids)]:
            return None
        return self.istore.load(key)

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None and job.active:
            job.cancel = True
        return job


# --------------------------------------------------------------------------- the CLI


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("index", help="build the max-activating-examples index of a model over a data set",
                       description="For every layer and channel, find the images (and receptive-field crops) "
                                   "that excite it most. Resumes from its checkpoint when interrupted.")
    p.add_argument("--model", required=True, help="served model name (lenet, cifarnet, efficientnet-lite0 ...)")
    p.add_argument("--data", help="ImageFolder directory or zip (<split>/<class>/<img>), or 'cifar10' to "
                                  "download (default: the setting CONVSCOPE_DATASET_PATH)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="index only the first N images (classes taken in turn)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: 256 for 32x32 inputs, 16 at 224x224)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes that decode images")
    p.add_argument("-k", type=int, default=DEFAULT_K, help="examples kept per channel (default 9)")
    p.add_argument("--threads", type=int, help="torch threads (default: the setting torch_threads)")
    p.add_argument("--checkpoint-every", type=float, default=30.0, help="seconds between checkpoints (0: every batch)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--throttle", type=float, default=0.0, help="seconds to pause after each batch (leave CPU to others)")
    p.set_defaults(func=_cmd_index)


def load_one_model(name: str, settings: Any) -> LoadedModel:
    """Load only the named model (the CLI does not need the whole zoo)."""
    from app.core.zoo import UnknownModelError, discover, load_model

    specs = discover(settings.models_dir, settings.torchvision_models, effnet=name == "efficientnet-lite0")
    for s in specs:
        if s.name == name:
            return load_model(s)
    raise UnknownModelError(name, [s.name for s in specs] + ([] if name == "efficientnet-lite0"
                                                             else ["efficientnet-lite0"]))


def _cmd_index(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.config import Settings
    from app.core.zoo import ModelLoadError, UnknownModelError

    settings = Settings()
    data = a.data or settings.dataset_path
    if not data:
        print("no data set: pass --data PATH (or set CONVSCOPE_DATASET_PATH)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads or settings.torch_threads)
    try:
        lm = load_one_model(a.model, settings)
    except (UnknownModelError, ModelLoadError) as e:
        print(str(e), file=sys.stderr)
        return 2
    store = Store(settings.data_dir)
    istore = IndexStore(store)
    try:
        source, ds = open_source(data, a.split, a.limit, cache_dir=Path(settings.data_dir) / "datasets")
    except IndexBuildError as e:
        print(str(e), file=sys.stderr)
        return 2
    upscale = "" if ds[0][0].size[0] >= lm.spec.preprocess.crop else \
        f" (images are upscaled to {lm.spec.preprocess.crop}x{lm.spec.preprocess.crop} by the model's preprocessing)"
    print(f"indexing {lm.name} over {source.describe()}: {len(ds)} images, "
          f"{len(_layers_of(lm))} layers{upscale}", file=sys.stderr)
    bar = tqdm(total=len(ds), unit="img", dynamic_ncols=True, smoothing=0.1, file=sys.stderr)

    def on_progress(p: Progress) -> None:
        if p.resumed_from and bar.n == 0 and p.done == p.resumed_from:
            bar.write(f"resuming from the checkpoint: {p.done} images already done")
        bar.update(p.done - bar.n)

    try:
        index, man = build(lm, source, ds, istore, k=a.k, batch_size=a.batch_size, workers=a.workers,
                           checkpoint_every=a.checkpoint_every, resume=not a.fresh, progress=on_progress,
                           throttle_s=a.throttle)
    finally:
        bar.close()
        store.close()
    print(f"done in {man.seconds:.1f} s: {man.count} images, {man.layers} layers, k={man.k}\n"
          f"stored as {man.key} under {istore.root.parent}", file=sys.stderr)
    return 0


def describe_missing(model: str) -> str:
    """How to build a missing index (CLI and API)."""
    return (f"No examples index for model {model!r} yet. Build one with "
            f"`convscope index --model {model} --data PATH --split test` (PATH: an ImageFolder directory or zip), "
            f"or POST /api/indexes {{\"model\": \"{model}\", \"dataset\": \"default\"}} "
            f"(or start it on the page /indexes).")


# --------------------------------------------------------------------------- the service the routes use


class IndexMissingError(LookupError):
    """No index for the request; the message says how to build one."""


class IndexBuildingError(LookupError):
    """No index yet, but one is being built."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"the examples index of {job.model} is being built: {job.done}/{job.total} images; "
                         f"retry when it is done (progress: GET /api/indexes/{job.id})")
        self.job = job


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


MARK = np.array([225, 29, 72], dtype=np.uint8)  # the colour of "the field runs off the image here"


class ExamplesService:
    """What the routes need: finding indexes, starting builds, cutting crops."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.istore = IndexStore(engine.store)
        self.jobs = IndexJobs(engine, self.istore)
        self._readers: dict[str, ImageDataset] = {}

    # -- data sets ------------------------------------------------------------------------------
    def datasets(self) -> list[DatasetChoice]:
        out = []
        path = self.engine.settings.dataset_path
        if path:
            out.append(DatasetChoice("default", str(path), f"the server's data set {Path(str(path)).name}"))
        out.append(DatasetChoice(GALLERY, GALLERY, "the photos uploaded to this server (refreshed as uploads arrive)"))
        out.append(DatasetChoice(CIFAR10_ALIAS, CIFAR10_ALIAS, "CIFAR-10 through torchvision's download "
                                                               "(needs internet the first time)"))
        return out

    def dataset_spec(self, name: str) -> str:
        from app.services import BadParameterError

        for d in self.datasets():
            if d.name == name:
                return d.spec
        raise BadParameterError(f"unknown data set {name!r}; choose one of: "
                                + ", ".join(d.name for d in self.datasets())
                                + ("" if self.engine.settings.dataset_path else
                                   " ('default' needs the setting CONVSCOPE_DATASET_PATH)"))

    def dataset_name(self, name: str | None) -> str | None:
        """The manifest data set name a request means (``default`` -> the configured file's name)."""
        if name == "default":
            p = self.engine.settings.dataset_path
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
            job = self.jobs.active_for(lm.name)
            if job is not None:
                raise IndexBuildingError(job)
            raise IndexMissingError(describe_missing(lm.name))
        if man.source.get("kind") == GALLERY:
            self.refresh_gallery(lm, man)
        return idx, man

    def refresh_gallery(self, lm: LoadedModel, man: Manifest) -> Job | None:
        """Start an update of a gallery index when photos were uploaded (or deleted) since it was built."""
        if self.jobs.running() is not None:
            return None
        n = self.engine.store.count_images()
        if n == len(man.gallery_ids):
            latest = self.engine.store.list_images(1)
            if not latest or latest[0].id in man.gallery_ids:
                return None
        try:
            return self.jobs.start(lm, GALLERY, "", man.limit)
        except BusyError:
            return None

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

    def start(self, lm: LoadedModel, dataset: str, split: str, limit: int | None, k: int = DEFAULT_K,
              workers: int = 0) -> Job:
        spec = self.dataset_spec(dataset)
        return self.jobs.start(lm, spec, "" if spec == GALLERY else split, limit, k=k, workers=workers)

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
        from app.core import imaging

        key = f"ex-crop:v1:{man.key}:{man.created}:{layer}:{channel}:{mode}:{rank}"
        data = self.engine.store.cache_get(key)
        if data is not None:
            return data
        exs = index.examples(layer, channel, mode, rank + 1)
        if rank >= len(exs):
            raise IndexMissingError(f"there is no example {rank}: this channel has {len(exs)}")
        ex = exs[rank]
        pic = np.asarray(lm.spec.preprocess.image(self._picture(man, ex.ref)), dtype=np.uint8)
        data = imaging.png_bytes(render_crop(pic, ex.box, ex.off_image))
        self.engine.store.cache_put(key, data)
        return data


def render_crop(picture: np.ndarray, box: Sequence[int], off: Sequence[str], target: int = 96) -> Image.Image:
    """Cut ``box`` (x0, y0, x1, y1) from an (H, W, 3) picture, enlarge it (nearest neighbour) towards
    ``target`` pixels and mark with a dashed line each side where the receptive field runs off the image."""
    from app.core import imaging

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


def get_service(app_state: Any, engine: Engine) -> ExamplesService:
    """The app's service (created on first use, one per app)."""
    svc = getattr(app_state, "examples", None)
    if svc is None or svc.engine is not engine:
        with _SERVICE_LOCK:
            svc = getattr(app_state, "examples", None)
            if svc is None or svc.engine is not engine:
                svc = ExamplesService(engine)
                app_state.examples = svc
    return svc


_SERVICE_LOCK = threading.Lock()


def notify_upload(app_state: Any, engine: Engine) -> None:
    """Call after a photo was stored: gallery indexes are brought up to date in the background."""
    try:
        get_service(app_state, engine).refresh_galleries()
    except Exception:  # never fail an upload because of an index
        log.exception("gallery index refresh failed")

"""Data sources an index is built from, and their decoding into network inputs.

A source is an ImageFolder directory or zip, ``cifar10`` (torchvision's download, exported as an
ImageFolder once) or ``gallery`` (the photos uploaded to this server). :func:`open_source` opens one
by the name the user gives and computes its identity (part of the index key). :class:`_Decoded`
turns a data set into batches of uint8 network inputs for a DataLoader (picklable, for worker
processes): zip members are read by offset and JPEGs decoded by torchvision when that gives
exactly Pillow's pixels, everything else goes through Pillow like the served pictures.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from app.core.data import CIFAR10_ALIAS, ImageDataset, open_dataset
from app.core.zoo import Preprocess

if TYPE_CHECKING:
    from app.features.analysis.service import Engine

GALLERY = "gallery"


class IndexBuildError(RuntimeError):
    """A build that cannot start or failed (bad data set, cancelled ...)."""




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
    ``ZipFile`` (the directory of a large archive is parsed once, and a member is read without
    ``zipfile``'s per-read overhead). Every read is checked against the member's CRC-32;
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

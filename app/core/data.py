"""Image data sets: an ImageFolder directory, a zip of one, or torchvision's CIFAR-10 download.

Layout expected (torchvision ``ImageFolder``)::

    <root>/<split>/<class>/<file>.jpg        (directory or zip archive)

A data set is a list of :class:`Sample` references; images are decoded on demand, so nothing is
copied out of the user's archive. Zip handles are opened lazily per process, which keeps the
objects picklable for DataLoader workers.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".ppm", ".tif", ".tiff")
CIFAR10_ALIAS = "cifar10"


@dataclass(frozen=True)
class Sample:
    """One image of a data set: where it is (``ref``, relative to the root) and its class index."""

    index: int
    ref: str
    label: int


@dataclass
class ImageDataset(Sequence[tuple[Image.Image, int]]):
    """A list of image references with labels; ``ds[i]`` decodes image ``i`` as RGB."""

    name: str
    root: str
    split: str
    classes: list[str]
    samples: list[Sample]
    _zip: zipfile.ZipFile | None = field(default=None, repr=False, compare=False)
    _zip_pid: int = field(default=-1, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:  # type: ignore[override]
        s = self.samples[i]
        return self.open(s.ref), s.label

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_zip"] = None
        state["_zip_pid"] = -1
        return state

    @property
    def is_zip(self) -> bool:
        return zipfile.is_zipfile(self.root) if os.path.isfile(self.root) else False

    def read_bytes(self, ref: str) -> bytes:
        """The raw bytes of one image, by its reference."""
        if os.path.isdir(self.root):
            path = (Path(self.root) / ref).resolve()
            if Path(self.root).resolve() not in path.parents:
                raise ValueError(f"reference {ref!r} points outside the data set")
            return path.read_bytes()
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = os.getpid()
        return self._zip.read(ref)

    def open(self, ref: str) -> Image.Image:
        """Decode one image as RGB."""
        with Image.open(io.BytesIO(self.read_bytes(ref))) as im:
            return im.convert("RGB")


def _split_entries(names: list[str], split: str) -> tuple[list[str], list[tuple[str, str]]]:
    prefix = f"{split}/" if split else ""
    entries: list[tuple[str, str]] = []
    for n in names:
        if not n.startswith(prefix) or not n.lower().endswith(IMAGE_EXTENSIONS):
            continue
        parts = n[len(prefix):].split("/")
        if len(parts) != 2:
            continue
        entries.append((parts[0], n))
    classes = sorted({c for c, _ in entries})
    return classes, entries


def open_dataset(path: str | os.PathLike[str], split: str = "test", *, limit: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Open an ImageFolder directory or zip (``<root>/<split>/<class>/<img>``), or ``cifar10``.

    ``cifar10`` uses torchvision's CIFAR-10 download (needs internet once) and exports it as an
    ImageFolder directory under ``cache_dir`` so that every data set is read the same way.
    Samples are sorted by (class, file name), so indexes are stable across runs.
    """
    spath = str(path)
    if spath == CIFAR10_ALIAS:
        spath = str(_export_torchvision_cifar10(Path(cache_dir or Path.home() / ".cache" / "convscope")))
    if os.path.isdir(spath):
        root = Path(spath)
        base = root / split if split else root
        if not base.is_dir():
            raise FileNotFoundError(f"{base} does not exist: expected <root>/{split}/<class>/<image>")
        names = [str(p.relative_to(root)).replace(os.sep, "/") for p in base.rglob("*") if p.is_file()]
    elif os.path.isfile(spath) and zipfile.is_zipfile(spath):
        with zipfile.ZipFile(spath) as zf:
            names = zf.namelist()
    else:
        raise FileNotFoundError(f"{spath} is neither an ImageFolder directory nor a zip archive")
    classes, entries = _split_entries(names, split)
    if not entries:
        raise FileNotFoundError(f"no images under {spath}:{split}/<class>/; expected the ImageFolder layout")
    cidx = {c: i for i, c in enumerate(classes)}
    entries.sort(key=lambda e: (cidx[e[0]], e[1]))
    if limit is not None:
        entries = _balanced_head(entries, cidx, limit)
    samples = [Sample(i, ref, cidx[c]) for i, (c, ref) in enumerate(entries)]
    name = f"{Path(spath).name}:{split}"
    return ImageDataset(name=name, root=spath, split=split, classes=classes, samples=samples)


def _balanced_head(entries: list[tuple[str, str]], cidx: dict[str, int], limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` entries taking classes in turn, so a small limit still covers every class."""
    by_class: dict[str, list[tuple[str, str]]] = {}
    for e in entries:
        by_class.setdefault(e[0], []).append(e)
    out: list[tuple[str, str]] = []
    queues = [iter(by_class[c]) for c in sorted(by_class, key=cidx.__getitem__)]
    while len(out) < limit and queues:
        nxt = []
        for q in queues:
            e = next(q, None)
            if e is not None:
                out.append(e)
                nxt.append(q)
                if len(out) == limit:
                    break
        queues = nxt
    out.sort(key=lambda e: (cidx[e[0]], e[1]))
    return out


def _export_torchvision_cifar10(cache: Path) -> Path:
    """Download CIFAR-10 through torchvision (internet needed once) and write it as PNG ImageFolder."""
    out = cache / "cifar10-imagefolder"
    if (out / ".complete").exists():
        return out
    from torchvision.datasets import CIFAR10  # local import: only users with internet need it

    for split, train in (("train", True), ("test", False)):
        ds = CIFAR10(root=str(cache / "torchvision"), train=train, download=True)
        for i, (img, label) in enumerate(ds):
            d = out / split / ds.classes[label]
            d.mkdir(parents=True, exist_ok=True)
            img.save(d / f"{i:05d}.png")
    (out / ".complete").touch()
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (the archive a model was trained on goes into its card)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _decode_resized(ds: ImageDataset, i: int, size: int) -> np.ndarray:
    img, _ = ds[i]
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_uint8(ds: ImageDataset, size: int, progress: Callable[[Iterator[int]], Iterator[int]] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole (small-image) data set into ``(N,3,size,size)`` uint8 and ``(N,)`` int64 labels."""
    n = len(ds)
    x = np.empty((n, size, size, 3), dtype=np.uint8)
    it: Iterator[int] = iter(range(n))
    if progress is not None:
        it = progress(it)
    for i in it:
        x[i] = _decode_resized(ds, i, size)
    labels = torch.tensor([s.label for s in ds.samples], dtype=torch.int64)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), labels

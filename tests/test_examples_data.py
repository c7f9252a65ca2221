"""The index build's fast decoding path gives exactly the pixels of the served path (Pillow + Preprocess)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.core.data import open_dataset
from app.core.zoo import Preprocess
from app.features.examples.sources import _Decoded, dataset_identity, open_source

CIFAR = Preprocess(resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
BIG = Preprocess(resize=64, crop=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def jpeg_zip(path: Path, n: int = 24) -> Path:
    """A zip (stored and deflated members) of generated JPEG, PNG and greyscale JPEG images."""
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            arr = rng.integers(0, 255, (32, 32 + (i % 3) * 8, 3), dtype=np.uint8)
            img = Image.fromarray(arr)
            buf = io.BytesIO()
            if i % 6 == 5:
                img.convert("L").save(buf, "JPEG", quality=80)
            elif i % 6 == 4:
                img.save(buf, "PNG")
            else:
                img.save(buf, "JPEG", quality=70 + i % 3 * 10, subsampling=i % 3)
            ext = "png" if i % 6 == 4 else "jpg"
            method = zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(f"test/{'ab'[i % 2]}/{i:03d}.{ext}"), buf.getvalue(), compress_type=method)
    return path


def test_fast_decoding_equals_pillow(tmp_path: Path) -> None:
    z = jpeg_zip(tmp_path / "j.zip")
    ds = open_dataset(z, "test")
    for pre in (CIFAR, BIG):
        fast, slow = _Decoded(ds, pre, 0), _Decoded(ds, pre, 0, fast=False)
        assert fast.table is not None and len(fast.table.table) == len(ds)
        js = list(range(len(ds)))
        a, ia, la = fast.__getitems__(js)
        b, _, _ = slow.__getitems__(js)
        ref = torch.stack([torch.from_numpy(np.asarray(pre.image(ds[i][0]), dtype=np.uint8).copy()).permute(2, 0, 1)
                           for i in js])
        assert torch.equal(a, ref) and torch.equal(b, ref)
        assert ia.tolist() == js and la.tolist() == [s.label for s in ds.samples]
        # pickled for a worker process: the table survives, the file handle does not
        import pickle

        again = pickle.loads(pickle.dumps(fast))
        assert torch.equal(again.__getitems__([3, 7])[0], ref[[3, 7]])


def test_identity_changes_with_content(tmp_path: Path) -> None:
    z = jpeg_zip(tmp_path / "j.zip")
    a = dataset_identity(open_dataset(z, "test"))
    assert a == dataset_identity(open_dataset(z, "test"))
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("test/a/999.jpg", zf.read("test/a/000.jpg")[:-10] + b"0123456789")
    b = dataset_identity(open_dataset(z, "test"))
    assert a != b
    src, _ = open_source(str(z), "test", 4)
    assert src.limit == 4 and src.name == "j.zip" and src.identity != b

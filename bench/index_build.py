"""How much an examples-index build costs compared with a plain forward pass over the same images.

    python bench/index_build.py [--model all|lenet|cifarnet|efficientnet-lite0] [--data ../shared/data/cifar10-jpeg.zip]
                                [--limit N] [--rounds R]

Measured in one run, on the same images, with the same threads and batch size:

* ``forward``: the data set decoded once into memory (uint8, the model's preprocessing), then a plain
  batched ``model(x)`` over it (normalisation included) -- the floor;
* ``map``: the index's map step over the same in-memory batches (forward + hooks + streaming top-k)
  plus ``finalize`` (receptive fields); each batch goes through ``forward`` and ``map`` one after the
  other, so that a shared machine's changing load affects both alike;
* ``build``: the real thing, as ``convscope index`` runs it: DataLoader decoding from the archive,
  map, finalize, atomic write to a (temporary) store; compared with the mean of the plain forward
  before it and one more right after it.

Prints wall-clock and CPU-time ratios (CPU time counts the decode workers too) for every bundled
model (``--model all``, the default), then one summary line per model (the median over ``--rounds``);
the goal is build / forward <= 1.5. Uses the trained weights when
``models/<model>/card.json`` exists, random weights otherwise (the timing barely depends on them).
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.config import Settings  # noqa: E402
from app.core import nets  # noqa: E402
from app.core.examples import Accumulator, finalize  # noqa: E402
from app.core.receptive import receptive_fields  # noqa: E402
from app.core.zoo import LoadedModel, ModelSpec, Preprocess, load_model  # noqa: E402
from app.features.examples.build import auto_batch_size, build, index_layers, load_one_model  # noqa: E402
from app.features.examples.sources import _Decoded, collate_batch, normalize, open_source  # noqa: E402
from app.store.database import Store  # noqa: E402

CIFAR_PRE = Preprocess(resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def get_model(name: str) -> tuple[LoadedModel, str]:
    settings = Settings()
    if name in ("lenet", "cifarnet") and not (settings.models_dir / name / "card.json").exists():
        def load() -> torch.nn.Module:
            torch.manual_seed(0)
            return nets.build(name)
        return load_model(ModelSpec(name=name, title=name, source="bench", preprocess=CIFAR_PRE, categories=CIFAR,
                                    load=load)), "random weights"
    return load_one_model(name, settings), "trained weights"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="all", help="a model name, or all (every bundled model)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, help="default: 2048 images at 32x32, 256 at 224x224")
    p.add_argument("--batch-size", type=int, help="default: as convscope index (auto_batch_size)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--rounds", type=int, default=1, help="repeat each model; the summary shows the median")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    names = ["lenet", "cifarnet", "efficientnet-lite0"] if a.model == "all" else [a.model]
    summary = []
    for name in names:
        runs = [run_one(a, name) for _ in range(a.rounds)]
        build_r, map_r = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        summary.append(f"{name:20s} build/forward {build_r:.2f}  map/forward {map_r:.2f}  ({a.rounds} round(s))")
    print("\nSUMMARY (goal: build/forward <= 1.5)")
    print("\n".join(summary))
    return 0


def run_one(a: argparse.Namespace, name: str) -> tuple[float, float]:
    """One model: prints the details, returns (build / forward, map / forward) wall-clock ratios."""
    lm, weights = get_model(name)
    batch_size = a.batch_size or auto_batch_size(lm)
    pre = lm.spec.preprocess
    source, ds = open_source(a.data, a.split, a.limit or (2048 if pre.crop <= 64 else 256))
    n = len(ds)
    print(f"\n{lm.name} ({weights}) over {source.describe()}: {n} images at {pre.crop}x{pre.crop}, "
          f"batch {batch_size}, {a.threads} torch thread(s), {a.workers} decode worker(s)", flush=True)

    t = time.perf_counter()
    loader = torch.utils.data.DataLoader(_Decoded(ds, pre, 0), batch_size=batch_size, num_workers=a.workers,
                                         collate_fn=collate_batch)
    decoded = [(u8, idx, lab) for u8, idx, lab in loader]
    t_decode = time.perf_counter() - t

    module = copy.deepcopy(lm.module).eval()
    with torch.no_grad():  # warm-up
        module(normalize(decoded[0][0], pre))

    # forward and map interleaved batch by batch, so that the load of a shared machine hits both alike
    acc = Accumulator(module, index_layers(lm), 9)
    t_fwd = t_map = c_fwd = c_map = 0.0
    for u8, idx, lab in decoded:
        w, c = time.perf_counter(), time.process_time()
        with torch.no_grad():
            module(normalize(u8, pre))
        t_fwd += time.perf_counter() - w
        c_fwd += time.process_time() - c
        w, c = time.perf_counter(), time.process_time()
        acc.add(normalize(u8, pre), idx, lab)
        t_map += time.perf_counter() - w
        c_map += time.process_time() - c
    w, c = time.perf_counter(), time.process_time()
    fields = receptive_fields(module, pre.input_size)
    finalize(acc.part, fields, {"input_size": list(pre.input_size)}, lambda i: ds.samples[i].ref)  # type: ignore[union-attr]
    t_map += time.perf_counter() - w
    c_map += time.process_time() - c

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        from app.features.examples.index_store import IndexStore

        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w, c = time.perf_counter(), time.process_time()
        build(lm, source, ds, IndexStore(store), batch_size=batch_size, workers=a.workers, checkpoint_every=30.0)
        t_build = time.perf_counter() - w
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_build = time.process_time() - c + (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        store.close()

    print(f"decode into memory : {t_decode:7.2f} s")
    print(f"plain forward      : {t_fwd:7.2f} s wall, {c_fwd:7.2f} s CPU  ({n / t_fwd:,.0f} img/s)")
    print(f"index map+finalize : {t_map:7.2f} s wall, {c_map:7.2f} s CPU  ratio {t_map / t_fwd:.2f}x wall, "
          f"{c_map / c_fwd:.2f}x CPU  (same in-memory batches, interleaved with the forward)")
    # the build runs once, after the interleaved part: a plain forward over the same batches again now,
    # and the build is compared with the mean of both forwards (a shared machine's speed drifts)
    w, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        for u8, _idx, _lab in decoded:
            module(normalize(u8, pre))
    t_fwd2, c_fwd2 = time.perf_counter() - w, time.process_time() - c
    del decoded
    f_wall, f_cpu = (t_fwd + t_fwd2) / 2, (c_fwd + c_fwd2) / 2
    print(f"full index build   : {t_build:7.2f} s wall, {c_build:7.2f} s CPU  ratio {t_build / f_wall:.2f}x wall, "
          f"{c_build / f_cpu:.2f}x CPU  (decode from {Path(a.data).name} in {a.workers} worker(s), map, finalize, "
          f"store; {size / 1e6:.1f} MB on disk; against the mean of the forward before, {t_fwd:.2f} s, and "
          f"after, {t_fwd2:.2f} s)")
    print(f"RATIO build/forward = {t_build / f_wall:.2f} wall (goal <= 1.5); map alone {t_map / t_fwd:.2f}", flush=True)
    return t_build / f_wall, t_map / t_fwd


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())

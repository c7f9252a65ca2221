"""``convscope index``: build a max-activating-examples index (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_K = 9  # examples kept per channel (the same default as app.features.examples.build)


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
    p.add_argument("--engine", choices=("local", "ray"), help="local: this process (default: the setting index_engine, "
                   "local); ray: shards mapped over Ray actors (pip install .[ray]; --workers and --throttle do not apply)")
    p.add_argument("--address", help="with --engine ray: the Ray cluster (auto, ray://head:10001 ...; default: the "
                                     "setting ray_address, else a local Ray instance started here)")
    p.add_argument("--actors", type=int, help="with --engine ray: actors, each holding the model once (default: the "
                                              "setting ray_actors, else one per CPU Ray reports)")
    p.set_defaults(func=run)


def run(a: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from app.config import Settings
    from app.core.zoo import ModelLoadError, UnknownModelError
    from app.features.examples.build import Progress, build, index_layers, load_one_model
    from app.features.examples.index_store import IndexStore
    from app.features.examples.sources import IndexBuildError, open_source
    from app.store.database import Store

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
    store = Store(settings.data_dir, settings.database_url)
    istore = IndexStore(store)
    try:
        source, ds = open_source(data, a.split, a.limit, cache_dir=Path(settings.data_dir) / "datasets")
    except IndexBuildError as e:
        print(str(e), file=sys.stderr)
        return 2
    upscale = "" if ds[0][0].size[0] >= lm.spec.preprocess.crop else \
        f" (images are upscaled to {lm.spec.preprocess.crop}x{lm.spec.preprocess.crop} by the model's preprocessing)"
    print(f"indexing {lm.name} over {source.describe()}: {len(ds)} images, "
          f"{len(index_layers(lm))} layers{upscale}", file=sys.stderr)
    bar = tqdm(total=len(ds), unit="img", dynamic_ncols=True, smoothing=0.1, file=sys.stderr)

    def on_progress(p: Progress) -> None:
        if p.resumed_from and bar.n == 0 and p.done == p.resumed_from:
            bar.write(f"resuming from the checkpoint: {p.done} images already done")
        bar.update(p.done - bar.n)

    try:
        if (a.engine or settings.index_engine) == "ray":
            from app.features.examples.distributed import build_ray

            index, man = build_ray(lm, source, ds, istore, settings=settings, k=a.k, batch_size=a.batch_size,
                                   checkpoint_every=a.checkpoint_every, resume=not a.fresh, progress=on_progress,
                                   address=a.address or settings.ray_address, actors=a.actors or settings.ray_actors or None)
        else:
            index, man = build(lm, source, ds, istore, k=a.k, batch_size=a.batch_size, workers=a.workers,
                               checkpoint_every=a.checkpoint_every, resume=not a.fresh, progress=on_progress,
                               throttle_s=a.throttle)
    except IndexBuildError as e:
        print(str(e), file=sys.stderr)
        return 1
    finally:
        bar.close()
        store.close()
    print(f"done in {man.seconds:.1f} s: {man.count} images, {man.layers} layers, k={man.k}\n"
          f"stored as {man.key} under {istore.root.parent}", file=sys.stderr)
    return 0

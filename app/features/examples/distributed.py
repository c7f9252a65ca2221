"""Index builds on Ray: the data set cut into shards, mapped over actors that each hold the model once.

``convscope index --engine ray`` (and the server's index jobs with ``CONVSCOPE_INDEX_ENGINE=ray``) run
:func:`build_ray`. The images are cut into contiguous shards whose bounds are multiples of the batch
size, so every batch is one the single-process :func:`app.features.examples.build.build` runs too.
Each actor (:class:`ShardMapper`) loads the model by name and opens the data set by path itself, so
only shard bounds go out and npz bytes of a shard's :class:`app.core.examples.IndexPart` come back.
The driver merges the parts as they arrive: the merge is associative and commutative (ties broken
by data set index), so the order does not matter and the index is bit-identical to the plain
build's. The merged part is saved in the plain build's checkpoint file (its ``covered`` ranges say
which images are done); a resumed build maps only the rest. The end (receptive fields, finalize,
save) is the plain build's :func:`app.features.examples.build.finish`.

Ray is optional (``pip install .[ray]``) and imported only when a build runs on it. On a cluster,
every node needs convscope installed, the model's weights and the data set at the same path.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from app.core.data import ImageDataset
from app.core.examples import Accumulator, ExamplesIndex, IndexPart
from app.core.zoo import LoadedModel
from app.features.examples.build import (
    DEFAULT_K,
    BuildCancelled,
    Progress,
    _checkpoint_meta,
    auto_batch_size,
    finish,
    index_layers,
    load_one_model,
    read_checkpoint,
    write_checkpoint,
)
from app.features.examples.index_store import IndexStore, Manifest, index_key
from app.features.examples.sources import GalleryDataset, IndexBuildError, Source, _Decoded, normalize, open_source

log = logging.getLogger("convscope.indexing")

RAY_MISSING = "index builds on Ray need the ray package: pip install 'convscope[ray]' (or pip install 'ray>=2.40')"
IN_FLIGHT = 2  # shards queued on each actor, so that it never waits for the driver
MAX_SHARD_BATCHES = 64  # a shard is at most this many batches (progress and checkpoints move shard by shard)


def import_ray() -> Any:
    """The ``ray`` module, or an :class:`IndexBuildError` that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise IndexBuildError(RAY_MISSING) from e
    return ray


def connect(address: str | None = None) -> Any:
    """Ray, connected to the cluster at ``address`` (None: ``RAY_ADDRESS``, else a local instance started
    here); a process that is connected already stays on its cluster."""
    ray = import_ray()
    if not ray.is_initialized():
        opts: dict[str, Any] = {"logging_level": logging.WARNING}
        if not address:
            opts["include_dashboard"] = False
        ray.init(address=address or None, **opts)
    return ray


# --------------------------------------------------------------------------- shards


def auto_shard_size(n: int, batch_size: int, actors: int) -> int:
    """About eight shards per actor (load balance, progress), at most :data:`MAX_SHARD_BATCHES` batches each."""
    batches = math.ceil(n / batch_size) if n else 1
    return batch_size * max(1, min(MAX_SHARD_BATCHES, math.ceil(batches / (8 * max(1, actors)))))


def aligned(covered: Sequence[tuple[int, int]], batch_size: int, n: int) -> bool:
    """Whether covered ranges start and end on batch bounds (or at the end): a checkpoint of this build's batches."""
    return all(s % batch_size == 0 and (e % batch_size == 0 or e == n) and 0 <= s < e <= n for s, e in covered)


def plan_shards(n: int, covered: Sequence[tuple[int, int]], shard_size: int) -> list[tuple[int, int]]:
    """The images ``0..n-1`` not in ``covered``, as half-open ranges cut at multiples of ``shard_size``."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s, e in [*sorted(covered), (n, n)]:
        while pos < s:
            nxt = min(s, (pos // shard_size + 1) * shard_size)
            out.append((pos, nxt))
            pos = nxt
        pos = max(pos, e)
    return out


# --------------------------------------------------------------------------- the actor


class ShardMapper:
    """A Ray actor's state: the model (loaded once, by name) and the data set (opened by path); maps shards.

    ``settings``: ``models_dir`` and ``torchvision_models`` (what :func:`load_one_model` reads);
    ``data``: ``path``, ``split`` and ``limit`` of the data set; ``threads``: torch threads (the actor's CPUs).
    """

    def __init__(self, model: str, settings: dict[str, Any], data: dict[str, Any], k: int, batch_size: int,
                 threads: int) -> None:
        torch.set_num_threads(max(1, threads))
        self.lm = load_one_model(model, SimpleNamespace(models_dir=Path(settings["models_dir"]),
                                                        torchvision_models=list(settings["torchvision_models"])))
        self.source, ds = open_source(data["path"], data["split"], data["limit"])
        if not isinstance(ds, ImageDataset):
            raise IndexBuildError("a build on Ray reads a folder or zip data set")
        self.n = len(ds)
        self.module = self.lm.private_copy()
        self.layers = index_layers(self.lm)
        self.decoded = _Decoded(ds, self.lm.spec.preprocess, 0)
        self.k, self.batch_size = k, batch_size

    def identity(self) -> tuple[str, str, int]:
        """What this actor holds: weights sha256, data set identity and size (the driver compares them)."""
        return self.lm.weights_sha256, self.source.identity, self.n

    def map(self, start: int, end: int) -> bytes:
        """The part of images ``start..end-1`` (npz), in the plain build's batches."""
        acc = Accumulator(self.module, self.layers, self.k)
        pre = self.lm.spec.preprocess
        for b in range(start, end, self.batch_size):
            u8, index, label = self.decoded.__getitems__(list(range(b, min(b + self.batch_size, end))))
            acc.add(normalize(u8, pre), index, label)
        return acc.part.to_npz()


# --------------------------------------------------------------------------- the driver


def build_ray(lm: LoadedModel, source: Source, ds: ImageDataset | GalleryDataset, istore: IndexStore, *, settings: Any,
              k: int = DEFAULT_K, batch_size: int | None = None, checkpoint_every: float = 30.0, resume: bool = True,
              progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
              address: str | None = None, actors: int | None = None, cpus_per_actor: int = 1,
              shard_size: int | None = None) -> tuple[ExamplesIndex, Manifest]:
    """Build and save the index of a folder or zip data set on Ray; the same index as :func:`build` gives.

    ``settings``: ``models_dir`` and ``torchvision_models`` for the actors (:class:`app.config.Settings`);
    ``address``: the Ray cluster (None: see :func:`connect`); ``actors``: how many (None: the cluster's CPUs
    / ``cpus_per_actor``); ``shard_size``: images a shard (rounded up to whole batches; None: automatic);
    ``checkpoint_every``: seconds between checkpoints (0: after every shard; negative: never).
    ``should_stop`` is read as results arrive (and at least every second): when it says so, the shards not
    finished are dropped, the actors stopped and :class:`BuildCancelled` raised.
    """
    if source.kind != "folder" or not isinstance(ds, ImageDataset):
        raise IndexBuildError("a build on Ray reads a folder or zip data set; the gallery is indexed locally")
    t0 = time.time()  # the build's time counts Ray's start and the actors' (model, data set) too
    ray = connect(address)
    batch_size = batch_size or auto_batch_size(lm)
    layers = index_layers(lm)
    key = index_key(lm.name, lm.weights_sha256, source)
    n = len(ds)
    ck_path = istore.checkpoint_path(key)
    ck_meta = _checkpoint_meta(key, k, batch_size, layers)
    merged = IndexPart(k, {}, {}, [])
    if resume and (part := read_checkpoint(ck_path, ck_meta)) is not None:
        if aligned(part.covered, batch_size, n):
            merged = part
        else:
            log.warning("checkpoint %s does not cover whole batches: starting over", ck_path)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, cpus_per_actor))
    size = batch_size * math.ceil(shard_size / batch_size) if shard_size else auto_shard_size(n, batch_size, actors)
    todo = plan_shards(n, merged.covered, size)
    prog = Progress(merged.count, n, time.time(), resumed_from=merged.count)
    if progress:
        progress(prog)
    if todo:
        log.info("indexing %d images in %d shards on %d Ray actors (%d done before)", n - merged.count, len(todo),
                 min(actors, len(todo)), merged.count)
        data = {"path": source.path, "split": source.split, "limit": source.limit}
        conf = {"models_dir": str(settings.models_dir), "torchvision_models": list(settings.torchvision_models)}
        mapper = ray.remote(ShardMapper).options(num_cpus=cpus_per_actor, max_restarts=2, max_task_retries=2)
        pool = [mapper.remote(lm.name, conf, data, k, batch_size, cpus_per_actor) for _ in range(min(actors, len(todo)))]
        try:
            merged = _drive(ray, pool, todo, merged, (lm.weights_sha256, source.identity, n), prog, progress,
                            should_stop, lambda part: write_checkpoint(ck_path, part, ck_meta), checkpoint_every)
        except ray.exceptions.RayError as e:
            if isinstance(e, IndexBuildError):
                raise
            raise IndexBuildError(f"the build on Ray failed: {e}") from e
        finally:
            for a in pool:
                ray.kill(a)
    if merged.covered != [(0, n)] and n:
        raise IndexBuildError(f"the shards cover {merged.covered}, not the {n} images")
    return finish(lm, source, ds, istore, merged, module=lm.private_copy(), layers=layers, k=k, started=t0)


def _drive(ray: Any, pool: list[Any], todo: list[tuple[int, int]], merged: IndexPart, expect: tuple[str, str, int],
           prog: Progress, progress: Callable[[Progress], None] | None, should_stop: Callable[[], bool] | None,
           save: Callable[[IndexPart], None], checkpoint_every: float) -> IndexPart:
    """Keep :data:`IN_FLIGHT` shards queued on every actor, merge the parts as they come, checkpoint them."""
    for got in ray.get([a.identity.remote() for a in pool]):
        if tuple(got) != expect:
            raise IndexBuildError("a Ray actor sees other weights or another data set than this build: "
                                  f"{tuple(got)} instead of {expect}")
    queue = deque(todo)
    pending: dict[Any, Any] = {}

    def submit(actor: Any) -> None:
        if queue:
            s, e = queue.popleft()
            pending[actor.map.remote(s, e)] = actor

    for _ in range(IN_FLIGHT):
        for a in pool:
            submit(a)
    last_ck = time.time()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        if should_stop and should_stop():
            for ref in pending:
                ray.cancel(ref)
            raise BuildCancelled("the build was cancelled")
        for ref in ready:
            actor = pending.pop(ref)
            part, _, _ = IndexPart.from_npz(ray.get(ref))
            submit(actor)
            merged = merged.merge(part)
            prog.done = merged.count
            if progress:
                progress(prog)
            if checkpoint_every >= 0 and pending and time.time() - last_ck >= checkpoint_every:
                save(merged)
                last_ck = time.time()
    return merged

"""Training snapshots as extra, read-only model variants.

``convscope train`` writes weights-only snapshots (fp16 safetensors) to
``models/<name>/snapshots/epoch-NNN.safetensors``. Each one is served as the variant
``<name>@epoch-NNN``: same architecture, preprocessing and labels as the served ``<name>``, weights
from the snapshot (fp16 -> float32). Variants are loaded on first use and kept in a small LRU; they
are never listed among the served models and never written anywhere.

:class:`SnapshotZoo` wraps the app's zoo so that every endpoint taking ``model=`` also accepts a
variant name (``model=lenet@epoch-003``): permalinks to any view of any checkpoint.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from app.core import nets
from app.core.errors import NotFoundError
from app.core.zoo import LoadedModel, ModelLoadError, Zoo, load_model, load_safetensors

SNAPSHOT_RE = re.compile(r"^epoch-(\d{1,6})$")
SEP = "@"


class UnknownSnapshotError(NotFoundError):
    """A snapshot name that the model does not have; the message lists the valid ones."""

    kind = "snapshot"


@dataclass(frozen=True)
class Snapshot:
    """One weights-only snapshot file of a model."""

    model: str
    id: str  # "epoch-003"
    epoch: int
    path: Path

    @property
    def variant(self) -> str:
        return f"{self.model}{SEP}{self.id}"

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


def list_snapshots(models_dir: Path, model: str) -> list[Snapshot]:
    """The snapshots of ``model`` under ``models_dir``, by epoch (empty when there are none)."""
    folder = models_dir / model / "snapshots"
    if "/" in model or ".." in model or not folder.is_dir():
        return []
    out = []
    for p in folder.glob("epoch-*.safetensors"):
        m = SNAPSHOT_RE.match(p.stem)
        if m and p.is_file():
            out.append(Snapshot(model=model, id=p.stem, epoch=int(m.group(1)), path=p))
    return sorted(out, key=lambda s: s.epoch)


def normalize_snapshot(value: str) -> str:
    """``3``, ``epoch-3`` and ``epoch-003`` all name ``epoch-003``; anything else is kept (and fails later)."""
    v = value.strip()
    m = re.fullmatch(r"(?:epoch-?)?(\d{1,6})", v)
    return f"epoch-{int(m.group(1)):03d}" if m else v


def split_variant(name: str) -> tuple[str, str | None]:
    """``lenet@epoch-003`` -> (``lenet``, ``epoch-003``); ``lenet`` -> (``lenet``, None)."""
    if SEP in name:
        base, snap = name.split(SEP, 1)
        return base, normalize_snapshot(snap)
    return name, None


def _arch_of(base: LoadedModel) -> str:
    return str(base.spec.card.get("name") or base.name) if base.spec.source in ("convscope", "test") else base.name


class SnapshotZoo(Zoo):
    """The served zoo (same ``models``/``errors`` objects) plus lazily loaded snapshot variants."""

    def __init__(self, inner: Zoo, models_dir: Path, max_loaded: int = 8) -> None:
        super().__init__()
        self.models = inner.models  # shared: variants are never added here (not "served")
        self.errors = inner.errors
        self.inner = inner
        self.models_dir = models_dir
        self.max_loaded = max_loaded
        self._variants: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def wrap(cls, zoo: Zoo, models_dir: Path) -> SnapshotZoo:
        return zoo if isinstance(zoo, SnapshotZoo) else cls(zoo, models_dir)

    def snapshots(self, model: str) -> list[Snapshot]:
        base, _ = split_variant(model)
        super().get(base)  # 404 for an unknown model
        return list_snapshots(self.models_dir, base)

    def snapshot(self, model: str, snapshot: str) -> Snapshot:
        sid = normalize_snapshot(snapshot)
        snaps = self.snapshots(model)
        for s in snaps:
            if s.id == sid:
                return s
        raise UnknownSnapshotError(snapshot, [s.id for s in snaps]) if snaps else UnknownSnapshotError(
            snapshot, hint=f"model {model!r} has no training snapshots")

    def get(self, name: str) -> LoadedModel:
        base_name, snap = split_variant(name)
        if snap is None:
            return super().get(name)
        s = self.snapshot(base_name, snap)
        with self._lock:
            hit = self._variants.get(s.variant)
            if hit is not None:
                self._variants.move_to_end(s.variant)
                return hit
        lm = self._load(super().get(base_name), s)
        with self._lock:
            self._variants.setdefault(s.variant, lm)
            self._variants.move_to_end(s.variant)
            while len(self._variants) > self.max_loaded:
                self._variants.popitem(last=False)
            return self._variants[s.variant]

    def variant(self, model: str, snapshot: str | None) -> LoadedModel:
        """``model`` itself, or its snapshot when ``snapshot`` is given (the ``snapshot=`` parameter)."""
        if snapshot in (None, "", "final"):
            return self.get(model)
        base, _ = split_variant(model)
        return self.get(f"{base}{SEP}{normalize_snapshot(snapshot)}")

    @staticmethod
    def _load(base: LoadedModel, snap: Snapshot) -> LoadedModel:
        arch = _arch_of(base)
        n_classes = len(base.spec.categories)

        def load() -> nn.Module:
            state = {k: v.float() if v.is_floating_point() else v for k, v in load_safetensors(snap.path).items()}
            try:
                m = nets.build(arch, n_classes)
            except ValueError:  # not one of our architectures: a copy of the served module
                m = base.private_copy()
            # Weights-only snapshots may lack buffers (BN running stats): keep the freshly built ones.
            missing, unexpected = m.load_state_dict(state, strict=False)
            params = {k for k, _ in m.named_parameters()}
            if unexpected or params & set(missing):
                raise ModelLoadError(f"snapshot {snap.path} does not fit {arch}: missing "
                                     f"{sorted(params & set(missing))[:5]}, unexpected {sorted(unexpected)[:5]}")
            return m

        spec = dataclasses.replace(base.spec, name=snap.variant,
                                   title=f"{base.spec.title} · epoch {snap.epoch}", load=load, weights_path=snap.path)
        with torch.inference_mode(False):
            return load_model(spec)

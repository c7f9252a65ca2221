"""Capture activations by layer name, and describe a model's layers.

Layers are named by their ``named_modules()`` path. Hooks live only inside :func:`capture` and
:func:`forward_until`; they are removed in ``finally`` even when the forward pass raises. They act
only on the passes of the thread that opened the block, so other threads can run the same module at
the same time (plain or hooked passes) without their outputs mixing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from threading import get_ident

import torch
from torch import nn

from app.core.errors import NotFoundError


class UnknownLayerError(NotFoundError):
    """A layer name that the model does not have; the message lists the valid ones."""

    kind = "layer"


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model: name (``named_modules`` path), type, output shape, own parameters."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    parameters: int
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None

    @property
    def is_spatial(self) -> bool:
        return len(self.output_shape) == 3

    @property
    def channels(self) -> int:
        return self.output_shape[0]


def _norm_then_children(m: nn.Module) -> nn.Module | None:
    """For timm's normalisation + activation modules (BatchNormAct2d, GroupNormAct ...): the child
    whose input is the module's own normalisation, else None.

    Such a module normalises (with its own parameters), then runs its ``drop`` and ``act`` children;
    ``drop`` is a pass-through in eval mode (Identity, Dropout), so its output is the normalised
    tensor. As leaves alone, the network would show an "Identity" where its batch norm is, and no
    layer would own the norm's parameters."""
    if not type(m).__module__.startswith("timm.layers.norm_act"):
        return None
    drop = m._modules.get("drop")
    return drop if isinstance(drop, nn.Identity | nn.modules.dropout._DropoutNd) else None


def layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The model's layers, in definition order: name -> the module whose forward output is the
    layer's output. Every module without children is a layer (its own output); so is a timm
    normalisation + activation module, whose output is taken where its normalisation ends (at its
    ``drop`` child; :func:`_norm_then_children`)."""
    return _modules_and_layers(model)[1]


def _modules_and_layers(model: nn.Module) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    """Every named module, and :func:`layer_modules` (one walk of the tree)."""
    modules: dict[str, nn.Module] = {}
    layers: dict[str, nn.Module] = {}
    for n, m in model.named_modules():
        if not n:
            continue
        modules[n] = m
        if not m._modules:
            layers[n] = m
        elif (child := _norm_then_children(m)) is not None:
            layers[n] = child
    return modules, layers


def resolve(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """For layer names, the modules to hook (:func:`layer_modules`; any other module path: that
    module itself). Raises :class:`UnknownLayerError` for an unknown one."""
    modules, layers = _modules_and_layers(model)
    out: dict[str, nn.Module] = {}
    for n in names:
        if n not in modules:
            raise UnknownLayerError(n, list(layers))
        out[n] = layers.get(n, modules[n])
    return out


@contextmanager
def capture(model: nn.Module, names: Iterable[str], *, keep_grad: bool = False,
            clone: bool | Collection[str] = False) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward of ``model`` stores the outputs of the named layers.

    Yields the dict that the hooks fill (layer name -> output tensor, detached unless
    ``keep_grad``). ``clone`` copies each output at hook time, which is needed when the model later
    changes that tensor in place (``ReLU(inplace=True)``, ``x += identity``). Hooks are removed on
    exit, also after an exception. ``clone`` may also name only the layers that need it
    (see :func:`in_place_and_reused`). Only this thread's passes are captured.
    """
    targets = resolve(model, names)
    to_clone = set(targets) if clone is True else set(clone or ())
    store: dict[str, torch.Tensor] = {}
    handles = []
    owner = get_ident()

    def make_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(out, torch.Tensor) and get_ident() == owner:
                t = out if keep_grad else out.detach()
                store[name] = t.clone() if name in to_clone else t
        return hook

    try:
        for name, mod in targets.items():
            handles.append(mod.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


class _Reached(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, out: object) -> None:
        super().__init__()
        self.out = out


@contextmanager
def forward_until(model: nn.Module, name: str) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Within the block, ``run(x)`` runs ``model`` only as far as layer ``name`` and returns its output.

    The layers after it are never computed (nor, later, differentiated): for an objective on an
    early layer that is most of the network's cost. A forward hook stops the pass by raising; it is
    removed on exit, also after an exception. Other threads' passes run through.
    """
    mod = resolve(model, [name])[name]
    owner = get_ident()

    def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if get_ident() == owner:
            raise _Reached(out)

    handle = mod.register_forward_hook(hook)

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            model(x)
        except _Reached as r:
            assert isinstance(r.out, torch.Tensor)
            return r.out
        raise RuntimeError(f"the forward pass never reached layer {name!r}")

    try:
        yield run
    finally:
        handle.remove()


def _pair(v: object) -> tuple[int, ...] | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, tuple | list) and all(isinstance(i, int) for i in v):
        return tuple(v)
    return None


def leaf_layers(model: nn.Module) -> list[str]:
    """Names of the model's layers (:func:`layer_modules`), before :func:`summarize` drops those
    that a pass does not run and the Identity placeholders."""
    return list(layer_modules(model))


@torch.no_grad()
def summarize(model: nn.Module, input_size: tuple[int, int, int]) -> list[LayerInfo]:
    """The layers shown in the strip, with output shape (one dummy forward) and own parameter count.

    Of :func:`leaf_layers`, those the forward pass runs, less the ``nn.Identity`` placeholders that
    hand on the very tensor of a layer listed before them (all 106 of timm's EfficientNet-Lite0:
    ``aa``, ``se``, ``drop_path``, an ``act`` without activation, the ``drop`` of a norm layer):
    they would repeat that layer's activations under a type that says nothing happens."""
    names = leaf_layers(model)
    was_training = model.training
    model.eval()
    try:
        with capture(model, names, keep_grad=True) as acts:  # the output objects themselves (no detach)
            model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
    mods = dict(model.named_modules())
    infos = []
    shown: set[int] = set()  # ids of the outputs of the layers listed so far
    for n in names:
        if n not in acts:
            continue  # a module that the forward pass does not use
        m = mods[n]
        if isinstance(m, nn.Identity) and id(acts[n]) in shown:
            continue
        shown.add(id(acts[n]))
        infos.append(LayerInfo(
            name=n, type=type(m).__name__, output_shape=tuple(acts[n].shape[1:]),
            parameters=sum(p.numel() for p in m.parameters(recurse=False)),
            kernel_size=_pair(getattr(m, "kernel_size", None)), stride=_pair(getattr(m, "stride", None)),
            padding=_pair(getattr(m, "padding", None)),
        ))
    return infos


@torch.no_grad()
def in_place_and_reused(model: nn.Module, names: Iterable[str],
                        input_size: tuple[int, int, int]) -> tuple[frozenset[str], frozenset[str]]:
    """From one eval-mode forward of a zero image: (layers modified in place, layers reused).

    * modified in place: layers whose output tensor the model changes later in the pass (found
      from the tensors' version counters); only these outputs need a copy at hook time, which
      saves copying every activation;
    * reused: layers whose module runs more than once per pass (e.g. a ReLU module applied twice).
      For those, :func:`capture` keeps the last output while :func:`forward_until` stops at the
      first, so a pass that stops early is only used for the others.
    """
    seen: dict[str, tuple[torch.Tensor, int]] = {}
    calls: dict[str, int] = {}
    handles = []
    for name, mod in resolve(model, names).items():
        def hook(_m: nn.Module, _i: tuple[torch.Tensor, ...], out: object, name: str = name) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor):
                seen[name] = (out, out._version)
        handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, *input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    modified = frozenset(n for n, (t, v) in seen.items() if t._version != v)
    return modified, frozenset(n for n, c in calls.items() if c > 1)


def first_conv(model: nn.Module) -> str:
    """The name of the first ``Conv2d`` in definition order (the filters worth showing)."""
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return n
    raise ValueError("the model has no Conv2d layer")

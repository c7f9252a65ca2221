"""Switching channels off: forward passes in which chosen channels of chosen layers output zero.

``parse_ablation("conv1:3,conv1:5")`` reads the REST form (``layer:channel`` items, comma-separated);
:func:`ablated` is the block within which this thread's passes of the module see those channels
zeroed (forward hooks that return the changed output, so every later layer, and any hook registered
after them, sees the zeros). Other threads' passes of the same module run through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from threading import get_ident

import torch
from torch import nn

from app.core.probe import resolve

MAX_ITEMS = 4096


class AblationError(ValueError):
    """A malformed ``ablate`` value or a channel a layer does not have; the message says what is valid."""


def parse_ablation(text: str | Sequence[str], channels: Mapping[str, int]) -> dict[str, list[int]]:
    """``"conv1:3,conv1:5"`` (or several such strings) -> ``{"conv1": [3, 5]}``, checked against ``channels``
    (layer -> its number of channels). Unknown layer, bad channel or malformed item: :class:`AblationError`,
    or KeyError for an unknown layer (its name)."""
    parts = [p.strip() for t in ([text] if isinstance(text, str) else text) for p in t.split(",") if p.strip()]
    if len(parts) > MAX_ITEMS:
        raise AblationError(f"at most {MAX_ITEMS} channels may be switched off at once")
    out: dict[str, list[int]] = {}
    for p in parts:
        layer, sep, ch = p.rpartition(":")
        if not sep or not layer:
            raise AblationError(f"{p!r} is not layer:channel (for example conv1:3)")
        if layer not in channels:
            raise KeyError(layer)
        n = channels[layer]
        if not ch.strip().isdigit() or not 0 <= int(ch) < n:
            raise AblationError(f"channel {ch!r} of {layer} does not exist: {layer} has channels 0 to {n - 1}")
        c = int(ch)
        if c not in out.setdefault(layer, []):
            out[layer].append(c)
    return out


@contextmanager
def ablated(model: nn.Module, off: Mapping[str, Sequence[int]]) -> Iterator[None]:
    """Within the block, this thread's passes of ``model`` see the channels ``off[layer]`` of each layer zeroed."""
    owner = get_ident()
    handles = []

    def make(chs: list[int]):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor | None:
            if get_ident() != owner or not isinstance(out, torch.Tensor):
                return None
            out = out.clone()
            out[:, chs] = 0
            return out
        return hook

    try:
        for name, mod in resolve(model, list(off)).items():
            handles.append(mod.register_forward_hook(make(sorted(off[name]))))
        yield
    finally:
        for h in handles:
            h.remove()

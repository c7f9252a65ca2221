"""Forward passes that run without Python between their operations (TorchScript traces).

An eager forward pass returns to Python after every operation and must take the interpreter's
lock (GIL) back each time; while the event loop and other workers hold it, a pass waits at every
layer. Measured on the 2-core machine with one other Python thread busy: 20 cifarnet passes of a
batch of 8 took 5,056 ms eager and 620 ms traced (efficientnet-lite0: 36.4 vs 7.0 s). The traced
graph calls the very same kernels, so its outputs are bit for bit the eager ones (checked at load,
and in the tests).

Plain passes (predictions) run :func:`trace_plain`'s graph; the analysis summaries (predictions +
every layer's per-channel stats) :func:`trace_summary`'s.

``torch.jit.trace`` is deprecated in favour of ``torch.compile``/``torch.export``, whose graphs
still run their operations from Python (or need a C++ toolchain at start-up); torch is pinned, and
a model that does not trace (or whose trace differs) is served eagerly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from threading import get_ident

import torch
from torch import nn

from app.core.probe import resolve

log = logging.getLogger("convscope")


def trace_plain(module: nn.Module, input_size: tuple[int, ...]) -> torch.jit.ScriptModule | None:
    """A traced copy of ``module`` (eval mode) that equals it on random inputs of batch 1 and 3, else None."""
    return _checked_trace(module, input_size, "forward pass")


@torch.no_grad()  # not inference mode: Summary reads the tensors' change counters while tracing
def _checked_trace(module: nn.Module, input_size: tuple[int, ...], what: str) -> torch.jit.ScriptModule | None:
    """``torch.jit.trace(module)`` if its outputs equal the eager module's, bit for bit, on random
    inputs of batch 1 and 3 (each twice: the executor specialises the graph after a first run); else None."""
    name = type(module.net if isinstance(module, Summary) else module).__name__
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, *input_size, generator=gen) for n in (1, 3)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer notes
            traced = torch.jit.trace(module, xs[0], check_trace=False)
            for x in xs + xs:
                want, got = module(x), traced(x)
                want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
                if len(want) != len(got) or not all(torch.equal(a, b) for a, b in zip(want, got)):
                    log.warning("%s: the traced %s differs from the eager one; it runs eagerly", name, what)
                    return None
    except Exception as e:  # noqa: BLE001 - any tracing failure: run eagerly
        log.warning("%s: the %s does not trace (%s); it runs eagerly", name, what, e)
        return None
    return traced


Stats3 = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# Layers whose output is their input, untouched (in eval mode).
_PASS_THROUGH = (nn.Identity, nn.modules.dropout._DropoutNd)


def _clamp_bounds(m: nn.Module) -> tuple[float | None, float | None] | None:
    """(lo, hi) when ``m`` is an elementwise clamp (ReLU, ReLU6, Hardtanh): then the min and max of
    its output are its input's min and max clamped, exactly (a clamp rounds nothing)."""
    if isinstance(m, nn.ReLU):
        return (0.0, None)
    if isinstance(m, nn.Hardtanh) and m.min_val <= m.max_val:  # ReLU6 too
        return (float(m.min_val), float(m.max_val))
    return None


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place-change counter (None for inference-mode tensors, which keep none)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _flat(out: torch.Tensor) -> torch.Tensor:
    """(N, C, positions) float32."""
    out = out if out.dtype == torch.float32 else out.float()
    return out.flatten(2) if out.dim() > 3 else out


def _stats(out: torch.Tensor) -> Stats3:
    """Per-channel (min, max, sum) over the positions, each (N, C)."""
    if out.dim() == 2:  # (N, features): each feature is a channel of one value
        v = out.float().clone()  # a copy: a later in-place operation must not change it
        return (v, v, v)
    flat = _flat(out)
    return (flat.amin(2), flat.amax(2), flat.sum(2))


class Summary(nn.Module):
    """The network, returning its logits and each named layer's per-channel (min, max, sum) over
    the positions: a flat tuple ``(logits, min_1, max_1, sum_1, min_2, ...)``, each (N, C). The
    means are the sums divided by the positions (as torch's ``mean`` does it, after the pass:
    fewer operations in the graph).

    The stats are taken in a forward hook, right after each layer while its output is in the cache,
    and the outputs themselves are not kept: the pass reuses their memory like a plain one (an
    efficientnet-lite0 analysis that keeps every output holds 100 MB). Run eagerly, its hooks act
    only on the calling thread's pass; traced (:func:`trace_summary`), the hooks ran once, while
    tracing, and their operations are part of the graph.

    Work that the stats of earlier layers already did is not done again, when the tensors' change
    counters show that nothing changed them in place since (outside inference mode, so while
    tracing): a pass-through layer (Identity, Dropout in eval) hands on the very tensor of an
    earlier layer, whose stats it takes; a clamp (ReLU, ReLU6) of an earlier layer's output has
    that layer's min and max clamped (only its sum is computed). In efficientnet-lite0, 33 of the
    134 layers are ReLU6; in torchvision's VGG and AlexNet, the Dropout layers pass through.
    """

    def __init__(self, module: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.net = module
        self.names = list(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        found: dict[str, Stats3] = {}
        done: list[tuple[torch.Tensor, int, Stats3]] = []  # outputs summarised so far, with their counter
        owner = get_ident()

        def known(t: torch.Tensor) -> Stats3 | None:
            v = _version(t)
            for u, uv, st in reversed(done):
                if u is t:
                    return st if v is not None and v == uv else None
            return None

        def make_hook(name: str):  # type: ignore[no-untyped-def]
            def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
                if get_ident() != owner:
                    return
                src = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
                st = None
                if isinstance(m, _PASS_THROUGH) and out is src:
                    st = known(out)
                elif (bounds := _clamp_bounds(m)) is not None and src is not None and out is not src:
                    prev = known(src)
                    if prev is not None and out.dim() > 2:
                        st = (prev[0].clamp(*bounds), prev[1].clamp(*bounds), _flat(out).sum(2))
                if st is None:
                    st = _stats(out)
                found[name] = st
                v = _version(out)
                if v is not None:
                    done.append((out, v, st))
            return hook

        handles = [m.register_forward_hook(make_hook(n)) for n, m in resolve(self.net, self.names).items()]
        try:
            logits = self.net(x)
        finally:
            for h in handles:
                h.remove()
        return (logits, *(t for n in self.names for t in found[n]))


def trace_summary(module: nn.Module, names: Sequence[str], input_size: tuple[int, ...]) -> torch.jit.ScriptModule | None:
    """A traced :class:`Summary` of ``module``, checked equal to the eager one; else None."""
    return _checked_trace(Summary(module, names), input_size, "summary pass")

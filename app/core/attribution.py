"""Attribution maps for one prediction: which input pixels the class score depends on.

* vanilla gradient saliency: |d score_c / d x|, maximum over colour channels;
* SmoothGrad: the mean of the gradient over ``n`` noisy copies of the input (noise std =
  ``sigma`` x the input's value range), then |.| and max over channels;
* Grad-CAM: ReLU(sum_k alpha_k A^k) with alpha_k = mean over positions of d score_c / d A^k,
  for a chosen conv layer's output A, upsampled bilinearly to the input size;
* occlusion sensitivity: score_c(x) - score_c(x with a ``window`` patch set to ``fill``), for
  patches every ``stride`` pixels, each pixel averaging the patches that cover it.

Gradients are read with ``torch.autograd.grad`` on outputs captured by forward hooks (no backward
hooks); hooks are removed and the module's train/eval flag is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from app.core.probe import capture

METHODS = ("saliency", "smoothgrad", "gradcam", "occlusion")


@dataclass(frozen=True)
class AttributionMap:
    """A (H, W) map over the network's input for class ``target``, with the method's settings."""

    method: str
    target: int
    values: torch.Tensor
    settings: dict[str, object]

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()


@contextmanager
def _eval_with_grad(model: nn.Module) -> Iterator[None]:
    """Eval mode with autograd on (the server may call from inference mode); the flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        model.train(was_training)


def _input_grad(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    score = model(x)[:, target].sum()
    (g,) = torch.autograd.grad(score, x)
    return g


def saliency(model: nn.Module, x: torch.Tensor, target: int) -> AttributionMap:
    """|gradient of the class score w.r.t. the input|, max over channels. ``x``: (1, C, H, W)."""
    with _eval_with_grad(model):
        g = _input_grad(model, x, target)
    return AttributionMap("saliency", target, g.abs().amax(1)[0], {})


def smoothgrad(model: nn.Module, x: torch.Tensor, target: int, *, n: int = 16, sigma: float = 0.15,
               seed: int = 0) -> AttributionMap:
    """Mean input gradient over ``n`` noisy copies (std = sigma x value range), then |.| max over channels."""
    gen = torch.Generator().manual_seed(seed)
    std = sigma * float(x.max() - x.min())
    noise = torch.randn((n, *x.shape[1:]), generator=gen) * std
    with _eval_with_grad(model):
        g = _input_grad(model, x.detach() + noise, target).mean(0, keepdim=True)
    return AttributionMap("smoothgrad", target, g.abs().amax(1)[0], {"n": n, "sigma": sigma, "seed": seed})


def gradcam(model: nn.Module, x: torch.Tensor, target: int, layer: str) -> AttributionMap:
    """Grad-CAM for ``target`` at conv layer ``layer`` (its output must be (1, K, h, w))."""
    with _eval_with_grad(model), capture(model, [layer], keep_grad=True) as acts:
        # The input requires grad so that the graph reaches the layer even when weights are frozen.
        score = model(x.detach().clone().requires_grad_(True))[:, target].sum()
        a = acts[layer]
        if a.dim() != 4:
            raise ValueError(f"Grad-CAM needs a layer with spatial maps; {layer!r} outputs shape {tuple(a.shape)}")
        (g,) = torch.autograd.grad(score, a)
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * a).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return AttributionMap("gradcam", target, cam[0, 0], {"layer": layer})


class Stopped(Exception):
    """Raised when a long attribution was asked to stop (a cancelled job)."""


def occlusion_boxes(h: int, w: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The top-left corners of the occluding windows (the last row and column touch the far edges);
    their number is the number of forward passes occlusion costs."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be at least 1")
    ys = list(range(0, max(1, h - window) + 1, stride))
    xs = list(range(0, max(1, w - window) + 1, stride))
    if ys[-1] + window < h:
        ys.append(h - window)
    if xs[-1] + window < w:
        xs.append(w - window)
    return [(y, xx) for y in ys for xx in xs]


@torch.no_grad()
def occlusion(model: nn.Module, x: torch.Tensor, target: int, *, window: int = 8, stride: int = 4,
              fill: float = 0.0, batch: int | None = None, progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> AttributionMap:
    """Drop of the class score when a window x window patch is set to ``fill``, averaged per pixel.

    The occluded copies run ``batch`` at a time; by default as many as keep a batch within 2**18 input
    pixels (64 at 32x32, 5 at 224x224): larger batches of large inputs are slower per image on a CPU.
    ``progress(done, total)`` is called after each batch; ``should_stop()`` is read before each batch and
    stops the work (:class:`Stopped`)."""
    was_training = model.training
    model.eval()
    try:
        _, c, h, w = x.shape
        batch = batch or max(1, min(64, (1 << 18) // (h * w)))
        boxes = occlusion_boxes(h, w, window, stride)
        base = float(model(x)[0, target])
        total = torch.zeros(h, w)
        count = torch.zeros(h, w)
        for i in range(0, len(boxes), batch):
            if should_stop is not None and should_stop():
                raise Stopped("occlusion was stopped")
            chunk = boxes[i:i + batch]
            xb = x.repeat(len(chunk), 1, 1, 1)
            for j, (y, xx) in enumerate(chunk):
                xb[j, :, y:y + window, xx:xx + window] = fill
            scores = model(xb)[:, target]
            for j, (y, xx) in enumerate(chunk):
                total[y:y + window, xx:xx + window] += base - float(scores[j])
                count[y:y + window, xx:xx + window] += 1
            if progress is not None:
                progress(i + len(chunk), len(boxes))
    finally:
        model.train(was_training)
    return AttributionMap("occlusion", target, total / count.clamp(min=1),
                          {"window": window, "stride": stride, "fill": fill})

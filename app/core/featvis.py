"""Feature visualization by gradient ascent on the input (after Olah et al., Distill 2017).

Three separate parts, as in Lucent, but typed and with hooks that never outlive a call:

* the image parameterisation: a Fourier spectrum scaled by 1/frequency (so optimisation favours
  smooth images), decorrelated colour, a sigmoid to [0, 1];
* the objective: a conv channel (mean over positions), a single neuron (one position of a channel),
  a linear unit, a class logit, or a whole layer (DeepDream: mean squared activation), optionally
  with a diversity term that pushes several images of one objective apart (Gram-matrix cosine);
* robustness transforms applied before every step: padding, jitter, random scale, random rotation.

Everything is seeded; a run is deterministic for a given seed and settings.
"""

from __future__ import annotations

import copy
import functools
import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from app.core.probe import capture, forward_until

OBJECTIVES = ("channel", "neuron", "unit", "class", "layer")

# Square root of the colour correlation of natural images (ImageNet statistics, as used by Lucid).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_COLOR_CONV = (_COLOR_SQRT / 4.0)[:, :, None, None]  # out (d) x in (c) x 1 x 1


@dataclass(frozen=True)
class Objective:
    """What to maximise: ``kind`` in OBJECTIVES, at ``layer``; ``channel`` (or unit / class index);
    ``y``, ``x`` for a neuron (default: the centre)."""

    kind: str
    layer: str
    channel: int = 0
    y: int | None = None
    x: int | None = None

    def describe(self) -> str:
        if self.kind == "layer":
            return f"layer {self.layer} (DeepDream)"
        if self.kind == "neuron":
            return f"{self.layer} channel {self.channel} at ({self.y}, {self.x})"
        return f"{self.layer} {self.kind} {self.channel}"


@dataclass(frozen=True)
class Settings:
    """Optimisation settings; see :func:`default_settings` for per-model defaults."""

    size: int = 32
    steps: int = 256
    lr: float = 0.05
    decay: float = 1.0
    pad: int = 2
    jitter: int = 1
    scales: tuple[float, ...] = (0.95, 1.0, 1.05)
    angles: tuple[float, ...] = (-5.0, 0.0, 5.0)
    images: int = 1
    diversity: float = 0.0
    seed: int = 0

    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


def default_settings(input_size: int, **overrides: object) -> Settings:
    """Defaults tuned by input size: a 32x32 CIFAR network needs little jitter and no large
    rotations (each pixel is a big share of the image); a 224x224 network wants more of both."""
    if input_size <= 64:
        base = Settings(size=input_size, steps=256, lr=0.05, pad=2, jitter=1, scales=(0.95, 1.0, 1.05),
                        angles=(-5.0, 0.0, 5.0))
    else:
        base = Settings(size=input_size, steps=128, lr=0.05, pad=12, jitter=8,
                        scales=tuple(1 + (i - 5) / 50 for i in range(11)), angles=tuple(float(a) for a in range(-10, 11)))
    return Settings(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class Result:
    """Images in [0, 1] (N, 3, H, W), the objective after every step, and how the run ended."""

    images: torch.Tensor
    history: list[float] = field(default_factory=list)
    steps_done: int = 0
    cancelled: bool = False


def _inverse_dft_matrices(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real matrices with ``irfft2(X, norm="ortho") == rows @ regroup(X_interleaved @ cols)``.

    ``cols`` (2K x 2W) takes each row's K half-spectrum values, real and imaginary parts
    interleaved, to the real inverse transform along x of (X) and of (i X); ``rows`` (H x 2H) then
    does the complex inverse transform along y of both at once. Like ``irfft``, it ignores the
    imaginary parts of the DC and Nyquist columns (their sines are zero).
    """
    h = w = size
    k = w // 2 + 1
    ky = torch.arange(h, dtype=torch.float64)
    ang_y = 2 * math.pi * ky[:, None] * ky[None, :] / h
    rows = torch.cat([torch.cos(ang_y), -torch.sin(ang_y)], 1) / math.sqrt(h)  # [Re F | -Im F]
    kx = torch.arange(k, dtype=torch.float64)[:, None]
    ang_x = 2 * math.pi * kx * torch.arange(w, dtype=torch.float64)[None, :] / w
    c = torch.full((k, 1), 2.0, dtype=torch.float64)
    c[0] = 1.0
    if w % 2 == 0:
        c[-1] = 1.0
    re, im = c * torch.cos(ang_x) / math.sqrt(w), -c * torch.sin(ang_x) / math.sqrt(w)
    cols = torch.zeros(2 * k, 2 * w, dtype=torch.float64)
    cols[0::2, :w], cols[1::2, :w] = re, im  # real part of the x-transform of X
    cols[0::2, w:], cols[1::2, w:] = -im, re  # ... of i X (its imaginary part, negated: see rows)
    return rows.float(), cols.float()


@functools.lru_cache(maxsize=16)
def _image_matrices(size: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of :class:`FourierImage`'s matrix path, for ``pad`` zero rows / columns around
    each channel's output (after the sigmoid, exactly the grey border that padding would add), the
    colour step folded into the y-transform: one (3H' x 3*2H) matrix for all channels. Shared,
    read-only constants, made outside inference mode so that autograd may save them whoever asks first."""
    with torch.inference_mode(False):
        return _build_image_matrices(size, pad)


def _build_image_matrices(size: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = _inverse_dft_matrices(size)
    k = size // 2 + 1
    rows_p = torch.zeros(size + 2 * pad, 2 * size)
    rows_p[pad:pad + size] = rows
    cols_p = torch.zeros(2 * k, 2, size + 2 * pad)
    cols_p[:, :, pad:pad + size] = cols.view(2 * k, 2, size)
    return torch.kron(_COLOR_CONV[:, :, 0, 0], rows_p), cols_p.view(2 * k, -1)


class FourierImage(nn.Module):
    """Images parameterised by a 1/f-scaled spectrum with decorrelated colour.

    Up to 64x64 the inverse FFT and the colour step run as two small real matrix products: at
    32x32 these cost a fraction of pocketfft's per-call overhead, forward and backward.
    """

    MATRIX_MAX = 64

    def __init__(self, n: int, size: int, decay: float, gen: torch.Generator) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freq = torch.sqrt(fx * fx + fy * fy)
        self.register_buffer("scale", 1.0 / torch.maximum(freq, torch.tensor(1.0 / size)) ** decay)
        self.spectrum = nn.Parameter(torch.randn(n, 3, size, size // 2 + 1, 2, generator=gen) * 0.01)
        self.size = size
        self.use_matrices = size <= self.MATRIX_MAX
        if self.use_matrices:
            self.scale_il = self.scale.repeat_interleave(2, dim=1)  # per interleaved (re, im) column

    def forward(self, pad: int = 0) -> torch.Tensor:
        """The images in [0, 1] (N, 3, H, W), with a grey border of ``pad`` pixels if asked."""
        if not self.use_matrices:
            spec = torch.view_as_complex(self.spectrum) * self.scale
            img = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")
            # decorrelated colour -> RGB as one 1x1 convolution (the 1/4 of the spectrum folded in)
            out = torch.sigmoid(F.conv2d(img, _COLOR_CONV))
            return F.pad(out, (pad,) * 4, mode="constant", value=0.5) if pad else out
        rows, cols = _image_matrices(self.size, pad)
        n, s, w = self.spectrum.shape[0], self.size, self.size + 2 * pad
        x = self.spectrum.reshape(n, 3, s, -1) * self.scale_il  # (n, 3, H, 2K), re/im interleaved
        z = (x @ cols).view(n, 3, s, 2, w).transpose(2, 3).reshape(n, 6 * s, w)
        return torch.sigmoid((rows @ z).view(n, 3, w, w))  # colour decorrelated by ``rows``


class _Transforms:
    """Robustness transforms, one random draw per step: jitter, random scale and rotation of the
    grey-padded image (:class:`FourierImage` adds the border), resampled to the network's input size.

    Jitter, scale and rotation are one affine map, so a step costs one ``grid_sample``; the
    sampling grids are computed once per (scale, angle). Jitter is a shift of the grid, the
    same as rolling the padded image while the samples stay on it; beyond its edge they reflect
    (grey padding) where a roll would wrap the far side of the picture in.
    """

    def __init__(self, s: Settings, n: int, size: int, out: int, gen: torch.Generator) -> None:
        self.s, self.n, self.out = s, n, out
        self.padded = size + 2 * s.pad
        self.ratio = size / self.padded  # the output covers the un-padded area at scale 1
        # the per-step draws come from a Python generator seeded from the run's: no tensor per draw
        self.rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=gen)))
        self._grids: dict[tuple[int, int, int, int], torch.Tensor] = {}
        self._cache_shifted = out <= 64  # small grids: keep one per jitter offset too

    def _grid(self, si: int, ai: int, dy: int = 0, dx: int = 0) -> torch.Tensor:
        g = self._grids.get((si, ai, dy, dx))
        if g is not None:
            return g
        base = self._grids.get((si, ai, 0, 0))
        if base is None:
            scale, angle = self.s.scales[si], math.radians(self.s.angles[ai])
            cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
            theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(self.n, 2, 3)
            base = F.affine_grid(theta, [self.n, 3, self.out, self.out], align_corners=False) * self.ratio
            self._grids[(si, ai, 0, 0)] = base
        if not (dy or dx):
            return base
        # content moves by (dy, dx) pixels: sample (dy, dx) pixels back, in [-1, 1] units
        g = base - torch.tensor([2.0 * dx / self.padded, 2.0 * dy / self.padded])
        if self._cache_shifted:
            self._grids[(si, ai, dy, dx)] = g
        return g

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: the images with their grey border of ``pad`` pixels already on (FourierImage(pad))."""
        s, rng = self.s, self.rng
        si, ai = rng.randrange(len(s.scales)), rng.randrange(len(s.angles))
        dy, dx = (rng.randint(-s.jitter, s.jitter), rng.randint(-s.jitter, s.jitter)) if s.jitter else (0, 0)
        grid = self._grid(si, ai, dy, dx)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def objective_value(obj: Objective, act: torch.Tensor) -> torch.Tensor:
    """Per-image value of the objective from the layer's output ``act`` (N, C, H, W) or (N, F)."""
    if obj.kind == "layer":
        return (act ** 2).flatten(1).mean(1)
    if not 0 <= obj.channel < act.shape[1]:
        raise ValueError(f"channel {obj.channel} out of range 0..{act.shape[1] - 1} for {obj.layer}")
    if act.dim() == 2:
        return act[:, obj.channel]
    if obj.kind == "neuron":
        h, w = act.shape[2:]
        y = h // 2 if obj.y is None else obj.y
        x = w // 2 if obj.x is None else obj.x
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"position ({y}, {x}) is outside the {h}x{w} map of {obj.layer}")
        return act[:, obj.channel, y, x]
    return act[:, obj.channel].flatten(1).mean(1)


def _diversity(act: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of the images' Gram matrices (lower = more diverse)."""
    n = act.shape[0]
    if n < 2 or act.dim() != 4:
        return act.new_zeros(())
    flat = act.flatten(2)
    gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
    gram = F.normalize(gram, dim=1)
    sim = gram @ gram.T
    return (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))


class _Adam:
    """Adam (Kingma & Ba; torch.optim.Adam's update, no weight decay) as six in-place tensor
    operations per parameter: for one small image tensor, ``torch.optim.Adam.step``'s bookkeeping
    (step tensors, hooks, parameter groups) costs more than the update itself (~0.25 ms a step)."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: tuple[torch.Tensor, ...]) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, v.sqrt().div_(c2).add_(self.eps), value=-self.lr / c1)


def working_copy(model: nn.Module) -> nn.Module:
    """A private copy of a served model to optimise images against: channels-last, so that the
    larger batch-1 convolutions of the ascent (cifarnet: the stem and block1.conv1, the costliest)
    run on oneDNN rather than PyTorch's im2col path (about 1.4x more steps per second on cifarnet)."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last).eval()


def render(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], objective: Objective,
           settings: Settings, *, input_size: int,
           progress: Callable[[int, float, torch.Tensor], None] | None = None, every: int = 8,
           should_stop: Callable[[], bool] | None = None) -> Result:
    """Optimise ``settings.images`` images to maximise ``objective``.

    ``progress(step, value, images)`` is called every ``every`` steps and at the end;
    ``should_stop()`` is checked before every step (a cancelled run returns ``cancelled=True``).
    """
    if objective.kind not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    gen = torch.Generator().manual_seed(settings.seed)
    param = FourierImage(settings.images, settings.size, settings.decay, gen)
    transform = _Transforms(settings, settings.images, settings.size, input_size, gen)
    # (x - mean) / std as one multiply-add
    inv_sd = 1.0 / torch.tensor(std).view(1, 3, 1, 1)
    shift = -torch.tensor(mean).view(1, 3, 1, 1) * inv_sd
    layer = objective.layer
    result = Result(images=torch.empty(0))
    was_training = model.training
    # Only the image is optimised: with the weights frozen, backward skips every weight gradient
    # (about half of a conv layer's backward cost), and the model's .grad fields stay untouched.
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()
    params = list(param.parameters())
    opt = _Adam(params, lr=settings.lr)
    try:
        # The pass stops at the objective's layer; a class logit needs the whole network.
        until = nullcontext(model) if objective.kind == "class" else forward_until(model, layer)
        with torch.inference_mode(False), torch.enable_grad(), until as run:
            for step in range(settings.steps):
                if should_stop is not None and should_stop():
                    result.cancelled = True
                    break
                x = torch.addcmul(shift, transform(param(settings.pad)), inv_sd)
                act = run(x)
                value = objective_value(objective, act)
                value_mean = value.mean()
                loss = -value_mean
                if settings.diversity and settings.images > 1:
                    loss = loss + settings.diversity * _diversity(act)
                opt.step(torch.autograd.grad(loss, params))
                result.history.append(float(value_mean.detach()))
                result.steps_done = step + 1
                if progress is not None and (step + 1) % every == 0:
                    progress(step + 1, result.history[-1], param().detach())
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    with torch.no_grad():
        result.images = param().detach()
    if progress is not None and not result.cancelled:
        progress(result.steps_done, result.history[-1] if result.history else 0.0, result.images)
    return result


@torch.no_grad()
def evaluate(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], objective: Objective,
             images: torch.Tensor, input_size: int) -> torch.Tensor:
    """The objective's value on given [0, 1] images (no transforms): how strongly they activate it."""
    x = images if images.shape[-1] == input_size else F.interpolate(images, size=(input_size, input_size),
                                                                   mode="bilinear", align_corners=False)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with capture(model, [objective.layer]) as acts:
        out = model(x)
    return objective_value(objective, out if objective.kind == "class" else acts[objective.layer])

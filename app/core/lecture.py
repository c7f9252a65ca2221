"""The lecture's arithmetic: convolution step by step, output sizes, pooling, volume convolution,
parameter counts and hand-made filters on a photo.

Pure functions over nested tuples of numbers (exact for integers, like the deck's figures), numpy
arrays and torch modules; no HTTP, no templates. Results are frozen dataclasses. Every function
checks its arguments and raises :class:`LectureError` with a ``code`` (and the numbers involved) that
the web layer translates; ``str(error)`` is the English message.

Conventions (the same as ``torch.nn.functional``):

* convolution is cross-correlation: ``out[i][j] = Σ_a Σ_b x_pad[i·S + a][j·S + b] · k[a][b]``;
* output size of a convolution or pooling: ``⌊(n + 2p − f) / S⌋ + 1`` (no ``ceil_mode``);
* zero padding, square strides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from app.core.decode import limit_side
from app.core.probe import summarize

Number = int | float
Row = tuple[Number, ...]
Matrix = tuple[Row, ...]
Volume = tuple[Matrix, ...]

# -- limits (the API and the pages share them) -------------------------------------------------
MAX_CONV_N = 64  # step-by-step convolution: input side
MAX_CONV_F = 7  # kernel side
MAX_PAD = 6
MAX_STRIDE = 8
MAX_VOL_N = 32
MAX_VOL_C = 8
MAX_VOL_K = 16
MAX_POOL_N = 64
MAX_POOL_SIZE = 8
MAX_UPSAMPLED = 128
MAX_ABS_VALUE = 1e9
MAX_IMAGE_SIDE = 20_000
MAX_CHANNELS = 64
MAX_HIDDEN = 1_000_000
MAX_CNN_N = 4096
MAX_CNN_F = 15
MAX_CNN_M = 100_000

# -- the deck's figures ---------------------------------------------------------------------------
DECK_INPUT: Matrix = (
    (1, 7, 7, 8, 9, 4, 2, 6),
    (3, 8, 6, 3, 4, 9, 6, 0),
    (4, 7, 4, 7, 0, 1, 1, 4),
    (6, 6, 2, 6, 3, 6, 2, 5),
    (8, 5, 1, 2, 2, 0, 6, 3),
    (0, 5, 5, 4, 2, 7, 9, 3),
    (6, 3, 9, 1, 9, 6, 0, 9),
    (1, 4, 0, 5, 2, 1, 0, 1),
)
DECK_KERNEL: Matrix = ((3, 3, 5), (2, 1, 1), (3, 0, 4))
DECK_POOL_INPUT: Matrix = ((1, 7, 7, 2), (3, 8, 6, 3), (4, 7, 4, 7), (6, 6, 2, 6))
DECK_POOL_PRINTED: Matrix = ((8, 6), (7, 7))  # what the slide prints (its top-right 6 is a slip: max is 7)

# -- errors ---------------------------------------------------------------------------------------
MESSAGES: dict[str, str] = {
    "empty": "The {name} is empty: give at least one row with at least one number.",
    "ragged": "The {name} is not rectangular: row {row} has {got} numbers but row 1 has {expected}.",
    "not_finite": "The {name} holds a value that is not a finite number, or whose size is above {max:g} "
                  "(row {row}, column {col}).",
    "too_big": "The {name} is {rows}×{cols}; at most {max}×{max} is accepted here.",
    "too_small": "The {name} must be at least {min} (got {value}).",
    "too_large": "The {name} must be at most {max} (got {value}).",
    "stride": "The stride S must be at least 1 (got {value}).",
    "padding": "The padding p must be 0 or more (got {value}).",
    "kernel_too_big": "The {krows}×{kcols} filter does not fit in the input padded with p = {p} "
                      "({rows}×{cols}): use a smaller filter or more padding.",
    "channels": "The input has {expected} channels but filter {filter} has {got}: a filter must be as deep "
                "as its input.",
    "channel_shapes": "All channels of the {name} must have the same size: channel {channel} is {got}, "
                      "channel 1 is {expected}.",
    "filter_shapes": "All filters must have the same size: filter {filter} is {got}, filter 1 is {expected}.",
    "bias_count": "There are {filters} filters but {got} biases: give exactly one bias per filter.",
    "pixel": "The output pixel (row {row}, column {col}) is outside the {rows}×{cols} output "
             "(rows and columns count from 0).",
    "odd_filter": "'Same' padding needs an odd filter size, but {name} = {value} is even.",
    "pool_too_big": "The {size}×{size} pooling window does not fit in the {rows}×{cols} input.",
    "upsampled_too_big": "Upsampling {rows}×{cols} by {factor} gives {out_rows}×{out_cols}; "
                         "at most {max}×{max} is produced here.",
    "unknown_filter": "Unknown filter '{value}'; the filters are: {valid}.",
    "not_a_number": "'{value}' is not a number (in the {name}).",
    "filter_or_kernel": "Give either the name of a filter or a kernel, not both.",
}


class LectureError(ValueError):
    """Invalid arguments. ``code`` names the problem; ``params`` fills the message template."""

    def __init__(self, code: str, **params: object) -> None:
        self.code = code
        self.params = params
        super().__init__(MESSAGES[code].format(**params))

    def __str__(self) -> str:
        return str(self.args[0])


# -- small helpers ---------------------------------------------------------------------------------
def fmt(v: Number) -> str:
    """A number as the lecture writes it: integers plain, other values with 4 significant digits."""
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.4g}"
    return str(v)


def _term(v: Number) -> str:
    s = fmt(v)
    return f"({s})" if s.startswith("-") else s


def check_matrix(m: Sequence[Sequence[Number]], name: str = "input", *, max_side: int = MAX_CONV_N) -> Matrix:
    """A rectangular, non-empty matrix of finite numbers, at most ``max_side`` a side, as tuples."""
    if len(m) == 0 or len(m[0]) == 0:
        raise LectureError("empty", name=name)
    cols = len(m[0])
    for i, row in enumerate(m):
        if len(row) != cols:
            raise LectureError("ragged", name=name, row=i + 1, got=len(row), expected=cols)
    if len(m) > max_side or cols > max_side:
        raise LectureError("too_big", name=name, rows=len(m), cols=cols, max=max_side)
    for i, row in enumerate(m):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                    or abs(v) > MAX_ABS_VALUE:
                raise LectureError("not_finite", name=name, row=i + 1, col=j + 1, max=MAX_ABS_VALUE)
    return tuple(tuple(row) for row in m)


def _check_int(value: int, name: str, lo: int, hi: int) -> int:
    if value < lo:
        raise LectureError("too_small", name=name, min=lo, value=value)
    if value > hi:
        raise LectureError("too_large", name=name, max=hi, value=value)
    return value


def _check_ps(padding: int, stride: int) -> None:
    if padding < 0:
        raise LectureError("padding", value=padding)
    if padding > MAX_PAD:
        raise LectureError("too_large", name="padding p", max=MAX_PAD, value=padding)
    if stride < 1:
        raise LectureError("stride", value=stride)
    if stride > MAX_STRIDE:
        raise LectureError("too_large", name="stride S", max=MAX_STRIDE, value=stride)


def shape(m: Matrix) -> tuple[int, int]:
    return len(m), len(m[0])


def pad(m: Matrix, p: int, value: Number = 0) -> Matrix:
    """Surround a matrix with ``p`` rows and columns of ``value`` (zeros: the deck's padding)."""
    if p == 0:
        return m
    cols = len(m[0]) + 2 * p
    edge = tuple(value for _ in range(cols))
    side = tuple(value for _ in range(p))
    return (edge,) * p + tuple(side + row + side for row in m) + (edge,) * p


# -- output size -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputSize:
    """``size = ⌊(n + 2p − f) / S⌋ + 1`` for an n×n input, f×f filter, padding p, stride S."""

    n: int
    f: int
    p: int
    s: int
    padded: int  # n + 2p
    size: int
    exact: bool  # (n + 2p − f) divisible by S: the last window touches the border

    @property
    def formula(self) -> str:
        """The formula with the numbers filled in, e.g. ``⌊(8 + 2·0 − 3)/1⌋ + 1 = 6``."""
        return f"⌊({self.n} + 2·{self.p} − {self.f})/{self.s}⌋ + 1 = {self.size}"


def output_size(n: int, f: int, p: int = 0, s: int = 1, *, max_n: int = MAX_CNN_N) -> OutputSize:
    """Output side of a convolution (or pooling): ``⌊(n + 2p − f)/S⌋ + 1``.

    Without padding and stride this is ``n − f + 1`` (10×10 with 3×3 gives 8×8); with padding p it is
    ``n + 2p − f + 1``; with stride S, ``⌊(n − f)/S + 1⌋``.
    """
    _check_int(n, "input size n", 1, max_n)
    _check_int(f, "filter size f", 1, max_n)
    if p < 0:
        raise LectureError("padding", value=p)
    _check_int(p, "padding p", 0, max_n)
    if s < 1:
        raise LectureError("stride", value=s)
    _check_int(s, "stride S", 1, max_n)
    if f > n + 2 * p:
        raise LectureError("kernel_too_big", krows=f, kcols=f, p=p, rows=n + 2 * p, cols=n + 2 * p)
    return OutputSize(n=n, f=f, p=p, s=s, padded=n + 2 * p, size=(n + 2 * p - f) // s + 1,
                      exact=(n + 2 * p - f) % s == 0)


# -- 2D convolution, step by step ------------------------------------------------------------------
@dataclass(frozen=True)
class ConvStep:
    """One output cell: the window at (top, left) of the padded input, its products and their sum."""

    index: int  # 0-based, row-major over the output
    row: int
    col: int
    top: int  # window position in the padded input
    left: int
    window: Matrix
    products: Matrix  # window[a][b] · kernel[a][b]
    total: Number

    def terms(self, kernel: Matrix) -> list[tuple[Number, Number]]:
        """(value, weight) pairs column by column, the order in which the deck writes the sum."""
        rows, cols = shape(kernel)
        return [(self.window[a][b], kernel[a][b]) for b in range(cols) for a in range(rows)]

    def expression(self, kernel: Matrix) -> str:
        """``1·3 + 3·2 + 4·3 + 7·3 + 8·1 + 7·0 + 7·5 + 6·1 + 4·4 = 107``."""
        return " + ".join(f"{_term(v)}·{_term(w)}" for v, w in self.terms(kernel)) + f" = {fmt(self.total)}"


@dataclass(frozen=True)
class Conv2dResult:
    """``out[i][j] = Σ_a Σ_b x_pad[i·S + a][j·S + b] · k[a][b]`` (cross-correlation, as torch)."""

    input: Matrix
    kernel: Matrix
    padding: int
    stride: int
    padded: Matrix
    output: Matrix
    steps: tuple[ConvStep, ...]

    @property
    def out_shape(self) -> tuple[int, int]:
        return shape(self.output)

    def size(self) -> OutputSize:
        """The output-size formula for the rows (the deck's matrices are square)."""
        return output_size(len(self.input), len(self.kernel), self.padding, self.stride)


def conv2d(x: Sequence[Sequence[Number]], kernel: Sequence[Sequence[Number]], padding: int = 0, stride: int = 1,
           *, max_n: int = MAX_CONV_N, max_f: int = MAX_CONV_F) -> Conv2dResult:
    """Convolve a matrix with a kernel, keeping every step.

    ``out[i][j] = Σ_a Σ_b x_pad[i·S + a][j·S + b] · k[a][b]``, with ``x_pad`` the input surrounded by
    ``p`` zeros; the output is ``(⌊(h + 2p − fh)/S⌋ + 1) × (⌊(w + 2p − fw)/S⌋ + 1)``. Integers stay exact.
    With the deck's 8×8 input and 3×3 kernel: out[0][0] = 107, out[0][1] = 156 (stride 2: 121).

    Raises:
        LectureError: empty, ragged or too large matrices, p < 0, S < 1, or a kernel larger than the
            padded input.
    """
    xm = check_matrix(x, "input", max_side=max_n)
    km = check_matrix(kernel, "kernel", max_side=max_f)
    _check_ps(padding, stride)
    (h, w), (fh, fw) = shape(xm), shape(km)
    if fh > h + 2 * padding or fw > w + 2 * padding:
        raise LectureError("kernel_too_big", krows=fh, kcols=fw, p=padding, rows=h + 2 * padding,
                           cols=w + 2 * padding)
    xp = pad(xm, padding)
    oh, ow = (h + 2 * padding - fh) // stride + 1, (w + 2 * padding - fw) // stride + 1
    steps: list[ConvStep] = []
    out: list[Row] = []
    for i in range(oh):
        row: list[Number] = []
        for j in range(ow):
            top, left = i * stride, j * stride
            window = tuple(xp[top + a][left:left + fw] for a in range(fh))
            products = tuple(tuple(window[a][b] * km[a][b] for b in range(fw)) for a in range(fh))
            total = sum(v for r in products for v in r)
            steps.append(ConvStep(index=len(steps), row=i, col=j, top=top, left=left, window=window,
                                  products=products, total=total))
            row.append(total)
        out.append(tuple(row))
    return Conv2dResult(input=xm, kernel=km, padding=padding, stride=stride, padded=xp, output=tuple(out),
                        steps=tuple(steps))


def _plain_conv(xp: Matrix, k: Matrix, stride: int) -> Matrix:
    """Cross-correlation of an already padded matrix (no checks, no steps)."""
    (h, w), (fh, fw) = shape(xp), shape(k)
    oh, ow = (h - fh) // stride + 1, (w - fw) // stride + 1
    return tuple(tuple(sum(xp[i * stride + a][j * stride + b] * k[a][b] for a in range(fh) for b in range(fw))
                       for j in range(ow)) for i in range(oh))


# -- convolution over volume -----------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelPart:
    """One input channel's share of one output pixel: Σ window · weights over the f×f slice."""

    channel: int
    window: Matrix
    weights: Matrix
    partial: Number


@dataclass(frozen=True)
class PixelDetail:
    """One filter at one output pixel: ``ReLU(Σ_c partial_c + b)``."""

    filter: int
    parts: tuple[ChannelPart, ...]
    bias: Number
    pre_activation: Number
    output: Number


@dataclass(frozen=True)
class VolumeResult:
    """K filters f×f×c over an h×w×c input: ``out_k = ReLU(Σ_c x_c ⋆ w_{k,c} + b_k)``, one map per filter.

    ``partial_sums[k][c]`` is the 2D map that channel c contributes to filter k; summing them over c and
    adding the bias gives ``pre_activation[k]``; ``output`` applies ReLU (or not).
    """

    input: Volume  # (c, h, w)
    filters: tuple[Volume, ...]  # (K, c, f, f)
    bias: tuple[Number, ...]
    padding: int
    stride: int
    relu: bool
    partial_sums: tuple[Volume, ...]  # (K, c, h', w')
    pre_activation: Volume  # (K, h', w')
    output: Volume  # (K, h', w')
    pixel: tuple[int, int]
    detail: tuple[PixelDetail, ...]  # one per filter, at ``pixel``

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(h', w', K) in the lecture's order: height × width × maps."""
        return len(self.output[0]), len(self.output[0][0]), len(self.output)


def _check_volume(v: Sequence[Sequence[Sequence[Number]]], name: str, max_c: int, max_side: int) -> Volume:
    if len(v) == 0:
        raise LectureError("empty", name=name)
    if len(v) > max_c:
        raise LectureError("too_large", name=f"number of channels of the {name}", max=max_c, value=len(v))
    mats = tuple(check_matrix(m, name, max_side=max_side) for m in v)
    for c, m in enumerate(mats):
        if shape(m) != shape(mats[0]):
            raise LectureError("channel_shapes", name=name, channel=c + 1, got="×".join(map(str, shape(m))),
                               expected="×".join(map(str, shape(mats[0]))))
    return mats


def conv_volume(x: Sequence[Sequence[Sequence[Number]]], filters: Sequence[Sequence[Sequence[Sequence[Number]]]],
                bias: Sequence[Number] | None = None, padding: int = 0, stride: int = 1, *, relu: bool = True,
                pixel: tuple[int, int] = (0, 0)) -> VolumeResult:
    """Convolution over volume with per-channel partial sums.

    ``out_k[i][j] = ReLU(b_k + Σ_c Σ_a Σ_b x_c,pad[i·S + a][j·S + b] · w_k,c[a][b])``: one 2D map per
    filter (the filter is as deep as the input), K filters give h'×w'×K. Same as
    ``relu(torch.nn.functional.conv2d(x[None], w, b, stride, padding))``.
    """
    xv = _check_volume(x, "input", MAX_VOL_C, MAX_VOL_N)
    if len(filters) == 0:
        raise LectureError("empty", name="filters")
    if len(filters) > MAX_VOL_K:
        raise LectureError("too_large", name="number of filters K", max=MAX_VOL_K, value=len(filters))
    fv = tuple(_check_volume(f, "filter", MAX_VOL_C, MAX_CONV_F) for f in filters)
    for k, f in enumerate(fv):
        if len(f) != len(xv):
            raise LectureError("channels", expected=len(xv), filter=k + 1, got=len(f))
        if shape(f[0]) != shape(fv[0][0]):
            raise LectureError("filter_shapes", filter=k + 1, got="×".join(map(str, shape(f[0]))),
                               expected="×".join(map(str, shape(fv[0][0]))))
    b = tuple(bias) if bias is not None else tuple(0 for _ in fv)
    if len(b) != len(fv):
        raise LectureError("bias_count", filters=len(fv), got=len(b))
    check_matrix([list(b)], "bias", max_side=MAX_VOL_K)
    _check_ps(padding, stride)
    (h, w), (fh, fw) = shape(xv[0]), shape(fv[0][0])
    if fh > h + 2 * padding or fw > w + 2 * padding:
        raise LectureError("kernel_too_big", krows=fh, kcols=fw, p=padding, rows=h + 2 * padding,
                           cols=w + 2 * padding)
    padded = tuple(pad(m, padding) for m in xv)
    partials = tuple(tuple(_plain_conv(padded[c], f[c], stride) for c in range(len(xv))) for f in fv)
    oh, ow = len(partials[0][0]), len(partials[0][0][0])
    pre = tuple(tuple(tuple(sum(pk[c][i][j] for c in range(len(xv))) + b[k] for j in range(ow)) for i in range(oh))
                for k, pk in enumerate(partials))
    act = tuple(tuple(tuple((v if v > 0 else 0 * v) if relu else v for v in row) for row in m) for m in pre)
    r, c0 = pixel
    if not (0 <= r < oh and 0 <= c0 < ow):
        raise LectureError("pixel", row=r, col=c0, rows=oh, cols=ow)
    top, left = r * stride, c0 * stride
    detail = tuple(
        PixelDetail(filter=k, parts=tuple(
            ChannelPart(channel=c, window=tuple(padded[c][top + a][left:left + fw] for a in range(fh)),
                        weights=f[c], partial=partials[k][c][r][c0]) for c in range(len(xv))),
            bias=b[k], pre_activation=pre[k][r][c0], output=act[k][r][c0])
        for k, f in enumerate(fv))
    return VolumeResult(input=xv, filters=fv, bias=b, padding=padding, stride=stride, relu=relu,
                        partial_sums=partials, pre_activation=pre, output=act, pixel=(r, c0), detail=detail)


# -- pooling and upsampling ------------------------------------------------------------------------
PoolMode = Literal["max", "avg"]


@dataclass(frozen=True)
class PoolWindow:
    """One output cell of a pooling: its window (top-left in the input), values and result."""

    row: int
    col: int
    top: int
    left: int
    values: Matrix
    result: Number


@dataclass(frozen=True)
class PoolResult:
    """``out[i][j] = max`` (or mean) of ``x[i·S : i·S + size][j·S : j·S + size]``; no parameters to learn."""

    input: Matrix
    mode: PoolMode
    size: int
    stride: int
    output: Matrix
    windows: tuple[PoolWindow, ...]


def pool2d(x: Sequence[Sequence[Number]], size: int = 2, stride: int | None = None, mode: PoolMode = "max",
           *, max_n: int = MAX_POOL_N) -> PoolResult:
    """Max or average pooling (no padding, floor), as ``torch.nn.functional.max_pool2d`` / ``avg_pool2d``.

    Output side ``⌊(n − size)/S⌋ + 1``. The deck's 4×4 example with size 2, stride 2 gives
    ``[[8, 7], [7, 7]]`` (the slide prints 6 for the top-right cell, whose window 7 2 / 6 3 has max 7).
    """
    xm = check_matrix(x, "input", max_side=max_n)
    stride = size if stride is None else stride
    _check_int(size, "pooling size", 1, MAX_POOL_SIZE)
    if stride < 1:
        raise LectureError("stride", value=stride)
    _check_int(stride, "stride S", 1, MAX_STRIDE)
    if mode not in ("max", "avg"):
        raise LectureError("unknown_filter", value=mode, valid="max, avg")
    h, w = shape(xm)
    if size > h or size > w:
        raise LectureError("pool_too_big", size=size, rows=h, cols=w)
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    windows: list[PoolWindow] = []
    out: list[Row] = []
    for i in range(oh):
        row: list[Number] = []
        for j in range(ow):
            vals = tuple(xm[i * stride + a][j * stride:j * stride + size] for a in range(size))
            flat = [v for r in vals for v in r]
            res: Number = max(flat) if mode == "max" else sum(flat) / len(flat)
            windows.append(PoolWindow(row=i, col=j, top=i * stride, left=j * stride, values=vals, result=res))
            row.append(res)
        out.append(tuple(row))
    return PoolResult(input=xm, mode=mode, size=size, stride=stride, output=tuple(out), windows=tuple(windows))


def upsample_nearest(x: Sequence[Sequence[Number]], factor: int = 2) -> Matrix:
    """Nearest-neighbour upsampling: each value copied into a factor×factor block
    (``torch.nn.functional.interpolate(mode="nearest", scale_factor=factor)``)."""
    xm = check_matrix(x, "input", max_side=MAX_POOL_N)
    _check_int(factor, "upsampling factor", 1, MAX_POOL_SIZE)
    h, w = shape(xm)
    if h * factor > MAX_UPSAMPLED or w * factor > MAX_UPSAMPLED:
        raise LectureError("upsampled_too_big", rows=h, cols=w, factor=factor, out_rows=h * factor,
                           out_cols=w * factor, max=MAX_UPSAMPLED)
    return tuple(tuple(row[j // factor] for j in range(w * factor)) for row in xm for _ in range(factor))


# -- fully connected vs convolutional parameters ---------------------------------------------------
@dataclass(frozen=True)
class FcVsConv:
    """First hidden layer on raw pixels vs one conv layer on the same input.

    Fully connected: every one of the H neurons sees all ``width·height·channels`` inputs:
    ``weights = width·height·channels·H`` (80×80×3: 19,200·H; 1280×720×3: 2,764,800·H) plus H biases.
    Convolutional: K filters f×f×c: ``(f·f·c + 1)·K``, whatever the image size.
    """

    width: int
    height: int
    channels: int
    hidden: int
    inputs: int  # width·height·channels: the weights of ONE hidden neuron
    fc_weights: int
    fc_biases: int
    fc_total: int
    conv_f: int
    conv_k: int
    conv_params: int

    @property
    def ratio(self) -> float:
        return self.fc_total / self.conv_params

    @property
    def fc_formula(self) -> str:
        return f"{self.width}·{self.height}·{self.channels}·H = {self.inputs:,}·H"

    @property
    def conv_formula(self) -> str:
        return f"({self.conv_f}·{self.conv_f}·{self.channels} + 1)·{self.conv_k} = {self.conv_params:,}"


def fc_vs_conv(width: int, height: int, channels: int = 3, hidden: int = 1, *, f: int = 5, k: int = 8) -> FcVsConv:
    """Parameter counts of a fully connected first layer and of a conv layer on a width×height×channels image."""
    _check_int(width, "width", 1, MAX_IMAGE_SIDE)
    _check_int(height, "height", 1, MAX_IMAGE_SIDE)
    _check_int(channels, "number of channels", 1, MAX_CHANNELS)
    _check_int(hidden, "number of hidden neurons H", 1, MAX_HIDDEN)
    _check_int(f, "filter size f", 1, min(MAX_CNN_F, width, height))
    _check_int(k, "number of filters K", 1, 4096)
    inputs = width * height * channels
    return FcVsConv(width=width, height=height, channels=channels, hidden=hidden, inputs=inputs,
                    fc_weights=inputs * hidden, fc_biases=hidden, fc_total=inputs * hidden + hidden,
                    conv_f=f, conv_k=k, conv_params=(f * f * channels + 1) * k)


# -- a CNN end to end ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CnnLayer:
    """One stage of the lecture's small CNN: its output shape and parameters (with the formula)."""

    name: str
    kind: Literal["input", "conv", "pool", "flatten", "linear"]
    shape: tuple[int, ...]
    parameters: int
    formula: str
    filters: int | None = None
    f: int | None = None
    padding: int | None = None
    stride: int | None = None


@dataclass(frozen=True)
class CnnShapes:
    """input n×n×1 → conv1 (3 filters f1×f1, 'same') → pool1 2×2/2 → conv2 (5 filters f2×f2, 'same') →
    fc1 (M) → out (10)."""

    n: int
    f1: int
    f2: int
    m: int
    layers: tuple[CnnLayer, ...]

    @property
    def total(self) -> int:
        return sum(layer.parameters for layer in self.layers)


CNN_CONV1_FILTERS, CNN_CONV2_FILTERS, CNN_CLASSES = 3, 5, 10


def cnn_shapes(n: int, f1: int = 3, f2: int = 3, m: int = 100, *,
               num: Callable[[int], str] = "{:,}".format) -> CnnShapes:
    """Shapes and parameters of the lecture's end-to-end CNN for an n×n×1 input.

    'Same' padding ``p = (f − 1)/2`` keeps n×n (needs odd f); pooling 2×2, stride 2 gives ⌊n/2⌋;
    conv2 keeps it; fc1 sees ``⌊n/2⌋²·5`` inputs: ``(⌊n/2⌋²·5 + 1)·M`` parameters; out ``(M + 1)·10``.
    ``num`` writes the large numbers of the formulas (``12,500``; a page passes its language's).
    """
    _check_int(n, "input size n", 2, MAX_CNN_N)
    for name, f in (("f1", f1), ("f2", f2)):
        _check_int(f, name, 1, MAX_CNN_F)
        if f % 2 == 0:
            raise LectureError("odd_filter", name=name, value=f)
    _check_int(m, "number of neurons M", 1, MAX_CNN_M)
    k1, k2 = CNN_CONV1_FILTERS, CNN_CONV2_FILTERS
    p1, p2 = (f1 - 1) // 2, (f2 - 1) // 2
    h = output_size(n, 2, 0, 2).size
    flat = h * h * k2
    layers = (
        CnnLayer("input", "input", (n, n, 1), 0, "0"),
        CnnLayer("conv1", "conv", (n, n, k1), (f1 * f1 * 1 + 1) * k1, f"({f1}·{f1}·1 + 1)·{k1}", k1, f1, p1, 1),
        CnnLayer("pool1", "pool", (h, h, k1), 0, "0", None, 2, 0, 2),
        CnnLayer("conv2", "conv", (h, h, k2), (f2 * f2 * k1 + 1) * k2, f"({f2}·{f2}·{k1} + 1)·{k2}", k2, f2, p2, 1),
        CnnLayer("flatten", "flatten", (flat,), 0, "0"),
        CnnLayer("fc1", "linear", (m,), (flat + 1) * m, f"{num(flat)}·{num(m)} + {num(m)}"),
        CnnLayer("out", "linear", (CNN_CLASSES,), (m + 1) * CNN_CLASSES, f"{num(m)}·{CNN_CLASSES} + {CNN_CLASSES}"),
    )
    return CnnShapes(n=n, f1=f1, f2=f2, m=m, layers=layers)


# -- counting parameters ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamRow:
    """One module with its own parameters (``recurse=False``) and, for Conv/Linear/BatchNorm, the formula."""

    name: str
    type: str
    parameters: int
    formula: str | None
    output_shape: tuple[int, ...] | None = None
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    in_features: int | None = None
    out_features: int | None = None


@dataclass(frozen=True)
class ParamTable:
    """Rows and the total ``Σ p.numel()`` over the whole module."""

    rows: tuple[ParamRow, ...]
    total: int

    @property
    def rows_total(self) -> int:
        return sum(r.parameters for r in self.rows)


def parameter_formula(m: nn.Module) -> tuple[str, int] | None:
    """The parameter formula of a layer and its value, or None for types without one.

    * ``ConvNd``: ``(k₁·k₂·c_in/groups + 1)·c_out`` (without bias: ``k₁·k₂·c_in/groups·c_out``);
    * ``Linear``: ``in·out + out`` (without bias: ``in·out``);
    * ``BatchNorm``: ``2·C`` (scale γ and shift β; the running statistics are buffers, not parameters).
    """
    if isinstance(m, nn.modules.conv._ConvNd):
        ks = tuple(m.kernel_size)
        cin = m.in_channels // m.groups
        prod = math.prod(ks) * cin
        dims = "·".join(str(k) for k in ks) + f"·{cin}"
        if m.bias is not None:
            return f"({dims} + 1)·{m.out_channels}", (prod + 1) * m.out_channels
        return f"{dims}·{m.out_channels}", prod * m.out_channels
    if isinstance(m, nn.Linear):
        if m.bias is not None:
            return f"{m.in_features}·{m.out_features} + {m.out_features}", (m.in_features + 1) * m.out_features
        return f"{m.in_features}·{m.out_features}", m.in_features * m.out_features
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.affine:
            return f"2·{m.num_features}", 2 * m.num_features
        return "0", 0
    return None


def _tuple(v: object) -> tuple[int, ...] | None:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, tuple | list) and all(isinstance(i, int) for i in v):
        return tuple(v)
    return None


def parameter_table(module: nn.Module, *, names: Iterable[str] | None = None,
                    shapes: Mapping[str, tuple[int, ...]] | None = None) -> ParamTable:
    """Every module that owns parameters (or the named ones, in that order), with formulas and shapes.

    The total is ``Σ p.numel()`` over ``module.parameters()``; without ``names`` the rows add up to it.
    """
    mods = dict(module.named_modules())
    if names is None:
        chosen = [n for n, m in mods.items() if any(True for _ in m.parameters(recurse=False))]
    else:
        chosen = list(names)
        missing = [n for n in chosen if n not in mods]
        if missing:
            from app.core.probe import UnknownLayerError
            raise UnknownLayerError(missing[0], [n for n in mods if n])
    rows = []
    for n in chosen:
        m = mods[n]
        own = sum(p.numel() for p in m.parameters(recurse=False))
        f = parameter_formula(m)
        rows.append(ParamRow(
            name=n or "(model)", type=type(m).__name__, parameters=own, formula=f[0] if f else None,
            output_shape=(shapes or {}).get(n), kernel_size=_tuple(getattr(m, "kernel_size", None)),
            stride=_tuple(getattr(m, "stride", None)), in_channels=getattr(m, "in_channels", None),
            out_channels=getattr(m, "out_channels", None), in_features=getattr(m, "in_features", None),
            out_features=getattr(m, "out_features", None)))
    return ParamTable(rows=tuple(rows), total=sum(p.numel() for p in module.parameters()))


LECTURE_NET_ROWS = ("conv1", "pool1", "conv2", "pool2", "fc3", "fc4", "out")


@lru_cache(maxsize=1)
def lecture_net_table() -> ParamTable:
    """The lecture network's table (LeNet-5 style on 32×32×3): 608, 0, 3,216, 0, 48,120, 10,164, 850;
    total 62,958 = ``Σ p.numel()`` of :class:`app.core.nets.LectureNet`."""
    from app.core.nets import LectureNet

    net = LectureNet()
    shapes = {li.name: li.output_shape for li in summarize(net, (3, 32, 32))}
    return parameter_table(net, names=LECTURE_NET_ROWS, shapes=shapes)


# -- hand-made filters on a photo ------------------------------------------------------------------
Display = Literal["grey", "signed", "magnitude"]


@dataclass(frozen=True)
class HandFilter:
    """A named filter: one kernel (``divisor`` scales it), or two combined as ``√(a² + b²)``."""

    name: str
    kernels: tuple[Matrix, ...]
    divisor: int = 1
    display: Display = "signed"


HAND_FILTERS: dict[str, HandFilter] = {f.name: f for f in (
    # The deck calls this one the "horizontal" filter: it runs across the columns and answers vertical edges.
    HandFilter("vertical_edges", (((1, 0, -1), (1, 0, -1), (1, 0, -1)),)),
    # ... and this one the "vertical" filter: it runs down the rows and answers horizontal edges.
    HandFilter("horizontal_edges", (((1, 1, 1), (0, 0, 0), (-1, -1, -1)),)),
    HandFilter("edges", (((1, 0, -1), (1, 0, -1), (1, 0, -1)), ((1, 1, 1), (0, 0, 0), (-1, -1, -1))),
               display="magnitude"),
    HandFilter("sobel_x", (((1, 0, -1), (2, 0, -2), (1, 0, -1)),)),
    HandFilter("sobel_y", (((1, 2, 1), (0, 0, 0), (-1, -2, -1)),)),
    HandFilter("sobel", (((1, 0, -1), (2, 0, -2), (1, 0, -1)), ((1, 2, 1), (0, 0, 0), (-1, -2, -1))),
               display="magnitude"),
    HandFilter("blur", (((1, 2, 1), (2, 4, 2), (1, 2, 1)),), divisor=16, display="grey"),
    HandFilter("sharpen", (((0, -1, 0), (-1, 5, -1), (0, -1, 0)),), display="grey"),
    HandFilter("identity", (((0, 0, 0), (0, 1, 0), (0, 0, 0)),), display="grey"),
)}


def hand_filter(name: str) -> HandFilter:
    try:
        return HAND_FILTERS[name]
    except KeyError:
        raise LectureError("unknown_filter", value=name, valid=", ".join(HAND_FILTERS)) from None


def custom_filter(kernel: Sequence[Sequence[Number]]) -> HandFilter:
    """A user's kernel: signed display when its weights add up to 0 (an edge detector), grey otherwise."""
    km = check_matrix(kernel, "kernel", max_side=MAX_CONV_F)
    total = sum(v for r in km for v in r)
    return HandFilter("custom", (km,), display="signed" if abs(total) < 1e-9 else "grey")


@dataclass(frozen=True)
class FilteredPhoto:
    """A filter applied to the grey version of a photo (same size: replicated borders).

    ``unit`` maps the output to [0, 1] for display: ``signed`` puts −m at 0, 0 at ½ and +m at 1
    (m = the 99.5th percentile of |output|, beyond it values are clipped); ``magnitude`` maps [0, m] to
    [0, 1]; ``grey`` shows [0, 1] (intensities) as they are, clipped.
    """

    filter: HandFilter
    grey: np.ndarray  # (H, W) float32 in [0, 1]
    output: np.ndarray  # (H, W) float32, the raw filter response
    unit: np.ndarray  # (H, W) float32 in [0, 1]
    lo: float  # the value shown at 0
    hi: float  # the value shown at 1

    @property
    def display(self) -> Display:
        return self.filter.display


def grey_array(photo: Image.Image, max_side: int = 384) -> np.ndarray:
    """Luma (ITU-R 601, Pillow's ``L``) of a photo scaled down to ``max_side``, as float32 in [0, 1]."""
    im = limit_side(photo.convert("RGB"), max_side).convert("L")
    return np.asarray(im, dtype=np.float32) / 255.0


@torch.no_grad()
def apply_filter(photo: Image.Image | np.ndarray, flt: HandFilter, *, max_side: int = 384) -> FilteredPhoto:
    """Convolve the grey photo with the filter (``torch.nn.functional.conv2d``, borders replicated).

    Two kernels a, b are combined as the edge strength ``√(a⋆x)² + (b⋆x)²``.
    """
    grey = photo if isinstance(photo, np.ndarray) else grey_array(photo, max_side)
    x = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float32))[None, None]
    outs = []
    for k in flt.kernels:
        w = torch.tensor(k, dtype=torch.float32)[None, None] / flt.divisor
        fh, fw = w.shape[-2:]
        xp = F.pad(x, ((fw - 1) // 2, fw // 2, (fh - 1) // 2, fh // 2), mode="replicate")
        outs.append(F.conv2d(xp, w)[0, 0])
    out = outs[0] if len(outs) == 1 else torch.sqrt(sum(o * o for o in outs))  # type: ignore[arg-type]
    y = out.numpy().astype(np.float32)
    if flt.display == "signed":
        m = float(np.percentile(np.abs(y), 99.5)) or float(np.abs(y).max()) or 1.0
        lo, hi = -m, m
    elif flt.display == "magnitude":
        lo, hi = 0.0, float(np.percentile(y, 99.5)) or float(y.max()) or 1.0
    else:
        lo, hi = 0.0, 1.0
    unit = np.clip((y - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return FilteredPhoto(filter=flt, grey=grey, output=y, unit=unit, lo=lo, hi=hi)


# -- example values ------------------------------------------------------------------------------
def random_matrix(rows: int, cols: int, seed: int, lo: int = 0, hi: int = 9) -> Matrix:
    """Integers in [lo, hi], reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return tuple(tuple(int(v) for v in r) for r in rng.integers(lo, hi + 1, size=(rows, cols)))


EXAMPLE_SEED = 22  # the first output pixel shows a positive map and one that ReLU sets to 0


def example_volume(seed: int, n: int = 5, c: int = 3, f: int = 3, k: int = 2) -> tuple[Volume, tuple[Volume, ...],
                                                                                        tuple[int, ...]]:
    """A small RGB input (0…9), K filters f×f×c (−1…1) and biases (−3…3), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    x = tuple(tuple(tuple(int(v) for v in r) for r in ch) for ch in rng.integers(0, 10, size=(c, n, n)))
    w = tuple(tuple(tuple(tuple(int(v) for v in r) for r in ch) for ch in flt)
              for flt in rng.integers(-1, 2, size=(k, c, f, f)))
    b = tuple(int(v) for v in rng.integers(-3, 4, size=k))
    return x, w, b


def resize_matrix(m: Matrix, rows: int, cols: int, fill: Number = 0) -> Matrix:
    """Keep the top-left part of ``m`` and fill new cells with ``fill`` (used when a size changes)."""
    return tuple(tuple(m[i][j] if i < len(m) and j < len(m[0]) else fill for j in range(cols)) for i in range(rows))

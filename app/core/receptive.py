"""Receptive fields, computed exactly from the layer stack.

One forward pass with hooks on every layer (each leaf module; a timm norm layer at the end of its
normalisation: :func:`app.core.probe.layer_modules`) records the modules in the order they run, with
the tensor each one reads and writes. Walking that record, every tensor gets a :class:`Geometry`:
for each output row (and column) the interval of input-image pixels it depends on. Per layer:

* ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d``: kernel, stride, dilation and padding. ``padding``
  may be a number, a pair, or PyTorch's ``"same"``/``"valid"``; timm's TensorFlow-"SAME" modules
  (``Conv2dSame``, ``MaxPool2dSame``, ``AvgPool2dSame``, ``Pad2dSame``) pad *asymmetrically* by an
  amount that depends on the input size: we compute the padding they apply at the size seen in the
  hook pass (``before = total // 2``, the rest after);
* ``ZeroPad2d`` / ``ConstantPad2d`` (and the other padding modules): a shift;
* ``AdaptiveAvgPool2d`` / ``AdaptiveMaxPool2d``: PyTorch's bins ``[floor(i*n/m), ceil((i+1)*n/m))``;
* a module whose output keeps the spatial size (BatchNorm, activations, Identity, Dropout ...):
  pointwise, the geometry passes through;
* vectors (F,): ``Flatten`` keeps, for every feature, the position it comes from; a pointwise
  module (activation, dropout) keeps the geometry; anything else (``Linear``) gives every output
  feature the union of the input's fields.

Two intervals are kept per position:

* the **field** (``tlo``/``thi``): the textbook receptive field, composed through the padding as if
  the image went on forever; it may start before 0 or end after the image;
* the **box** (``lo``/``hi``): the pixels the unit really depends on. Padding positions depend on
  nothing, so at every layer the window is clamped to the valid input positions before taking the
  union. This is the region where the gradient of the unit with respect to the input can be
  non-zero (``tests/test_receptive.py`` checks exactly that with autograd).

For the usual networks the box is the field clipped to the image; they differ only when a layer
drops trailing pixels (a stride that does not divide the size) and a later layer pads there.

Residual connections and other non-module operations (``x + shortcut``, ``torch.cat``) are not
seen by hooks: a module that reads a tensor no hooked module wrote gets the union of the
geometries of all tensors of that spatial size seen so far. For a sum of a branch and its
shortcut that is the branch's field, which contains the shortcut's. Modules that mix every
position through non-module operations (squeeze-and-excitation written as ``x * gate``) are not
modelled; the served models have none.

Coordinates: positions and pixels are 0-based; :meth:`LayerField.box` and :meth:`LayerField.field`
return half-open ``(x0, y0, x1, y1)`` like ``PIL.Image.crop``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.core.probe import layer_modules

_SAME_CLASSES = {"Conv2dSame", "Conv2dSameExport", "MaxPool2dSame", "AvgPool2dSame", "Pad2dSame"}


class UnsupportedLayerError(ValueError):
    """A layer whose spatial geometry this module cannot derive."""


@dataclass(frozen=True)
class Axis:
    """Geometry along one axis of one tensor: per position, the box and the field in image pixels.

    ``lo[i]..hi[i]`` (inclusive) is the box of position ``i`` (``lo > hi`` when it is empty);
    ``tlo[i]..thi[i]`` (inclusive) its field; ``jump`` the distance in pixels between the fields of
    neighbouring positions (the product of the strides so far), used to extend the field into
    padding; ``size`` the number of image pixels along the axis.
    """

    lo: np.ndarray
    hi: np.ndarray
    tlo: np.ndarray
    thi: np.ndarray
    jump: int
    size: int

    @property
    def n(self) -> int:
        return int(self.lo.shape[0])

    @classmethod
    def identity(cls, n: int) -> Axis:
        a = np.arange(n, dtype=np.int64)
        return cls(a, a.copy(), a.copy(), a.copy(), 1, n)

    def _t_at(self, i: int) -> tuple[int, int]:
        """The field of position ``i``, extended affinely beyond the tensor (into padding)."""
        if i < 0:
            return int(self.tlo[0]) + i * self.jump, int(self.thi[0]) + i * self.jump
        if i >= self.n:
            d = (i - self.n + 1) * self.jump
            return int(self.tlo[-1]) + d, int(self.thi[-1]) + d
        return int(self.tlo[i]), int(self.thi[i])

    def window(self, starts: Iterable[int], ends: Iterable[int], step: int, out_jump: int) -> Axis:
        """The geometry after a layer whose output position ``o`` reads input positions
        ``starts[o], starts[o] + step, ..., ends[o]`` (indices may lie in padding, outside ``0..n-1``)."""
        lo, hi, tlo, thi = [], [], [], []
        for a, b in zip(starts, ends):
            tlo.append(self._t_at(a)[0])
            thi.append(self._t_at(b)[1])
            # the valid taps: a + j*step within [0, n-1]
            first = a if a >= 0 else a + (-a + step - 1) // step * step
            last = b if b < self.n else b - (b - (self.n - 1) + step - 1) // step * step
            if first > last or first >= self.n or last < 0:
                lo.append(1)
                hi.append(0)
                continue
            taps = range(first, last + 1, step)
            los = [int(self.lo[t]) for t in taps if self.lo[t] <= self.hi[t]]
            his = [int(self.hi[t]) for t in taps if self.lo[t] <= self.hi[t]]
            if los:
                lo.append(min(los))
                hi.append(max(his))
            else:
                lo.append(1)
                hi.append(0)
        return Axis(np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64), np.array(tlo, dtype=np.int64),
                    np.array(thi, dtype=np.int64), out_jump, self.size)

    def union(self, n: int = 1) -> Axis:
        """``n`` positions that each cover every position of this axis."""
        ok = self.lo <= self.hi
        lo = int(self.lo[ok].min()) if ok.any() else 1
        hi = int(self.hi[ok].max()) if ok.any() else 0
        return Axis(np.full(n, lo), np.full(n, hi), np.full(n, int(self.tlo.min())), np.full(n, int(self.thi.max())),
                    self.jump * self.n, self.size)

    def take(self, idx: np.ndarray) -> Axis:
        """The positions ``idx`` (e.g. the position each feature of a flattened map comes from)."""
        return Axis(self.lo[idx], self.hi[idx], self.tlo[idx], self.thi[idx], self.jump, self.size)

    @staticmethod
    def merge(axes: list[Axis]) -> Axis:
        """Position-wise union of geometries of the same length."""
        lo = np.minimum.reduce([np.where(a.lo <= a.hi, a.lo, np.iinfo(np.int64).max) for a in axes])
        hi = np.maximum.reduce([np.where(a.lo <= a.hi, a.hi, np.iinfo(np.int64).min) for a in axes])
        empty = lo > hi
        lo, hi = np.where(empty, 1, lo), np.where(empty, 0, hi)
        return Axis(lo, hi, np.minimum.reduce([a.tlo for a in axes]), np.maximum.reduce([a.thi for a in axes]),
                    max(a.jump for a in axes), axes[0].size)


@dataclass(frozen=True)
class Geometry:
    """Geometry of one tensor.

    A map (C, H, W): ``y`` has H positions, ``x`` has W. A vector (F,) (``spatial`` False): both axes
    have F entries, the rows and columns that feature ``f`` depends on are ``y[f]`` and ``x[f]``.
    """

    y: Axis
    x: Axis
    spatial: bool = True

    def union(self, n: int) -> Geometry:
        """A vector of ``n`` features that each depend on everything this tensor depends on."""
        return Geometry(self.y.union(n), self.x.union(n), spatial=False)

    def flatten(self, channels: int) -> Geometry:
        """``Flatten`` of a (C, H, W) map: feature ``c*H*W + i*W + j`` depends on position (i, j)."""
        h, w = self.y.n, self.x.n
        pos = np.tile(np.arange(h * w), channels)
        return Geometry(self.y.take(pos // w), self.x.take(pos % w), spatial=False)


@dataclass(frozen=True)
class LayerField:
    """Receptive fields of every output position of one layer (input size ``image_size`` = (H, W))."""

    layer: str
    y: Axis
    x: Axis
    spatial: bool
    image_size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.n, self.x.n

    def box(self, yi: int, xi: int) -> tuple[int, int, int, int]:
        """Half-open ``(x0, y0, x1, y1)``: the image pixels position ``(yi, xi)`` depends on.

        For a vector layer, pass the feature index as both ``yi`` and ``xi`` (see :meth:`unit`)."""
        return int(self.x.lo[xi]), int(self.y.lo[yi]), int(self.x.hi[xi]) + 1, int(self.y.hi[yi]) + 1

    def field(self, yi: int, xi: int) -> tuple[int, int, int, int]:
        """Half-open ``(x0, y0, x1, y1)``: the receptive field, possibly beyond the image."""
        return int(self.x.tlo[xi]), int(self.y.tlo[yi]), int(self.x.thi[xi]) + 1, int(self.y.thi[yi]) + 1

    def unit(self, channel: int, loc: int = 0) -> tuple[int, int]:
        """(row, column) indices into the axes for a channel and a flat (row-major) position."""
        return divmod(int(loc), self.x.n) if self.spatial else (int(channel), int(channel))

    def boxes(self, channels: np.ndarray, locs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For channels and flat position indices (same shape): boxes and fields as (..., 4) arrays."""
        locs = np.asarray(locs, dtype=np.int64)
        if self.spatial:
            yi, xi = np.divmod(np.clip(locs, 0, None), self.x.n)
        else:
            yi = xi = np.asarray(channels, dtype=np.int64)
        box = np.stack([self.x.lo[xi], self.y.lo[yi], self.x.hi[xi] + 1, self.y.hi[yi] + 1], -1)
        fld = np.stack([self.x.tlo[xi], self.y.tlo[yi], self.x.thi[xi] + 1, self.y.thi[yi] + 1], -1)
        return box, fld


# --------------------------------------------------------------------------- per-layer rules


def _pair(v: object, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    if isinstance(v, tuple | list) and len(v) == 1 and isinstance(v[0], int):
        return int(v[0]), int(v[0])
    raise UnsupportedLayerError(f"cannot read {name}={v!r}")


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) at input size ``size`` (as timm's ``pad_same``)."""
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _sliding(axis: Axis, n_out: int, k: int, s: int, d: int, before: int) -> Axis:
    starts = [o * s - before for o in range(n_out)]
    ends = [a + d * (k - 1) for a in starts]
    return axis.window(starts, ends, d, axis.jump * s)


def _adaptive(axis: Axis, n_out: int) -> Axis:
    n = axis.n
    starts = [(o * n) // n_out for o in range(n_out)]
    ends = [-((-(o + 1) * n) // n_out) - 1 for o in range(n_out)]
    return axis.window(starts, ends, 1, axis.jump * max(1, n // n_out))


def _sliding_params(m: nn.Module, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int],
                                                             tuple[int, int], tuple[int, int]]:
    """kernel, stride, dilation and (before, after) padding for rows and columns."""
    name = type(m).__name__
    k = _pair(m.kernel_size, "kernel_size")  # type: ignore[attr-defined]
    s = _pair(m.stride if m.stride is not None else m.kernel_size, "stride")  # type: ignore[attr-defined]
    d = _pair(getattr(m, "dilation", 1), "dilation")
    if name in _SAME_CLASSES:
        if isinstance(m, nn.AvgPool2d):
            d = (1, 1)  # timm's avg_pool2d_same pads without dilation
        py, px = same_padding(h, k[0], s[0], d[0]), same_padding(w, k[1], s[1], d[1])
        extra = _pair(getattr(m, "padding", 0) or 0, "padding")
        return k, s, d, (py[0] + extra[0], py[1] + extra[0]), (px[0] + extra[1], px[1] + extra[1])
    pad = getattr(m, "padding", 0)
    if isinstance(pad, str):
        if pad == "valid":
            return k, s, d, (0, 0), (0, 0)
        if pad == "same":  # PyTorch's: total d*(k-1), the extra pixel after
            ty, tx = d[0] * (k[0] - 1), d[1] * (k[1] - 1)
            return k, s, d, (ty // 2, ty - ty // 2), (tx // 2, tx - tx // 2)
        raise UnsupportedLayerError(f"padding={pad!r}")
    p = _pair(pad, "padding")
    return k, s, d, (p[0], p[0]), (p[1], p[1])


def _check(name: str, n_in: int, n_out: int, k: int, s: int, d: int, pad: tuple[int, int], ceil_mode: bool) -> None:
    span = n_in + pad[0] + pad[1] - d * (k - 1) - 1
    expect = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (expect - 1) * s >= n_in + pad[0]:
        expect -= 1  # PyTorch drops a last window that starts in the right padding
    if expect != n_out:
        raise UnsupportedLayerError(f"layer {name}: expected {expect} output positions from {n_in}, got {n_out}; "
                                    "the padding it applies is not the one modelled")


def step(name: str, m: nn.Module, g: Geometry, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Geometry:
    """The geometry of a leaf module's output from its input's (shapes without the batch axis)."""
    if len(out_shape) == 1:
        f = out_shape[0]
        if g.spatial and isinstance(m, nn.Flatten) and len(in_shape) == 3 and in_shape[0] * in_shape[1] * in_shape[2] == f:
            return g.flatten(in_shape[0])
        if not g.spatial and tuple(in_shape) == (f,) and not isinstance(m, nn.Linear | nn.Bilinear):
            return g  # pointwise on features (activations, dropout, BatchNorm1d ...)
        return g.union(f)
    if len(out_shape) != 3:
        raise UnsupportedLayerError(f"layer {name}: output shape {out_shape} is neither (C, H, W) nor (F,)")
    if not g.spatial or len(in_shape) != 3:
        raise UnsupportedLayerError(f"layer {name} makes a spatial output from a vector")
    (h, w), (ho, wo) = in_shape[1:], out_shape[1:]
    if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d) or type(m).__name__ == "Pad2dSame":
        k, s, d, py, px = _sliding_params(m, h, w)
        if type(m).__name__ == "Pad2dSame":  # pads only: a shift, the geometry of a 1x1 window
            return Geometry(_sliding(g.y, ho, 1, 1, 1, py[0]), _sliding(g.x, wo, 1, 1, 1, px[0]))
        ceil = bool(getattr(m, "ceil_mode", False))
        _check(name, h, ho, k[0], s[0], d[0], py, ceil)
        _check(name, w, wo, k[1], s[1], d[1], px, ceil)
        return Geometry(_sliding(g.y, ho, k[0], s[0], d[0], py[0]), _sliding(g.x, wo, k[1], s[1], d[1], px[0]))
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        return Geometry(_adaptive(g.y, ho), _adaptive(g.x, wo))
    if isinstance(m, nn.ZeroPad2d | nn.ConstantPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d):
        left, right, top, bottom = m.padding  # type: ignore[misc]
        return Geometry(_sliding(g.y, ho, 1, 1, 1, top), _sliding(g.x, wo, 1, 1, 1, left))
    if (ho, wo) == (h, w):
        return g  # pointwise in space (BN, activations, Identity, 1x1-free modules ...)
    raise UnsupportedLayerError(f"layer {name} ({type(m).__name__}) changes the spatial size {h}x{w} -> {ho}x{wo} "
                                "in a way this module does not model")


# --------------------------------------------------------------------------- the hook pass


def _shape_key(t: torch.Tensor) -> tuple[object, ...]:
    return tuple(t.shape[2:]) if t.dim() == 4 else ("vector", int(t.shape[-1]))


@torch.no_grad()
def receptive_fields(model: nn.Module, input_size: tuple[int, int, int], *, strict: bool = False
                     ) -> dict[str, LayerField | None]:
    """Receptive fields of every layer's output positions (:func:`app.core.probe.layer_modules`),
    for inputs of ``input_size`` (C, H, W).

    Layers that run more than once keep their first call. A layer whose geometry cannot be derived
    maps to ``None`` (and so do the layers that depend on it), or raises with ``strict``.
    """
    leaves = layer_modules(model)  # name -> the module whose output is the layer's
    events: list[tuple[str, nn.Module, torch.Tensor | None, torch.Tensor]] = []
    keep: list[torch.Tensor] = []  # keeps tensors alive so that their ids stay unique during the pass

    def make_hook(name: str, mod: nn.Module):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, inp: tuple[object, ...], out: object) -> None:
            x = next((t for t in inp if isinstance(t, torch.Tensor)), None)
            if isinstance(out, torch.Tensor):
                keep.extend([t for t in (x, out) if t is not None])
                events.append((name, mod, x, out))
        return hook

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(make_hook(n, m)) for n, m in leaves.items()]
    try:
        x0 = torch.zeros(1, *input_size)
        keep.append(x0)
        model(x0)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    H, W = input_size[1], input_size[2]
    by_id: dict[int, Geometry | None] = {id(x0): Geometry(Axis.identity(H), Axis.identity(W))}
    by_shape: dict[tuple[int, ...], list[Geometry]] = {(H, W): [by_id[id(x0)]]}
    out: dict[str, LayerField | None] = {}
    for name, mod, x, y in events:
        g_in: Geometry | None
        if x is None:
            g_in = None
        elif id(x) in by_id:
            g_in = by_id[id(x)]
        else:  # written by a non-module operation (x + shortcut ...): union of same-size geometries
            same = by_shape.get(_shape_key(x), [])
            g_in = None if not same else Geometry(Axis.merge([s.y for s in same]), Axis.merge([s.x for s in same]),
                                                  spatial=x.dim() == 4)
        g_out: Geometry | None = None
        if g_in is not None:
            try:
                g_out = step(name, mod, g_in, tuple(x.shape[1:]), tuple(y.shape[1:]))  # type: ignore[union-attr]
            except UnsupportedLayerError:
                if strict:
                    raise
        by_id[id(y)] = g_out
        if g_out is not None:
            by_shape.setdefault(_shape_key(y), []).append(g_out)
        if name not in out:
            out[name] = None if g_out is None else LayerField(name, g_out.y, g_out.x, g_out.spatial, (H, W))
    return out

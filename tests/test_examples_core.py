"""Streaming top-k of max-activating examples: equal to brute force, deterministic ties, associative merge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.core.examples import (
    EMPTY,
    Accumulator,
    ExamplesIndex,
    IndexMismatchError,
    IndexPart,
    TopK,
    decode,
    encode,
    finalize,
    merge_all,
)
from app.core.probe import capture
from app.core.receptive import receptive_fields

K = 5


pytestmark = pytest.mark.usefixtures("one_thread")


class TieNet(nn.Module):
    """Integer weights on integer inputs: exact activations with many ties (and ReLU zeros)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.same = nn.Identity()  # the very tensor of pool: stored once, as an alias
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6 * 4 * 4, 4, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randint(-1, 2, self.conv.weight.shape, generator=g).float())
            self.fc.weight.copy_(torch.randint(-1, 2, self.fc.weight.shape, generator=g).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.same(self.pool(self.relu(self.conv(x))))))


LAYERS = ["conv", "relu", "pool", "same", "flatten", "fc"]


def data(n: int = 240, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, (n, 3, 8, 8), generator=g).float(), torch.randint(0, 10, (n,), generator=g)


def batches(x: torch.Tensor, y: torch.Tensor, lo: int, hi: int, sizes: list[int]):
    i, j = lo, 0
    while i < hi:
        b = min(sizes[j % len(sizes)], hi - i)
        yield x[i:i + b], torch.arange(i, i + b), y[i:i + b]
        i, j = i + b, j + 1


def brute(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: str, mode: str) -> list[list[tuple]]:
    """Per channel: the k best (value, index, loc, label, pred) sorted by value desc, index asc."""
    with torch.no_grad(), capture(model, [layer], clone=True) as acts:
        pred = model(x).argmax(1)
    a = acts[layer]
    if a.dim() == 4:
        flat = a.flatten(2)
        vals = flat.amax(2) if mode == "crop" else flat.mean(2)
        locs = flat.argmax(2) if mode == "crop" else torch.zeros_like(vals, dtype=torch.long)
    else:
        vals, locs = a, torch.zeros_like(a, dtype=torch.long)
    out = []
    for c in range(vals.shape[1]):
        rows = sorted(range(len(x)), key=lambda i: (-float(vals[i, c]), i))[:K]
        out.append([(float(vals[i, c]), i, int(locs[i, c]), int(y[i]), int(pred[i])) for i in rows])
    return out


def as_rows(t: TopK) -> list[list[tuple]]:
    v, i = decode(t.keys)
    return [[(float(v[c, r]), int(i[c, r]), int(t.loc[c, r]), int(t.label[c, r]), int(t.pred[c, r]))
             for r in range(t.k) if int(i[c, r]) >= 0] for c in range(t.channels)]


def test_encode_orders_by_value_then_index() -> None:
    vals = torch.tensor([1.0, -2.5, 0.0, -0.0, 3.0, float("nan"), float("-inf"), 3.0, 1e-30, -1e-30])
    idx = torch.arange(len(vals))
    keys = encode(vals, idx)
    order = torch.argsort(keys, descending=True).tolist()
    clean = [float("-inf") if v != v else (0.0 if v == 0 else float(v)) for v in vals.tolist()]
    assert order == sorted(range(len(vals)), key=lambda i: (-clean[i], i))
    v, i = decode(keys)
    assert i.tolist() == idx.tolist()
    assert v[0] == 1.0 and v[1] == -2.5 and v[5] == float("-inf") and v[8] == 1e-30
    v, i = decode(torch.tensor([EMPTY]))
    assert i.item() == -1 and torch.isnan(v).all()


def test_streaming_equals_brute_force_with_ties() -> None:
    model = TieNet().eval()
    x, y = data()
    acc = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, len(x), [7, 32, 1, 50, 13]):
        acc.add(xb, ib, yb)
    part = acc.part
    assert part.covered == [(0, len(x))] and part.count == len(x)
    assert part.alias == {"same": "pool"}
    ties = 0
    for layer in ["conv", "relu", "pool", "flatten", "fc"]:
        lt = part.layers[layer]
        modes = ("crop", "image") if lt.kind == "map" else ("unit",)
        for mode in modes:
            expect = brute(model, x, y, layer, "crop" if mode == "unit" else mode)
            assert as_rows(lt.modes[mode]) == expect, (layer, mode)
            ties += sum(len({r[0] for r in rows}) < len(rows) for rows in expect)
    assert ties > 10  # the data really has ties, broken by data set index
    # the alias reads the same top-k as its source
    idx = ExamplesIndex(part, {"input_size": [3, 8, 8]}, {})
    assert idx.layer("same") is part.layers["pool"]


def test_merge_is_associative_and_matches_one_pass() -> None:
    model = TieNet().eval()
    x, y = data(200, seed=2)
    bounds = [0, 40, 90, 150, 200]
    parts = [Accumulator(model, LAYERS, K) for _ in range(4)]
    for p, lo, hi in zip(parts, bounds, bounds[1:]):
        for xb, ib, yb in batches(x, y, lo, hi, [10]):
            p.add(xb, ib, yb)
    a, b, c, d = (p.part for p in parts)
    whole = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, 200, [10]):
        whole.add(xb, ib, yb)
    groupings = [
        a.merge(b).merge(c).merge(d),
        a.merge(b.merge(c.merge(d))),
        (a.merge(b)).merge(c.merge(d)),
        d.merge(b).merge(a.merge(c)),
        merge_all([c, a, d, b]),
    ]
    for g in groupings:
        assert g.covered == [(0, 200)]
        assert g.equal(whole.part)
    # round trip through the file format
    back, meta, _ = IndexPart.from_npz(groupings[0].to_npz({"x": 1}))
    assert back.equal(whole.part) and meta == {"x": 1}
    with pytest.raises(IndexMismatchError):
        a.merge(a)


def test_resume_from_a_part_continues_identically() -> None:
    model = TieNet().eval()
    x, y = data(120, seed=3)
    first = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, 60, [20]):
        first.add(xb, ib, yb)
    saved, _, _ = IndexPart.from_npz(first.part.to_npz())
    second = Accumulator(model, LAYERS, K)
    second.load(saved)
    for xb, ib, yb in batches(x, y, 60, 120, [20]):
        second.add(xb, ib, yb)
    whole = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, 120, [20]):
        whole.add(xb, ib, yb)
    assert second.part.equal(whole.part)


def test_finalize_boxes_follow_receptive_fields() -> None:
    model = TieNet().eval()
    x, y = data(64, seed=4)
    acc = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, 64, [16]):
        acc.add(xb, ib, yb)
    fields = receptive_fields(model, (3, 8, 8))
    idx = finalize(acc.part, fields, {"input_size": [3, 8, 8], "classes": [str(i) for i in range(10)],
                                      "categories": ["a", "b", "c", "d"]}, lambda i: f"img{i}.png")
    back = ExamplesIndex.from_bytes(idx.to_bytes())
    for layer in ["conv", "pool", "same"]:
        lf = fields["pool" if layer == "same" else layer]
        for ex in back.examples(layer, 2, "crop"):
            loc = int(acc.part.layers[acc.part.canonical(layer)].modes["crop"].loc[2, ex.rank])
            r, c = divmod(loc, lf.x.n)
            assert ex.box == lf.box(r, c) and ex.field == lf.field(r, c)
            assert ex.ref == f"img{ex.index}.png" and ex.label_name == str(ex.label)
            assert set(ex.off_image) <= {"left", "top", "right", "bottom"}
    conv_ex = back.examples("conv", 0, "crop")
    assert all(e.field[2] - e.field[0] == 3 for e in conv_ex)  # a 3x3 conv sees 3x3 pixels
    assert [e.box for e in back.examples("conv", 0, "image")] == [(0, 0, 8, 8)] * K
    fc = back.examples("fc", 1, "crop", 3)
    assert len(fc) == 3 and all(e.box == (0, 0, 8, 8) for e in fc) and fc[0].pred_name in "abcd"


def test_concurrent_first_loads_read_the_index_once(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Eight requests for one stored index at once: one read and parse, the same object for all, no error
    (parsing npz headers side by side once raised CPython 3.11's 'AST constructor recursion depth mismatch')."""
    import threading

    from app.features.examples import index_store
    from app.store.database import Store

    model = TieNet().eval()
    x, y = data(32, seed=5)
    acc = Accumulator(model, LAYERS, K)
    for xb, ib, yb in batches(x, y, 0, 32, [16]):
        acc.add(xb, ib, yb)
    idx = finalize(acc.part, receptive_fields(model, (3, 8, 8)), {"input_size": [3, 8, 8]}, lambda i: f"img{i}.png")
    store = Store(tmp_path)
    try:
        ist = index_store.IndexStore(store)
        store.cache_put("examples:test", idx.to_bytes())
        parses = []
        real = ExamplesIndex.from_bytes

        def counted(data: bytes) -> ExamplesIndex:
            parses.append(1)
            return real(data)

        monkeypatch.setattr(index_store.ExamplesIndex, "from_bytes", staticmethod(counted))
        start = threading.Barrier(8)
        got: list[object] = []

        def load() -> None:
            start.wait()
            got.append(ist.load("examples:test"))

        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 8 and all(g is got[0] for g in got) and got[0] is not None
        assert len(parses) == 1
        assert ist.load("examples:missing") is None
    finally:
        store.close()


def wide_net() -> nn.Module:
    """48x48 maps, integer weights (-1, 0, 1): ties inside every map."""
    from collections import OrderedDict

    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1, bias=False), relu=nn.ReLU(),
                                    flatten=nn.Flatten(), fc=nn.Linear(4 * 48 * 48, 5, bias=False)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randint(-1, 2, p.shape, generator=g).float())
    return net.eval()


def test_large_maps_find_the_first_maximum_like_argmax() -> None:
    model = wide_net()
    g = torch.Generator().manual_seed(9)
    x = torch.randint(0, 2, (60, 3, 48, 48), generator=g).float()
    y = torch.randint(0, 5, (60,), generator=g)
    for fmt in (torch.contiguous_format, torch.channels_last):  # batches from images arrive channels-last
        acc = Accumulator(model, ["conv", "relu", "fc"], K)
        for xb, ib, yb in batches(x, y, 0, len(x), [16, 5, 9]):
            acc.add(xb.contiguous(memory_format=fmt), ib, yb)
        for layer in ["conv", "relu"]:
            for mode in ("crop", "image"):
                assert as_rows(acc.part.layers[layer].modes[mode]) == brute(model, x, y, layer, mode), (layer, mode, fmt)
        assert as_rows(acc.part.layers["fc"].modes["unit"]) == brute(model, x, y, "fc", "crop")


@pytest.mark.parametrize("side", [8, 48])
def test_reduce_positions_with_ties_nan_and_floors(side: int) -> None:
    from app.core.examples import _reduce

    g = torch.Generator().manual_seed(side)
    out = torch.randint(-3, 4, (6, 5, side, side), generator=g).float()
    out[0, 0] = -0.0
    out[1, 1, side // 2, 3] = float("nan")
    out[2, 2, -1, -1] = float("nan")
    out[3, 3, 1, 1] = out[3, 3, 2, 2] = float("nan")  # argmax gives the first NaN
    flat = out.flatten(2)
    some = torch.tensor([3.0, float("-inf"), 2.0, 9.0, 0.0])
    for floor, fmt in [(None, torch.contiguous_format), (some, torch.contiguous_format), (None, torch.channels_last)]:
        st = _reduce("x", out.contiguous(memory_format=fmt), floor)
        assert torch.equal(st.peak.nan_to_num(-9), flat.amax(2).nan_to_num(-9))
        assert torch.equal(st.mean.nan_to_num(-9), flat.mean(2).nan_to_num(-9))
        want = flat.argmax(2).to(torch.int32)
        searched = torch.ones_like(want, dtype=torch.bool) if floor is None else ~(flat.amax(2) < floor)
        assert torch.equal(st.loc[searched], want[searched]) and bool((st.loc[~searched] == 0).all())


def test_reduce_reads_channels_last_maps_alike() -> None:
    from app.core.examples import _reduce

    g = torch.Generator().manual_seed(4)
    for side in (8, 48):
        out = torch.randint(-3, 4, (5, 6, side, side), generator=g).float()
        out[1, 2, 3, 4] = out[1, 2, 0, 5] = float("nan")
        a, b = _reduce("x", out, None), _reduce("x", out.contiguous(memory_format=torch.channels_last), None)
        for f in ("peak", "mean", "loc"):
            assert torch.equal(getattr(a, f).nan_to_num(-9), getattr(b, f).nan_to_num(-9)), f

"""Max-activating examples: streaming top-k per channel, a map over shards and an associative merge.

For every indexed layer and every channel, the ``k`` data set images that excite the channel most:

* mode ``crop`` (maps (C, H, W)): value = the channel's maximum over positions; the example keeps
  the flat position of that maximum, whose receptive field (:mod:`app.core.receptive`) is the crop;
* mode ``image`` (maps): value = the channel's mean over positions; the example is the whole image;
* vectors (F,) (linear layers, flatten): one top-k per unit (mode ``unit``), served for both modes.

Order and ties: entries are sorted by value (descending), then data set index (ascending). Both are
packed into one int64 *key* per entry, ``order(value) << 32 | (2**32 - 1 - index)``, where
``order`` is the IEEE-754 bit pattern made monotone. Keys are unique (one entry per image and
channel), so "the k largest keys" is a total, deterministic order: the top-k of a union equals the
top-k of the parts' top-k, whatever the grouping and order. That makes :func:`merge` associative
and commutative, and a build can be split into shards (processes, machines), resumed after a
checkpoint, or extended with new images, with results bit-identical to a single pass.

Memory is O(layers x channels x k): a batch's candidates are merged into the running top-k and
dropped. Work per batch is kept small: the channel maxima (``amax``) and means are computed for
every image, the merge only involves the images and channels that beat the current k-th entry
(nothing at all when none does), and the position of the maximum (``argmax``, the slow part) is
computed only for the entries that actually enter the top-k.

Nothing here knows about files, HTTP or data loaders (see :mod:`app.features.examples.build`).
"""

from __future__ import annotations

import io
import json
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from app.core.probe import resolve
from app.core.receptive import LayerField

EMPTY = torch.iinfo(torch.int64).min
"""Key of an empty slot (fewer than k images seen)."""
MAX_INDEX = (1 << 32) - 1
MODES = ("crop", "image")
FORMAT_VERSION = 1
_NPZ_READ_LOCK = threading.Lock()


class IndexMismatchError(ValueError):
    """Two partial indexes that cannot be merged (other k, layers, or overlapping images)."""


# --------------------------------------------------------------------------- keys


def encode(values: torch.Tensor, index: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """Keys for float values and data set indexes (broadcast): larger key = larger value, then smaller index.

    ``-0.0`` counts as ``0.0`` and NaN as ``-inf``. ``check=False`` skips the index range check
    (the caller checked the batch once).
    """
    v = torch.nan_to_num(values.float() + 0.0, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    bits = v.view(torch.int32)
    order = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip the magnitude bits -> monotone int32
    idx = index.to(torch.int64)
    if check and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) > MAX_INDEX):
        raise ValueError(f"data set indexes must lie in 0..{MAX_INDEX}")
    return (order.to(torch.int64) << 32) | (MAX_INDEX - idx)


def decode(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (float32, NaN for empty slots) and indexes (-1 for empty slots) of keys."""
    order = (keys >> 32).to(torch.int32)
    bits = order ^ ((order >> 31) & 0x7FFFFFFF)
    values = bits.view(torch.float32).clone()
    index = MAX_INDEX - (keys & MAX_INDEX)
    empty = keys == EMPTY
    values[empty] = float("nan")
    index[empty] = -1
    return values, index


# --------------------------------------------------------------------------- top-k of one layer, one mode


@dataclass
class TopK:
    """Per channel, the k best entries sorted best first: key, position of the maximum, true and predicted label."""

    keys: torch.Tensor  # (C, k) int64
    loc: torch.Tensor  # (C, k) int32, flat position of the maximum (0 for whole-image modes)
    label: torch.Tensor  # (C, k) int32, -1 = unknown
    pred: torch.Tensor  # (C, k) int32

    @classmethod
    def empty(cls, channels: int, k: int) -> TopK:
        z = torch.zeros(channels, k, dtype=torch.int32)
        return cls(torch.full((channels, k), EMPTY, dtype=torch.int64), z, z.clone() - 1, z.clone() - 1)

    @property
    def k(self) -> int:
        return int(self.keys.shape[1])

    @property
    def channels(self) -> int:
        return int(self.keys.shape[0])

    def rows(self, a: int, b: int) -> TopK:
        """A copy of channels ``a:b``."""
        return TopK(self.keys[a:b].clone(), self.loc[a:b].clone(), self.label[a:b].clone(), self.pred[a:b].clone())

    def stack(self, other: TopK) -> TopK:
        """These channels followed by ``other``'s."""
        return TopK(*(torch.cat([getattr(self, f), getattr(other, f)]) for f in ("keys", "loc", "label", "pred")))

    def threshold(self) -> torch.Tensor:
        """(C,) the key an entry must beat to enter."""
        return self.keys[:, -1]

    def merge(self, other: TopK) -> TopK:
        """The top-k of both (keys must be distinct except empty slots)."""
        return _select(torch.cat([self.keys, other.keys], 1), torch.cat([self.loc, other.loc], 1),
                       torch.cat([self.label, other.label], 1), torch.cat([self.pred, other.pred], 1), self.k)

    def propose(self, keys: torch.Tensor, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
                ) -> Proposal | None:
        """Phase 1 of merging a batch (``keys`` (B, C)): the new top-k keys, and where each entry
        comes from; None when nothing enters.

        Only the images and channels where some key beats the channel's k-th entry take part (the
        others cannot enter), which keeps the work small once the top-k has filled up. ``keys`` may
        be the part of the batch's keys at batch rows ``rows`` and channels ``cols`` (the caller
        knows that nothing else can enter).
        """
        thr = self.threshold() if cols is None else self.threshold().index_select(0, cols)
        hit = keys > thr[None]
        r, c = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
        if r.numel() == 0:
            return None
        sub = keys.index_select(0, r).index_select(1, c)
        r = r if rows is None else rows.index_select(0, r)
        c = c if cols is None else cols.index_select(0, c)
        top, pos = torch.topk(torch.cat([self.keys.index_select(0, c), sub.t()], 1), self.k, dim=1)
        k = self.k
        src = torch.where(pos < k, pos, k + r[(pos - k).clamp(min=0)])
        return Proposal(c, top, src)

    def accept(self, p: Proposal, label: torch.Tensor, pred: torch.Tensor, loc_new: torch.Tensor | None = None, *,
               inplace: bool = False) -> TopK:
        """Phase 2: the merged top-k, given the batch's true and predicted labels (B,) and, for new
        entries, their positions ``loc_new`` (shaped like ``p.keys``; see :meth:`Proposal.new`).
        ``inplace``: update this top-k (and return it) instead of a copy."""
        k, cols = self.k, p.cols
        old = p.src < k
        oi, bi = p.src.clamp(max=k - 1), (p.src - k).clamp(min=0)
        lab = torch.where(old, self.label.index_select(0, cols).gather(1, oi), label.to(torch.int32)[bi])
        prd = torch.where(old, self.pred.index_select(0, cols).gather(1, oi), pred.to(torch.int32)[bi])
        loc = self.loc.index_select(0, cols).gather(1, oi)
        loc = torch.where(old, loc, loc_new.to(torch.int32) if loc_new is not None else torch.zeros_like(loc))
        empty = p.keys == EMPTY
        loc, lab, prd = loc.masked_fill(empty, 0), lab.masked_fill(empty, -1), prd.masked_fill(empty, -1)
        out = self if inplace else TopK(self.keys.clone(), self.loc.clone(), self.label.clone(), self.pred.clone())
        out.keys[cols], out.loc[cols], out.label[cols], out.pred[cols] = p.keys, loc, lab, prd
        return out

    def add(self, keys: torch.Tensor, loc: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> TopK:
        """Merge a batch: ``keys``/``loc`` (B, C), ``label``/``pred`` (B,) (both phases at once)."""
        p = self.propose(keys)
        if p is None:
            return self
        rows, chans = p.new()
        loc_new = torch.zeros(p.keys.shape, dtype=torch.int32)
        loc_new[p.src >= self.k] = loc[rows, chans].to(torch.int32)
        return self.accept(p, label, pred, loc_new)

    def equal(self, other: TopK) -> bool:
        return all(torch.equal(a, b) for a, b in ((self.keys, other.keys), (self.loc, other.loc),
                                                  (self.label, other.label), (self.pred, other.pred)))


@dataclass
class Proposal:
    """The merged top-k keys of the channels ``cols`` that change; ``src`` says where each entry comes
    from: ``< k`` the old slot, ``>= k`` batch row ``src - k``."""

    cols: torch.Tensor  # (c',)
    keys: torch.Tensor  # (c', k)
    src: torch.Tensor  # (c', k)

    def new(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch rows and channels of the entries that come from the batch, in ``src >= k`` order."""
        k = self.keys.shape[1]
        ci, si = (self.src >= k).nonzero(as_tuple=True)
        return self.src[ci, si] - k, self.cols[ci]


def _select(keys: torch.Tensor, loc: torch.Tensor, label: torch.Tensor, pred: torch.Tensor, k: int) -> TopK:
    top, pos = torch.topk(keys, k, dim=1, largest=True, sorted=True)
    out = TopK(top, loc.gather(1, pos), label.gather(1, pos), pred.gather(1, pos))
    empty = top == EMPTY  # normalise the side data of empty slots (their choice among equal keys is arbitrary)
    if bool(empty.any()):
        out.loc[empty], out.label[empty], out.pred[empty] = 0, -1, -1
    return out


# --------------------------------------------------------------------------- coverage


def merge_ranges(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of two sets of half-open index ranges; raises if they overlap."""
    rs = sorted([tuple(r) for r in a] + [tuple(r) for r in b])  # type: ignore[misc]
    out: list[tuple[int, int]] = []
    for s, e in rs:
        if out and s < out[-1][1]:
            raise IndexMismatchError(f"images {s}..{min(e, out[-1][1]) - 1} are in both parts")
        if out and s == out[-1][1]:
            out[-1] = (out[-1][0], e)
        elif e > s:
            out.append((s, e))
    return out


def count_ranges(rs: Sequence[tuple[int, int]]) -> int:
    return sum(e - s for s, e in rs)


# --------------------------------------------------------------------------- a partial index


@dataclass
class LayerTopK:
    """The top-k of one layer: ``kind`` "map" (modes crop and image) or "vector" (mode unit)."""

    kind: str
    shape: tuple[int, ...]
    modes: dict[str, TopK]

    def merge(self, other: LayerTopK) -> LayerTopK:
        if self.kind != other.kind or self.shape != other.shape or set(self.modes) != set(other.modes):
            raise IndexMismatchError("the parts index layers of different shapes")
        return LayerTopK(self.kind, self.shape, {m: t.merge(other.modes[m]) for m, t in self.modes.items()})


@dataclass
class IndexPart:
    """The top-k of a set of images (``covered``: half-open data set index ranges) for every layer.

    ``alias`` maps a layer whose output is the very tensor of another layer (``Identity``, ``aa``,
    ``drop_path`` ...) to that layer; only the latter is stored.
    """

    k: int
    layers: dict[str, LayerTopK]
    alias: dict[str, str] = field(default_factory=dict)
    covered: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return count_ranges(self.covered)

    def canonical(self, layer: str) -> str:
        return self.alias.get(layer, layer)

    def merge(self, other: IndexPart) -> IndexPart:
        """The index of both parts' images (associative, commutative; the parts must not overlap)."""
        if not self.layers:
            return other.copy_meta(merge_ranges(self.covered, other.covered))
        if not other.layers:
            return self.copy_meta(merge_ranges(self.covered, other.covered))
        if self.k != other.k:
            raise IndexMismatchError(f"k differs: {self.k} and {other.k}")
        if set(self.layers) != set(other.layers) or self.alias != other.alias:
            raise IndexMismatchError("the parts index different layers")
        covered = merge_ranges(self.covered, other.covered)
        return IndexPart(self.k, {n: t.merge(other.layers[n]) for n, t in self.layers.items()}, dict(self.alias),
                         covered)

    def copy_meta(self, covered: list[tuple[int, int]]) -> IndexPart:
        return IndexPart(self.k, dict(self.layers), dict(self.alias), covered)

    def equal(self, other: IndexPart) -> bool:
        return (self.k == other.k and self.alias == other.alias and self.covered == other.covered
                and set(self.layers) == set(other.layers)
                and all(self.layers[n].kind == other.layers[n].kind and set(t.modes) == set(other.layers[n].modes)
                        and all(t.modes[m].equal(other.layers[n].modes[m]) for m in t.modes)
                        for n, t in self.layers.items()))

    # -- serialisation (npz, no pickle) -------------------------------------------------------
    def to_npz(self, meta: Mapping[str, object] | None = None, extra: Mapping[str, np.ndarray] | None = None) -> bytes:
        names = sorted(self.layers)
        head = {"format": FORMAT_VERSION, "k": self.k, "alias": self.alias, "covered": self.covered,
                "layers": [{"name": n, "kind": self.layers[n].kind, "shape": list(self.layers[n].shape),
                            "modes": sorted(self.layers[n].modes)} for n in names], "meta": dict(meta or {})}
        arrays: dict[str, np.ndarray] = {"head": np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)}
        for i, n in enumerate(names):
            for m, t in self.layers[n].modes.items():
                for a in ("keys", "loc", "label", "pred"):
                    arrays[f"L{i}.{m}.{a}"] = getattr(t, a).numpy()
        for key, arr in (extra or {}).items():
            arrays[f"x.{key}"] = arr
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> tuple[IndexPart, dict[str, object], dict[str, np.ndarray]]:
        """The part, its ``meta`` and the ``extra`` arrays written by :meth:`to_npz`."""
        # One reader at a time: numpy parses each array header with ast.literal_eval, and CPython 3.11's
        # AST constructor keeps a shared recursion counter that concurrent parses corrupt (SystemError
        # "AST constructor recursion depth mismatch", python/cpython#106905). Parsing is a few ms.
        with _NPZ_READ_LOCK, np.load(io.BytesIO(data), allow_pickle=False) as z:
            head = json.loads(bytes(z["head"]).decode())
            if head.get("format") != FORMAT_VERSION:
                raise ValueError(f"index format {head.get('format')} is not {FORMAT_VERSION}; rebuild the index")
            layers = {}
            for i, spec in enumerate(head["layers"]):
                modes = {m: TopK(*(torch.from_numpy(z[f"L{i}.{m}.{a}"].copy()) for a in ("keys", "loc", "label", "pred")))
                         for m in spec["modes"]}
                layers[spec["name"]] = LayerTopK(spec["kind"], tuple(spec["shape"]), modes)
            extra = {k[2:]: z[k] for k in z.files if k.startswith("x.")}
        part = cls(int(head["k"]), layers, dict(head["alias"]), [tuple(r) for r in head["covered"]])  # type: ignore[misc]
        return part, dict(head["meta"]), extra


def merge_all(parts: Sequence[IndexPart]) -> IndexPart:
    """Merge any number of parts (left to right; any grouping gives the same result)."""
    if not parts:
        raise ValueError("nothing to merge")
    out = parts[0]
    for p in parts[1:]:
        out = out.merge(p)
    return out


# --------------------------------------------------------------------------- the map: batches -> a part


class Accumulator:
    """Runs batches through a model and keeps the running top-k of the given layers.

    Use a model that nothing else runs at the same time (a copy of a served one): hooks are
    registered on it for the duration of each :meth:`add`.

    The hot path is shaped by where the time goes on a 224x224 model (EfficientNet-Lite0: ~100
    distinct maps, 78 MB of activations per image): inside each hook only the reductions over the
    map (maximum with its position, and mean; see :func:`_reduce`). The top-k bookkeeping of all
    layers then runs once per batch over the channels of every layer side by side (one "slab" per
    mode) instead of once per layer, and computes keys only where a float comparison with the
    k-th value says an entry may enter.
    """

    def __init__(self, module: nn.Module, layers: Sequence[str], k: int = 9) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.module = module
        self.names = list(layers)
        self.mods = resolve(module, self.names)
        self.k = k
        self._alias: dict[str, str] = {}
        self._covered: list[tuple[int, int]] = []
        self._aliases_known = False
        # per layer: kind, shape and its channel span in the slab of its kind
        self._layout: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        self._slabs: dict[str, TopK] = {}  # "crop", "image" over map layers; "unit" over vector layers
        self._width = {"map": 0, "vector": 0}
        self._part: IndexPart | None = IndexPart(k, {}, {}, [])

    def load(self, part: IndexPart) -> None:
        """Continue from a part (a checkpoint)."""
        if part.layers and part.k != self.k:
            raise IndexMismatchError(f"checkpoint has k={part.k}, this build k={self.k}")
        self._alias = dict(part.alias)
        self._covered = list(part.covered)
        self._aliases_known = bool(part.layers)
        self._layout, self._slabs, self._width = {}, {}, {"map": 0, "vector": 0}
        for name, lt in part.layers.items():
            self._extend(name, lt.kind, lt.shape, lt.modes)
        self._part = part

    @property
    def count(self) -> int:
        """How many images went in so far."""
        return count_ranges(self._covered)

    @property
    def part(self) -> IndexPart:
        """The top-k so far, per layer (a copy, made when first asked for after a batch)."""
        if self._part is None:
            layers = {}
            for name, (kind, shape, a, b) in self._layout.items():
                modes = ("crop", "image") if kind == "map" else ("unit",)
                layers[name] = LayerTopK(kind, shape, {m: self._slabs[m].rows(a, b) for m in modes})
            self._part = IndexPart(self.k, layers, dict(self._alias), list(self._covered))
        return self._part

    def _extend(self, name: str, kind: str, shape: tuple[int, ...], modes: Mapping[str, TopK] | None = None) -> None:
        """Give a layer its span at the end of its kind's slabs (empty top-k, or ``modes``)."""
        c = int(shape[0])
        a = self._width[kind]
        self._layout[name] = (kind, tuple(shape), a, a + c)
        self._width[kind] = a + c
        for m in ("crop", "image") if kind == "map" else ("unit",):
            t = modes[m].rows(0, c) if modes is not None else TopK.empty(c, self.k)  # a copy: slabs change in place
            self._slabs[m] = t if m not in self._slabs else self._slabs[m].stack(t)

    @torch.no_grad()
    def add(self, x: torch.Tensor, index: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Forward one batch (N,3,H,W) of data set images ``index`` (N,) with true ``label`` (N,);
        returns the predicted classes. Indexes must be new to this accumulator."""
        index = index.to(torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) > MAX_INDEX):
            raise ValueError(f"data set indexes must lie in 0..{MAX_INDEX}")
        covered = merge_ranges(self._covered, _ranges(index))
        stats: dict[str, _Stats] = {}
        seen: dict[tuple[int, int], tuple[weakref.ref[torch.Tensor], str]] = {}
        alias = dict(self._alias)
        crop = self._slabs.get("crop")
        floor = _entry_floor(crop) if crop is not None else None  # (C,) the value a maximum must reach to enter
        handles = []

        def make_hook(name: str):  # type: ignore[no-untyped-def]
            def hook(_m: nn.Module, _i: object, out: object) -> None:
                if not isinstance(out, torch.Tensor) or name in alias:
                    return
                tag = (id(out), out._version)
                hit = seen.get(tag)
                if hit is not None and hit[0]() is out:  # the very tensor another layer gave (Identity ...)
                    alias[name] = hit[1]
                    return
                seen[tag] = (weakref.ref(out), name)
                span = self._layout.get(name)
                below = floor[span[2]:span[3]] if floor is not None and span is not None and span[0] == "map" else None
                stats[name] = _reduce(name, out.detach(), below)
            return hook

        skip = set(self._alias) if self._aliases_known else set()
        for n in self.names:
            if n not in skip:
                handles.append(self.mods[n].register_forward_hook(make_hook(n)))
        try:
            logits = self.module(x)
        finally:
            for h in handles:
                h.remove()
        if isinstance(logits, tuple | list):
            logits = logits[0]
        pred = logits.argmax(1) if logits.dim() == 2 else torch.full_like(index, -1)
        for name, st in stats.items():
            span = self._layout.get(name)
            if span is None:
                self._extend(name, st.kind, st.shape)
            elif (span[0], span[1]) != (st.kind, st.shape):
                raise ValueError(f"layer {name}: output shape {st.shape} changed (was {span[1]})")
        self._merge(stats, index, label, pred)
        self._alias, self._covered, self._aliases_known, self._part = alias, covered, True, None
        return pred

    def _merge(self, stats: Mapping[str, _Stats], index: torch.Tensor, label: torch.Tensor, pred: torch.Tensor) -> None:
        """One propose/accept per mode over the channels of all layers side by side."""
        b = int(index.numel())
        for mode, kind, field_ in (("crop", "map", "peak"), ("image", "map", "mean"), ("unit", "vector", "peak")):
            if mode not in self._slabs:
                continue
            width = self._width[kind]
            spans = [(name, a, e) for name, (knd, _shape, a, e) in self._layout.items() if knd == kind]
            got = [stats.get(name) for name, _a, _e in spans]
            if all(st is not None for st in got):  # the usual case: every layer gave its output
                values = torch.cat([getattr(st, field_) for st in got], 1)  # type: ignore[union-attr]
                loc = torch.cat([st.loc for st in got], 1) if mode == "crop" else None  # type: ignore[union-attr,misc]
                missing = None
            else:
                values = torch.full((b, width), float("nan"))
                loc = torch.zeros((b, width), dtype=torch.int32) if mode == "crop" else None
                missing = torch.ones(width, dtype=torch.bool)
                for (_name, a, e), st in zip(spans, got, strict=True):
                    if st is not None:
                        values[:, a:e] = getattr(st, field_)
                        missing[a:e] = False
                        if loc is not None and st.loc is not None:
                            loc[:, a:e] = st.loc
            if missing is not None:
                values[:, missing] = float("-inf")
            slab = self._slabs[mode]  # the accumulator's own: updated in place
            # a float comparison finds the few rows and channels that may enter; keys only for those
            floor = _entry_floor(slab)
            cols = (~(values.amax(0) < floor)).nonzero().flatten()  # NaN is kept (and sorts last as a key)
            if cols.numel() == 0:
                continue
            rows = (~(values.index_select(1, cols) < floor.index_select(0, cols)[None])).any(1).nonzero().flatten()
            keys = encode(values.index_select(0, rows).index_select(1, cols), index.index_select(0, rows)[:, None],
                          check=False)
            if missing is not None:
                keys[:, missing.index_select(0, cols)] = EMPTY  # a layer that gave nothing proposes nothing
            prop = slab.propose(keys, rows, cols)
            if prop is None:
                continue
            loc_new = None
            if loc is not None:
                rows, chans = prop.new()
                loc_new = torch.zeros(prop.keys.shape, dtype=torch.int32)
                loc_new[prop.src >= self.k] = loc[rows, chans]
            slab.accept(prop, label, pred, loc_new, inplace=True)


@dataclass
class _Stats:
    """What a hook keeps of one layer's output: (B, C) maxima (and, for maps, means and positions)."""

    kind: str
    shape: tuple[int, ...]
    peak: torch.Tensor
    mean: torch.Tensor | None = None
    loc: torch.Tensor | None = None  # (B, C) int32: flat position of the maximum (0 where it cannot enter)


def _entry_floor(crop: TopK) -> torch.Tensor:
    """(C,) per channel the smallest maximum that may enter: the k-th value (-inf while a slot is empty)."""
    v, _ = decode(crop.threshold())
    return torch.nan_to_num(v, nan=float("-inf"))


def _reduce(name: str, out: torch.Tensor, floor: torch.Tensor | None) -> _Stats:
    """The reductions of one output, run inside its hook (the next layer may change it in place).

    For a map: per (image, channel) the maximum and mean over positions and the position of the
    first maximum (as :func:`torch.argmax` finds it, NaN counting as the largest value) where the
    maximum may enter the top-k: it reaches ``floor``, the channel's k-th value so far (None: all).

    A network fed channels-last batches (images decoded as HWC are) keeps channels-last maps;
    there pooling reads the map once in its memory order and gives maximum and position together,
    where amax/argmax across that order would cost more than the layer itself.
    """
    if out.dim() == 2:
        return _Stats("vector", tuple(out.shape[1:]), out)
    if out.dim() != 4:
        raise ValueError(f"layer {name}: output shape {tuple(out.shape[1:])} is neither (C, H, W) nor (F,)")
    b, c, h, w = out.shape
    if not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last):
        peak, at = F.max_pool2d(out, (h, w), return_indices=True)  # ties: the first position, like argmax
        peak, loc = peak.reshape(b, c), at.reshape(b, c).to(torch.int32)
        mean = F.avg_pool2d(out, (h, w)).reshape(b, c)
        odd = torch.isnan(peak)  # pooling keeps the last NaN, argmax the first: search those again
        if bool(odd.any()):
            rows, chans = odd.nonzero(as_tuple=True)
            loc[rows, chans] = out.flatten(2)[rows, chans].argmax(1).to(torch.int32)
        return _Stats("map", (c, h, w), peak, mean, loc)
    flat = out.contiguous().view(b, c, h * w)
    peak, mean = flat.amax(2), flat.mean(2)
    loc = torch.zeros((b, c), dtype=torch.int32)
    if floor is None:
        loc = flat.argmax(2).to(torch.int32)
    else:  # argmax is slow in this order: only where the maximum may enter
        maybe = ~(peak < floor[None])  # NaN and ties may enter
        if bool(maybe.any()):
            rows, chans = maybe.nonzero(as_tuple=True)
            loc[rows, chans] = flat.reshape(b * c, h * w).index_select(0, rows * c + chans).argmax(1).to(torch.int32)
    return _Stats("map", (c, h, w), peak, mean, loc)


def _ranges(index: torch.Tensor) -> list[tuple[int, int]]:
    idx = sorted(int(i) for i in index.tolist())
    if len(set(idx)) != len(idx):
        raise IndexMismatchError("a batch lists the same image twice")
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def map_batches(module: nn.Module, layers: Sequence[str],
                batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], k: int = 9) -> IndexPart:
    """The map step: the part of a shard given as an iterable of ``(x, index, label)`` batches."""
    acc = Accumulator(module, layers, k)
    for x, index, label in batches:
        acc.add(x, index, label)
    return acc.part


# --------------------------------------------------------------------------- reading a finished index


@dataclass(frozen=True)
class Example:
    """One max-activating example. Boxes are half-open ``(x0, y0, x1, y1)`` in network-input pixels."""

    rank: int
    value: float
    index: int
    ref: str
    label: int
    label_name: str | None
    pred: int
    pred_name: str | None
    box: tuple[int, int, int, int]
    field: tuple[int, int, int, int]
    off_image: tuple[str, ...]


def off_sides(fld: Sequence[int], size: tuple[int, int]) -> tuple[str, ...]:
    """The sides where a field (x0, y0, x1, y1) runs off an image of ``size`` (H, W)."""
    h, w = size
    x0, y0, x1, y1 = (int(v) for v in fld)
    return tuple(s for s, off in (("left", x0 < 0), ("top", y0 < 0), ("right", x1 > w), ("bottom", y1 > h)) if off)


_AXIS_ARRAYS = ("lo", "hi", "tlo", "thi")


def fields_to_arrays(fields: Mapping[str, LayerField | None], layers: Iterable[str]) -> dict[str, np.ndarray]:
    """The receptive-field geometry of ``layers`` as flat arrays (``layer|axis|attr``), for the index file."""
    out: dict[str, np.ndarray] = {}
    for name in layers:
        lf = fields.get(name)
        if lf is None:
            continue
        for ax_name, ax in (("y", lf.y), ("x", lf.x)):
            for attr in _AXIS_ARRAYS:
                out[f"{name}|{ax_name}|{attr}"] = np.asarray(getattr(ax, attr), dtype=np.int32)
            out[f"{name}|{ax_name}|meta"] = np.array([ax.jump, ax.size, int(lf.spatial)], dtype=np.int64)
    return out


def fields_from_arrays(arrays: Mapping[str, np.ndarray], size: tuple[int, int]) -> dict[str, LayerField]:
    from app.core.receptive import Axis

    names = {k.split("|", 1)[0] for k in arrays if k.count("|") == 2}
    out: dict[str, LayerField] = {}
    for name in names:
        axes = []
        spatial = True
        for ax_name in ("y", "x"):
            jump, n, sp = (int(v) for v in arrays[f"{name}|{ax_name}|meta"])
            spatial = bool(sp)
            axes.append(Axis(*(np.asarray(arrays[f"{name}|{ax_name}|{a}"], dtype=np.int64) for a in _AXIS_ARRAYS),
                             jump=jump, size=n))
        out[name] = LayerField(name, axes[0], axes[1], spatial, size)
    return out


@dataclass
class ExamplesIndex:
    """A finished index: the part, its metadata (model, data set, labels, refs) and the receptive fields
    of its layers (boxes are computed from them when examples are read)."""

    part: IndexPart
    meta: dict[str, object]
    fields: dict[str, LayerField]

    @property
    def size(self) -> tuple[int, int]:
        s = self.meta["input_size"]
        return int(s[1]), int(s[2])  # type: ignore[index]

    def layer(self, layer: str) -> LayerTopK:
        return self.part.layers[self.part.canonical(layer)]

    def has_layer(self, layer: str) -> bool:
        return self.part.canonical(layer) in self.part.layers

    def examples(self, layer: str, channel: int, mode: str = "crop", k: int | None = None) -> list[Example]:
        """The best ``k`` examples of one channel (fewer when the data set has fewer images)."""
        name = self.part.canonical(layer)
        lt = self.part.layers[name]
        stored = "unit" if lt.kind == "vector" else mode
        t = lt.modes[stored]
        lf = self.fields.get(name) if stored != "image" and not (lt.kind == "vector" and mode == "image") else None
        values, index = decode(t.keys[channel])
        refs: dict[str, str] = self.meta.get("refs", {})  # type: ignore[assignment]
        classes: list[str] = self.meta.get("classes") or []  # type: ignore[assignment]
        cats: list[str] = self.meta.get("categories") or []  # type: ignore[assignment]
        h, w = self.size
        out = []
        for r in range(min(k or t.k, t.k)):
            i = int(index[r])
            if i < 0:
                break
            if lf is None:
                box = fld = (0, 0, w, h)
            else:
                yi, xi = lf.unit(channel, int(t.loc[channel, r]))
                box, fld = lf.box(yi, xi), lf.field(yi, xi)
            lab, prd = int(t.label[channel, r]), int(t.pred[channel, r])
            out.append(Example(rank=r, value=float(values[r]), index=i, ref=refs.get(str(i), ""), label=lab,
                               label_name=classes[lab] if 0 <= lab < len(classes) else None, pred=prd,
                               pred_name=cats[prd] if 0 <= prd < len(cats) else None, box=box, field=fld,  # type: ignore[arg-type]
                               off_image=off_sides(fld, (h, w))))
        return out

    def referenced(self) -> set[int]:
        """Every data set index that appears in some top-k."""
        idx: set[int] = set()
        for lt in self.part.layers.values():
            for t in lt.modes.values():
                _, i = decode(t.keys)
                idx.update(int(v) for v in torch.unique(i).tolist() if v >= 0)
        return idx

    def to_bytes(self) -> bytes:
        return self.part.to_npz(self.meta, fields_to_arrays(self.fields, self.part.layers))

    @classmethod
    def from_bytes(cls, data: bytes) -> ExamplesIndex:
        part, meta, extra = IndexPart.from_npz(data)
        size = meta["input_size"]
        return cls(part, meta, fields_from_arrays(extra, (int(size[1]), int(size[2]))))  # type: ignore[index]


def finalize(part: IndexPart, fields: Mapping[str, LayerField | None], meta: dict[str, object],
             ref_of: Callable[[int], str]) -> ExamplesIndex:
    """Turn a complete part into an index: the receptive fields of its layers, refs of the examples."""
    idx = ExamplesIndex(part, dict(meta), {n: f for n in part.layers if (f := fields.get(n)) is not None})
    idx.meta["refs"] = {str(i): ref_of(i) for i in sorted(idx.referenced())}
    idx.meta["count"] = part.count
    return idx

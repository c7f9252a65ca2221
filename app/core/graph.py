"""The data flow between a model's layers, derived from the model itself: which layer's output each
layer reads, the skip connections, and the blocks the layers belong to.

The model is traced symbolically with :mod:`torch.fx`, every module without children (each one a
layer, or a placeholder such as timm's ``aa``/``se``/``drop_path`` Identities) kept as one opaque
call. Modules with children are traced through, so timm's normalisation + activation modules become
their ``F.batch_norm`` call, their ``drop`` child (the layer that :func:`app.core.probe.layer_modules`
names after the module) and their ``act`` child. Every traced node is then reduced to the served
layers it depends on: a node that is not one of ``layers`` (an addition, a functional flatten, an
Identity placeholder, a parameter) hands on the layers of its inputs; a layer's node starts afresh.

An edge ``a -> b`` says that ``b`` reads a tensor computed from ``a``'s output with no other served
layer in between. Its kind is ``"skip"`` when another input of the same call of ``b`` is itself computed
from ``a`` (the edge bypasses that path: a residual shortcut), else ``"data"``. A module run twice (a
ResNet block's ``relu``, after ``bn1`` and after the sum) is one layer, placed where it first runs, with
the inputs of both calls; each call is judged on its own inputs.

A layer's group is the block it belongs to: the module path of its parent, less the trailing parts
that are layers themselves (``blocks.0.0.bn1.act`` -> ``blocks.0.0``); top-level layers have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import fx, nn

from app.core.probe import layer_modules


class GraphError(RuntimeError):
    """A model whose forward pass does not trace symbolically (data-dependent control flow)."""


@dataclass(frozen=True)
class Edge:
    """``source``'s output flows into ``target`` (``kind``: "data" or "skip")."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True)
class Group:
    """A block of consecutive layers (in data-flow order) under one module path."""

    name: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class LayerGraph:
    """The layers in data-flow order, the edges between them and their groups."""

    order: tuple[str, ...]
    edges: tuple[Edge, ...]
    groups: tuple[Group, ...]
    group_of: dict[str, str | None] = field(default_factory=dict)

    def sources(self, layer: str) -> list[str]:
        return [e.source for e in self.edges if e.target == layer]


class _LeafTracer(fx.Tracer):
    """Keeps every module without children as one call (and any module named in ``leaves``)."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not m._modules or module_qualified_name in self.leaves


def trace_graph(module: nn.Module) -> fx.Graph:
    """The fx graph of ``module`` with its childless modules as calls; :class:`GraphError` if it does not trace."""
    try:
        return _LeafTracer(set()).trace(module)
    except Exception as e:  # noqa: BLE001 - any tracing failure is the same answer: no graph
        raise GraphError(f"{type(module).__name__} does not trace symbolically: {e}") from e


def layer_graph(module: nn.Module, layers: Sequence[str]) -> LayerGraph:
    """The data flow between ``layers`` (names of :func:`app.core.probe.layer_modules`) of ``module``."""
    wanted = set(layers)
    mods = layer_modules(module)
    by_module: dict[str, str] = {}  # the module path that a traced call names -> the layer it computes
    named = {id(m): n for n, m in module.named_modules()}
    for name in layers:
        m = mods.get(name)
        if m is not None and id(m) in named:
            by_module[named[id(m)]] = name
    graph = trace_graph(module)
    # per traced node: the nearest layers it is computed from, each with the layers upstream of that very call
    # (a module run twice, such as a ResNet block's relu, has two calls with different inputs)
    feeds: dict[fx.Node, dict[str, frozenset[str]]] = {}
    inputs: dict[str, set[str]] = {}
    skip: set[tuple[str, str]] = set()
    order: list[str] = []
    for node in graph.nodes:
        upstream: dict[str, frozenset[str]] = {}
        for a in node.all_input_nodes:
            for n, anc in feeds.get(a, {}).items():
                upstream[n] = upstream.get(n, frozenset()) | anc
        layer = by_module.get(str(node.target)) if node.op == "call_module" else None
        if layer is not None and layer in wanted:
            srcs = set(upstream) - {layer}
            inputs.setdefault(layer, set()).update(srcs)
            # a skip: this call reads ``s`` and also another input that is itself computed from ``s``
            skip.update((s, layer) for s in srcs if any(s in upstream[o] for o in srcs if o != s))
            if layer not in order:
                order.append(layer)
            feeds[node] = {layer: frozenset(upstream).union(*upstream.values())}
        else:
            feeds[node] = upstream
    rank = {n: i for i, n in enumerate(order)}
    edges = []
    for name in order:
        for s in sorted(inputs.get(name, ()), key=rank.__getitem__):
            edges.append(Edge(s, name, "skip" if (s, name) in skip else "data"))
    group_of = {n: group_name(n, wanted) for n in order}
    groups: list[Group] = []
    for n in order:
        g = group_of[n]
        if g is None:
            continue
        if groups and groups[-1].name == g:
            groups[-1] = Group(g, (*groups[-1].layers, n))
        else:
            groups.append(Group(g, (n,)))
    return LayerGraph(order=tuple(order), edges=tuple(edges), groups=tuple(groups), group_of=group_of)


def group_name(layer: str, layers: set[str]) -> str | None:
    """The block of ``layer``: its parent's module path, less trailing parts that are layers themselves."""
    parent = layer.rpartition(".")[0]
    while parent and parent in layers:
        parent = parent.rpartition(".")[0]
    return parent or None

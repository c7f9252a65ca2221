"""The overview of a whole network for one photo: every layer a node in data-flow order, the edges of the
real data flow (skip connections included, from :mod:`app.core.graph`), the blocks, and per layer the
photo's most active channels (from the engine's per-channel stats: one pass that keeps no output).

:func:`overview` is the JSON; :func:`sections` arranges the same data for the page: runs of layers,
each block a collapsible run, with the skip edges that bypass a whole block marked on it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from app.core.graph import Edge, GraphError, Group, LayerGraph, layer_graph
from app.core.inference import Overview
from app.core.zoo import LoadedModel
from app.store.database import ImageRecord

TOP = 3  # the most active channels shown per layer
OPEN_UP_TO = 40  # a network with at most this many layers shows its blocks open

_graphs: dict[tuple[str, str], LayerGraph] = {}
_untraced: set[tuple[str, str]] = set()
_lock = threading.Lock()


def graph_of(lm: LoadedModel) -> LayerGraph:
    """The model's layer graph, traced once per (model, weights); a model that does not trace symbolically
    gets its layers in order, each fed by the one before (``traced`` is then false in the JSON)."""
    key = (lm.name, lm.weights_sha256)
    with _lock:
        hit = _graphs.get(key)
    if hit is not None:
        return hit
    names = [li.name for li in lm.layers]
    try:
        g = layer_graph(lm.module, names)
    except GraphError:
        g = LayerGraph(order=tuple(names), edges=tuple(Edge(a, b, "data") for a, b in zip(names, names[1:])),
                       groups=(), group_of=dict.fromkeys(names))
        with _lock:
            _untraced.add(key)
    with _lock:
        _graphs[key] = g
    return g


def top_channels(ov: Overview, layer: str, k: int = TOP) -> list[dict[str, float | int]]:
    """The ``k`` channels with the highest maximum over the positions (ties: the lower channel first)."""
    _, hi, mean = ov.stats[layer]
    idx = np.argsort(-hi, kind="stable")[:k]
    return [{"channel": int(c), "max": float(hi[c]), "mean": float(mean[c])} for c in idx]


def bypassed_groups(g: LayerGraph) -> dict[str, Edge]:
    """Blocks that a skip edge goes around exactly: its source is the layer just before the block and
    its target the layer just after (a residual block: output = block(input) + input)."""
    rank = {n: i for i, n in enumerate(g.order)}
    out: dict[str, Edge] = {}
    for grp in g.groups:
        before, after = rank[grp.layers[0]] - 1, rank[grp.layers[-1]] + 1
        for e in g.edges:
            if e.kind == "skip" and rank[e.source] == before and rank[e.target] == after:
                out[grp.name] = e
    return out


def overview(lm: LoadedModel, ov: Overview, rec: ImageRecord) -> dict[str, Any]:
    """The JSON: nodes (layer, type, shape, params, group, top_channels), edges (from, to, kind), groups."""
    g = graph_of(lm)
    info = {li.name: li for li in lm.layers}
    bypass = bypassed_groups(g)
    nodes = [{"layer": n, "type": info[n].type, "shape": list(info[n].output_shape), "params": info[n].parameters,
              "group": g.group_of.get(n), "top_channels": top_channels(ov, n)} for n in g.order]
    return {"image": rec.id, "model": lm.name, "traced": (lm.name, lm.weights_sha256) not in _untraced,
            "nodes": nodes,
            "edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in g.edges],
            "groups": [{"name": grp.name, "layers": list(grp.layers), "bypassed_by_skip": grp.name in bypass}
                       for grp in g.groups]}


def sections(lm: LoadedModel, ov: Overview) -> list[dict[str, Any]]:
    """The page's rows: runs of consecutive layers, a block's run collapsible, each node with its incoming
    edges that do not come from the layer just before it (skips and branches)."""
    g = graph_of(lm)
    info = {li.name: li for li in lm.layers}
    rank = {n: i for i, n in enumerate(g.order)}
    bypass = bypassed_groups(g)
    incoming: dict[str, list[Edge]] = {}
    for e in g.edges:
        if rank[e.target] - rank[e.source] != 1:
            incoming.setdefault(e.target, []).append(e)
    rows: list[dict[str, Any]] = []
    by_group: dict[str, Group] = {grp.layers[0]: grp for grp in g.groups}
    run: list[str] = []

    def node(n: str) -> dict[str, Any]:
        li = info[n]
        return {"layer": n, "type": li.type, "shape": li.output_shape, "params": li.parameters,
                "spatial": li.is_spatial, "top": top_channels(ov, n),
                "from": [(e.source, e.kind) for e in incoming.get(n, [])]}

    def flush() -> None:
        if run:
            rows.append({"group": None, "nodes": [node(n) for n in run]})
            run.clear()

    i = 0
    order = list(g.order)
    while i < len(order):
        n = order[i]
        grp = by_group.get(n)
        if grp is None:
            run.append(n)
            i += 1
            continue
        flush()
        first, last = info[grp.layers[0]], info[grp.layers[-1]]
        skip = bypass.get(grp.name)
        rows.append({"group": grp.name, "nodes": [node(m) for m in grp.layers], "open": len(order) <= OPEN_UP_TO,
                     "shape_in": first.output_shape, "shape_out": last.output_shape,
                     "skip": (skip.source, skip.target) if skip else None})
        i += len(grp.layers)
    flush()
    return rows

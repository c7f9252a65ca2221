"""JSON shape of a network's overview for one photo: nodes, edges (data flow and skips), blocks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TopChannel(BaseModel):
    channel: int
    max: float
    mean: float


class OverviewNode(BaseModel):
    layer: str
    type: str
    shape: list[int]
    params: int
    group: str | None = Field(description="the block (module path) the layer belongs to; null at the top level")
    top_channels: list[TopChannel] = Field(description="the photo's most active channels (highest maximum first)")


class OverviewEdge(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    kind: str = Field(description='"data", or "skip" when the edge bypasses another input of its target (a shortcut)')


class OverviewGroup(BaseModel):
    name: str
    layers: list[str]
    bypassed_by_skip: bool = Field(description="a skip edge goes around exactly this block (a residual block)")


class OverviewOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "image": "0aacbbeb7c4dc1ce", "model": "lenet", "traced": True,
        "nodes": [{"layer": "conv1", "type": "Conv2d", "shape": [8, 28, 28], "params": 608, "group": None,
                   "top_channels": [{"channel": 4, "max": 12.36, "mean": 2.02}, {"channel": 6, "max": 5.47, "mean": -0.01}]},
                  {"layer": "relu1", "type": "ReLU", "shape": [8, 28, 28], "params": 0, "group": None,
                   "top_channels": [{"channel": 4, "max": 12.36, "mean": 3.3}]}],
        "edges": [{"from": "conv1", "to": "relu1", "kind": "data"}], "groups": []}]})

    image: str
    model: str
    traced: bool = Field(description="false when the model did not trace: then the edges only chain the layers in order")
    nodes: list[OverviewNode] = Field(description="every layer, in data-flow order")
    edges: list[OverviewEdge]
    groups: list[OverviewGroup]

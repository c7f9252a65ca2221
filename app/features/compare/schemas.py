"""Shapes of GET /api/compare: the two sides and the per-layer difference statistics."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.features.analysis.schemas import PredictionOut


class SideOut(BaseModel):
    image: str
    model: str
    title: str
    filename: str
    predictions: list[PredictionOut]


class ChangedChannelOut(BaseModel):
    channel: int
    mean_abs_diff: float


class LayerRowOut(BaseModel):
    index: int
    a: str | None = Field(description="the layer of side a (null: no counterpart)")
    b: str | None
    type_a: str | None
    type_b: str | None
    shape_a: list[int] | None = Field(description="C, H, W for maps; F for vectors")
    shape_b: list[int] | None
    same_shape: bool = Field(description="the statistics below are given only for layers of the same shape")
    mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    relative_diff: float | None = Field(None, description="mean |a-b| over the mean magnitude of a and b")
    cosine: float | None = None
    per_channel_mean_abs_diff: list[float] | None = None
    most_changed_channels: list[ChangedChannelOut] | None = None


class CompareOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "a": {"image": "a1b2c3d4e5f6", "model": "cifarnet", "title": "CifarNet", "filename": "cat.jpg",
              "predictions": [{"index": 3, "label": "cat", "probability": 0.82}]},
        "b": {"image": "f6e5d4c3b2a1", "model": "cifarnet", "title": "CifarNet", "filename": "dog.jpg",
              "predictions": [{"index": 5, "label": "dog", "probability": 0.77}]},
        "paired_by": "name",
        "layers": [{"index": 0, "a": "conv1", "b": "conv1", "type_a": "Conv2d", "type_b": "Conv2d",
                    "shape_a": [32, 32, 32], "shape_b": [32, 32, 32], "same_shape": True, "mean_abs_diff": 0.21,
                    "max_abs_diff": 2.4, "relative_diff": 0.35, "cosine": 0.81,
                    "per_channel_mean_abs_diff": [0.1, 0.3],
                    "most_changed_channels": [{"channel": 1, "mean_abs_diff": 0.3}]}]}]})

    a: SideOut
    b: SideOut
    paired_by: str = Field(description="name (same architecture) or position")
    layers: list[LayerRowOut]

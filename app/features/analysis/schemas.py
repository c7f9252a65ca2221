"""JSON shapes of a photo's analysis: predictions, every layer's stats, one layer's activation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictionOut(BaseModel):
    index: int
    label: str
    probability: float


class PredictionsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"image": "0aacbbeb7c4dc1ce",
         "model": "lenet",
         "predictions": [{"index": 6, "label": "frog", "probability": 0.1133},
                         {"index": 1, "label": "automobile", "probability": 0.1085}]}
    ]})

    image: str
    model: str
    predictions: list[PredictionOut]
    ablated: dict[str, list[int]] | None = Field(None, description="the channels switched off (ablate=), by layer")


class LayerStats(BaseModel):
    name: str
    type: str
    shape: list[int]
    min: list[float]
    max: list[float]
    mean: list[float]


class AnalysisOut(PredictionsOut):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"image": "0aacbbeb7c4dc1ce",
         "model": "lenet",
         "layers": [{"name": "conv1",
                     "type": "Conv2d",
                     "shape": [8, 28, 28],
                     "min": [-0.7389, -1.832],
                     "max": [1.091, 1.767],
                     "mean": [0.07766, 0.08122]},
                    {"name": "relu1",
                     "type": "ReLU",
                     "shape": [8, 28, 28],
                     "min": [0.0, 0.0],
                     "max": [1.091, 1.767],
                     "mean": [0.1908, 0.3724]}],
         "predictions": [{"index": 6, "label": "frog", "probability": 0.1133},
                         {"index": 1, "label": "automobile", "probability": 0.1085}]}
    ]})

    layers: list[LayerStats]


class ActivationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"image": "0aacbbeb7c4dc1ce",
         "model": "lenet",
         "layer": "conv1",
         "shape": [28, 28],
         "dtype": "float32",
         "min": [-0.7389],
         "max": [1.091],
         "mean": [0.07766],
         "values": [[-0.1806, -0.1978], [-0.1601, -0.1795]]}
    ]})

    image: str
    model: str
    layer: str
    shape: list[int]
    dtype: str
    min: list[float]
    max: list[float]
    mean: list[float]
    values: Any = Field(description="nested lists in the shape above")

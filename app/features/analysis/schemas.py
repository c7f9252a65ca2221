"""JSON shapes of a photo's analysis: predictions, every layer's stats, one layer's activation."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    index: int
    label: str
    probability: float


class PredictionsOut(BaseModel):
    image: str
    model: str
    predictions: list[PredictionOut]


class LayerStats(BaseModel):
    name: str
    type: str
    shape: list[int]
    min: list[float]
    max: list[float]
    mean: list[float]


class AnalysisOut(PredictionsOut):
    layers: list[LayerStats]


class ActivationOut(BaseModel):
    image: str
    model: str
    layer: str
    shape: list[int]
    dtype: str
    min: list[float]
    max: list[float]
    mean: list[float]
    values: Any = Field(description="nested lists in the shape above")

"""JSON shapes of the API (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")
    code: str
    valid: list[str] | None = Field(None, description="the names that exist, for unknown names")


class LayerOut(BaseModel):
    name: str = Field(description="named_modules() path")
    type: str
    output_shape: list[int] = Field(description="C, H, W for maps; F for vectors")
    parameters: int
    kernel_size: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | None = None


class ModelSummary(BaseModel):
    name: str
    title: str
    source: str
    input_size: list[int]
    num_classes: int
    parameters: int
    test_accuracy: float | None = None


class ModelDetail(ModelSummary):
    categories: list[str]
    first_conv: str
    weights_sha256: str
    preprocessing: dict[str, Any]
    layers: list[LayerOut]
    card: dict[str, Any]


class ImageOut(BaseModel):
    id: str
    width: int
    height: int
    sha256: str = Field(description="sha256 of the uploaded bytes")
    original_width: int
    original_height: int
    format: str
    filename: str
    created: float
    url: str = Field(description="the stored picture (PNG, upright, no metadata)")


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


class FiltersOut(BaseModel):
    model: str
    layer: str
    shape: list[int] = Field(description="K, C, kh, kw")
    min: float
    max: float
    values: Any = Field(description="nested lists K x C x kh x kw")

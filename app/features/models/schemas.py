"""JSON shapes of the served models (list, detail with layers, learned filters) and how a loaded model fills them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.core.zoo import LoadedModel


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


class FiltersOut(BaseModel):
    model: str
    layer: str
    shape: list[int] = Field(description="K, C, kh, kw")
    min: float
    max: float
    values: Any = Field(description="nested lists K x C x kh x kw")


def model_summary(lm: LoadedModel) -> ModelSummary:
    return ModelSummary(name=lm.name, title=lm.spec.title, source=lm.spec.source,
                        input_size=list(lm.spec.preprocess.input_size), num_classes=len(lm.spec.categories),
                        parameters=lm.total_parameters, test_accuracy=lm.spec.card.get("test_accuracy"))


def layer_out(li: object) -> LayerOut:
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(li).items()}
    return LayerOut(**d)


def model_detail(lm: LoadedModel) -> ModelDetail:
    p = lm.spec.preprocess
    return ModelDetail(**model_summary(lm).model_dump(), categories=list(lm.spec.categories),
                       first_conv=lm.first_conv, weights_sha256=lm.weights_sha256,
                       preprocessing={"resize_shorter_side": p.resize, "center_crop": p.crop, "mean": list(p.mean),
                                      "std": list(p.std)},
                       layers=[layer_out(li) for li in lm.layers], card=lm.spec.card)

"""JSON shapes of the served models (list, detail with layers, learned filters and their likeness to hand-made
ones, receptive fields) and how a loaded model fills them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.zoo import LoadedModel


class LayerOut(BaseModel):
    name: str = Field(description="named_modules() path")
    type: str
    output_shape: list[int] = Field(description="C, H, W for maps; F for vectors")
    parameters: int
    kernel_size: list[int] | None = None
    stride: list[int] | None = None
    padding: list[int] | None = None


_SUMMARY_EXAMPLE = {"name": "lenet", "title": "lenet (random weights)", "source": "test", "input_size": [3, 32, 32],
                    "num_classes": 10, "parameters": 62958, "test_accuracy": None}


class ModelSummary(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    name: str
    title: str
    source: str
    input_size: list[int]
    num_classes: int
    parameters: int
    test_accuracy: float | None = None


class ModelDetail(ModelSummary):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_SUMMARY_EXAMPLE,
         "categories": ["airplane", "automobile"],
         "first_conv": "conv1",
         "weights_sha256": "764709e90e87f32bed911e2f1f824f64d242b55acf2be7a5dfae0cafb25584a5",
         "preprocessing": {"resize_shorter_side": 32,
                           "center_crop": 32,
                           "mean": [0.4914, 0.4822],
                           "std": [0.247, 0.2435]},
         "layers": [{"name": "conv1",
                     "type": "Conv2d",
                     "output_shape": [8, 28, 28],
                     "parameters": 608,
                     "kernel_size": [5, 5],
                     "stride": [1, 1],
                     "padding": [0, 0]},
                    {"name": "relu1",
                     "type": "ReLU",
                     "output_shape": [8, 28, 28],
                     "parameters": 0,
                     "kernel_size": None,
                     "stride": None,
                     "padding": None}],
         "card": {"test_accuracy": None}}
    ]})

    categories: list[str]
    first_conv: str
    weights_sha256: str
    preprocessing: dict[str, Any]
    layers: list[LayerOut]
    card: dict[str, Any]


class FiltersOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "lenet",
         "layer": "conv1",
         "shape": [8, 3, 5, 5],
         "min": -0.1142,
         "max": 0.1153,
         "values": [[[[0.0595, -0.05097], [0.06925, -0.02376]], [[0.005529, 0.06883], [0.03226, 0.1095]]],
                    [[[0.02539, 0.04198], [-0.08119, -0.08712]], [[0.1058, -0.02136], [-0.0982, 0.1108]]]]}
    ]})

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


class FilterLikenessOut(BaseModel):
    filter: int
    match: str = Field(description="the most similar hand-made filter")
    similarity: float = Field(description="|cosine| for an edge filter (either direction), the cosine otherwise")
    inverted: bool = Field(description="an edge filter matched with dark and light swapped (negative cosine)")
    cosines: dict[str, float] = Field(description="the signed cosine with every compared hand-made filter")
    caption: dict[str, str] = Field(description="the caption, by language")


class LikenessStepOut(BaseModel):
    snapshot: str = Field(description="epoch-003 ... or final")
    epoch: int | None
    mean_best: float
    best: float
    top: dict[str, Any] | None


class LikenessOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "cifarnet", "layer": "block1.0", "compared": ["vertical_edges", "horizontal_edges", "sobel_x",
                                                                "sobel_y", "blur", "sharpen"],
         "mean_best": 0.41, "best": 0.87,
         "filters": [{"filter": 5, "match": "vertical_edges", "similarity": 0.87, "inverted": False,
                      "cosines": {"vertical_edges": 0.87, "horizontal_edges": 0.02, "sobel_x": 0.85, "sobel_y": 0.01,
                                  "blur": -0.05, "sharpen": 0.0},
                      "caption": {"en": "filter 5 ≈ vertical edges, 0.87", "es": "filtro 5 ≈ Bordes verticales, 0,87"}}],
         "over_training": [{"snapshot": "epoch-000", "epoch": 0, "mean_best": 0.28, "best": 0.5,
                            "top": {"filter": 3, "match": "blur", "similarity": 0.5}}]}
    ]})

    model: str
    layer: str = Field(description="the first convolution")
    compared: list[str] = Field(description="the lecture's hand-made filters compared with")
    mean_best: float = Field(description="the mean over the filters of their best similarity")
    best: float
    filters: list[FilterLikenessOut] = Field(description="every filter, most similar first")
    over_training: list[LikenessStepOut] = Field(description="the same at every training snapshot, then final")


class ReceptiveOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "lenet", "layer": "conv2", "input_size": [32, 32], "shape": [10, 10],
         "rows": [[0, 10], [2, 12]], "cols": [[0, 10], [2, 12]], "y": 1, "x": 0,
         "box": [0, 2, 10, 12], "field": [0, 2, 10, 12]}
    ]})

    model: str
    layer: str
    input_size: list[int] = Field(description="H, W of the network's input picture")
    shape: list[int] = Field(description="h, w of the layer's map")
    rows: list[list[int]] = Field(description="per row of the map, the input rows [y0, y1) its units depend on")
    cols: list[list[int]] = Field(description="per column of the map, the input columns [x0, x1)")
    y: int | None = None
    x: int | None = None
    box: list[int] | None = Field(None, description="x0, y0, x1, y1 (half-open) of position (y, x): the pixels it reads")
    field: list[int] | None = Field(None, description="x0, y0, x1, y1 of its textbook field, may run past the image")

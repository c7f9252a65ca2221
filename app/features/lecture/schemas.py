"""Request and response models of the lecture's JSON faces (``/api/lecture/...``).

Sizes are checked by :mod:`app.core.lecture` (its messages say what is wrong and what to do); the
list lengths here are only a hard ceiling on what is parsed at all.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.http.responses import StrictBody

Num = int | Annotated[float, Field(allow_inf_nan=False)]
RowIn = Annotated[list[Num], Field(max_length=256)]
MatrixIn = Annotated[list[RowIn], Field(max_length=256, description="rows of numbers, all of the same length")]
VolumeIn = Annotated[list[MatrixIn], Field(max_length=64, description="channels, each a matrix (c × h × w)")]
Matrix = list[list[Num]]

LIMITS = ("Limits: input at most 64×64, kernel at most 7×7, padding 0…6, stride 1…8.")


class Conv2dIn(StrictBody):
    input: MatrixIn = Field(description="the input matrix (h × w), e.g. the deck's 8×8")
    kernel: MatrixIn = Field(description="the filter (kernel), e.g. the deck's 3×3")
    padding: int = Field(0, description="zero padding p on every side (0…6)")
    stride: int = Field(1, description="stride S (1…8)")
    steps: bool = Field(True, description="include every step (window, products, sum)")

    model_config = {"json_schema_extra": {"examples": [{
        "input": [[1, 7, 7, 8, 9, 4, 2, 6], [3, 8, 6, 3, 4, 9, 6, 0], [4, 7, 4, 7, 0, 1, 1, 4],
                  [6, 6, 2, 6, 3, 6, 2, 5], [8, 5, 1, 2, 2, 0, 6, 3], [0, 5, 5, 4, 2, 7, 9, 3],
                  [6, 3, 9, 1, 9, 6, 0, 9], [1, 4, 0, 5, 2, 1, 0, 1]],
        "kernel": [[3, 3, 5], [2, 1, 1], [3, 0, 4]], "padding": 0, "stride": 1}]}}


class OutputSizeOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"n": 32,
         "f": 5,
         "p": 0,
         "s": 1,
         "padded": 32,
         "size": 28,
         "exact": True,
         "formula": "⌊(32 + 2·0 − 5)/1⌋ + 1 = 28"}
    ]})

    n: int
    f: int
    p: int
    s: int
    padded: int = Field(description="n + 2p")
    size: int = Field(description="⌊(n + 2p − f)/S⌋ + 1")
    exact: bool = Field(description="(n + 2p − f) is a multiple of S: the last window reaches the border")
    formula: str = Field(description="the formula with the numbers filled in")


class ConvStepOut(BaseModel):
    index: int = Field(description="0-based, row by row over the output")
    row: int = Field(description="output row")
    col: int = Field(description="output column")
    top: int = Field(description="window's first row in the padded input")
    left: int = Field(description="window's first column in the padded input")
    window: Matrix
    products: Matrix = Field(description="window[a][b] · kernel[a][b]")
    sum: Num
    expression: str = Field(description="the products column by column, as the deck writes them, and the sum")


class Conv2dOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"input": [[1, 7], [3, 8]],
         "kernel": [[3, 3, 5], [2, 1, 1]],
         "padding": 0,
         "stride": 1,
         "padded": [[1, 7], [3, 8]],
         "output": [[107, 156], [108, 124]],
         "output_shape": [6, 6],
         "output_size": {"n": 8,
                         "f": 3,
                         "p": 0,
                         "s": 1,
                         "padded": 8,
                         "size": 6,
                         "exact": True,
                         "formula": "⌊(8 + 2·0 − 3)/1⌋ + 1 = 6"},
         "steps": [{"index": 0,
                    "row": 0,
                    "col": 0,
                    "top": 0,
                    "left": 0,
                    "window": [[1, 7, 7], [3, 8, 6]],
                    "products": [[3, 21, 35], [6, 8, 6]],
                    "sum": 107,
                    "expression": "1·3 + 3·2 + 4·3 + 7·3 + 8·1 + 7·0 + 7·5 + 6·1 + 4·4 = 107"},
                   {"index": 1,
                    "row": 0,
                    "col": 1,
                    "top": 0,
                    "left": 1,
                    "window": [[7, 7, 8], [8, 6, 3]],
                    "products": [[21, 21, 40], [16, 6, 3]],
                    "sum": 156,
                    "expression": "7·3 + 8·2 + 7·3 + 7·3 + 6·1 + 4·0 + 8·5 + 3·1 + 7·4 = 156"}]}
    ]})

    input: Matrix
    kernel: Matrix
    padding: int
    stride: int
    padded: Matrix = Field(description="the input with p zeros around it")
    output: Matrix
    output_shape: list[int] = Field(description="[rows, columns]")
    output_size: OutputSizeOut = Field(description="the size formula for the rows")
    steps: list[ConvStepOut] | None = None


class Conv3dIn(StrictBody):
    input: VolumeIn = Field(description="c × h × w (channels first, e.g. R, G, B)")
    filters: Annotated[list[VolumeIn], Field(max_length=64)] = Field(
        description="K filters, each c × f × f (as deep as the input)")
    bias: Annotated[list[Num], Field(max_length=64)] | None = Field(None, description="one per filter (default 0)")
    padding: int = Field(0, description="zero padding p (0…6)")
    stride: int = Field(1, description="stride S (1…8)")
    relu: bool = Field(True, description="apply ReLU to conv + bias")
    pixel: Annotated[list[int], Field(min_length=2, max_length=2)] = Field(
        [0, 0], description="[row, column] of the output pixel whose per-channel partial sums are detailed")

    model_config = {"json_schema_extra": {"examples": [{
        "input": [[[1, 2, 0], [0, 1, 3], [2, 2, 1]], [[0, 1, 1], [1, 0, 0], [2, 1, 0]],
                  [[3, 0, 1], [1, 1, 1], [0, 2, 2]]],
        "filters": [[[[1, 0], [0, -1]], [[0, 1], [1, 0]], [[1, 1], [0, 0]]]],
        "bias": [-1], "padding": 0, "stride": 1, "relu": True, "pixel": [0, 0]}]}}


class ChannelPartOut(BaseModel):
    channel: int
    window: Matrix
    weights: Matrix
    partial: Num = Field(description="Σ window · weights over this channel's f×f slice")


class PixelFilterOut(BaseModel):
    filter: int
    channels: list[ChannelPartOut]
    bias: Num
    pre_activation: Num = Field(description="Σ partials + bias")
    output: Num = Field(description="ReLU(pre_activation), or pre_activation without ReLU")


class PixelOut(BaseModel):
    row: int
    col: int
    filters: list[PixelFilterOut]


class Conv3dOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"output_shape": [2, 2, 1],
         "partial_sums": [[[[0, -1], [-2, 0]], [[2, 1], [2, 1]]]],
         "pre_activation": [[[4, 0], [1, 2]]],
         "output": [[[4, 0], [1, 2]]],
         "pixel": {"row": 0,
                   "col": 0,
                   "filters": [{"filter": 0,
                                "channels": [{"channel": 0,
                                              "window": [[1, 2], [0, 1]],
                                              "weights": [[1, 0], [0, -1]],
                                              "partial": 0},
                                             {"channel": 1,
                                              "window": [[0, 1], [1, 0]],
                                              "weights": [[0, 1], [1, 0]],
                                              "partial": 2}],
                                "bias": -1,
                                "pre_activation": 4,
                                "output": 4}]}}
    ]})

    output_shape: list[int] = Field(description="[h', w', K]: one 2D map per filter")
    partial_sums: list[list[Matrix]] = Field(description="K × c × h' × w': each channel's share")
    pre_activation: list[Matrix] = Field(description="K × h' × w': conv + bias")
    output: list[Matrix] = Field(description="K × h' × w': ReLU(conv + bias)")
    pixel: PixelOut


class PoolIn(StrictBody):
    input: MatrixIn = Field(description="the input matrix, e.g. the deck's 4×4")
    mode: Literal["max", "avg"] = "max"
    size: int = Field(2, description="window side (1…8)")
    stride: int | None = Field(None, description="stride (default: the window side)")
    upsample: int = Field(2, description="nearest-neighbour upsampling factor applied to the output (1…8)")

    model_config = {"json_schema_extra": {"examples": [{
        "input": [[1, 7, 7, 2], [3, 8, 6, 3], [4, 7, 4, 7], [6, 6, 2, 6]], "mode": "max", "size": 2, "stride": 2,
        "upsample": 2}]}}


class PoolWindowOut(BaseModel):
    row: int
    col: int
    top: int
    left: int
    values: Matrix
    result: Num


class PoolOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"mode": "max",
         "size": 2,
         "stride": 2,
         "output": [[8, 7], [7, 7]],
         "output_shape": [2, 2],
         "windows": [{"row": 0, "col": 0, "top": 0, "left": 0, "values": [[1, 7], [3, 8]], "result": 8},
                     {"row": 0, "col": 1, "top": 0, "left": 2, "values": [[7, 2], [6, 3]], "result": 7}],
         "upsample": 2,
         "upsampled": [[8, 8, 7, 7], [8, 8, 7, 7]],
         "parameters": 0}
    ]})

    mode: Literal["max", "avg"]
    size: int
    stride: int
    output: Matrix
    output_shape: list[int]
    windows: list[PoolWindowOut]
    upsample: int
    upsampled: Matrix = Field(description="the output upsampled (nearest: each value copied into a block)")
    parameters: int = Field(0, description="pooling learns no parameters")


class FcParamsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"width": 32,
         "height": 32,
         "channels": 3,
         "hidden": 100,
         "inputs": 3072,
         "fc_weights": 307200,
         "fc_biases": 100,
         "fc_total": 307300,
         "fc_formula": "32·32·3·H = 3,072·H",
         "conv_f": 5,
         "conv_k": 6,
         "conv_params": 456,
         "conv_formula": "(5·5·3 + 1)·6 = 456",
         "ratio": 673.9}
    ]})

    width: int
    height: int
    channels: int
    hidden: int
    inputs: int = Field(description="width · height · channels: weights of one hidden neuron")
    fc_weights: int = Field(description="inputs · H")
    fc_biases: int = Field(description="H")
    fc_total: int
    fc_formula: str
    conv_f: int
    conv_k: int
    conv_params: int = Field(description="(f·f·channels + 1)·K, whatever the image size")
    conv_formula: str
    ratio: float = Field(description="fc_total / conv_params")


class CnnLayerOut(BaseModel):
    name: str
    kind: Literal["input", "conv", "pool", "flatten", "linear"]
    shape: list[int] = Field(description="height × width × channels, or features")
    parameters: int
    formula: str
    filters: int | None = None
    f: int | None = None
    padding: int | None = None
    stride: int | None = None


class CnnShapesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"n": 32,
         "f1": 3,
         "f2": 3,
         "m": 100,
         "layers": [{"name": "input",
                     "kind": "input",
                     "shape": [32, 32, 1],
                     "parameters": 0,
                     "formula": "0",
                     "filters": None,
                     "f": None,
                     "padding": None,
                     "stride": None},
                    {"name": "conv1",
                     "kind": "conv",
                     "shape": [32, 32, 3],
                     "parameters": 30,
                     "formula": "(3·3·1 + 1)·3",
                     "filters": 3,
                     "f": 3,
                     "padding": 1,
                     "stride": 1}],
         "total": 129280}
    ]})

    n: int
    f1: int
    f2: int
    m: int
    layers: list[CnnLayerOut]
    total: int


class ParamRowOut(BaseModel):
    name: str
    type: str
    parameters: int
    formula: str | None = Field(description="for Conv, Linear and BatchNorm layers")
    output_shape: list[int] | None = Field(description="channels × height × width, or features")


class ParamTableOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "lecture-net",
         "rows": [{"name": "conv1",
                   "type": "Conv2d",
                   "parameters": 608,
                   "formula": "(5·5·3 + 1)·8",
                   "output_shape": [8, 28, 28]},
                  {"name": "pool1",
                   "type": "MaxPool2d",
                   "parameters": 0,
                   "formula": None,
                   "output_shape": [8, 14, 14]}],
         "total": 62958}
    ]})

    model: str
    rows: list[ParamRowOut]
    total: int = Field(description="Σ p.numel() over the model's parameters")


class HandFilterOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "vertical_edges", "kernels": [[[1, 0, -1], [1, 0, -1]]], "divisor": 1, "display": "signed"}
    ]})

    name: str
    kernels: list[Matrix]
    divisor: int
    display: Literal["grey", "signed", "magnitude"]


class FilterPhotoIn(StrictBody):
    image: Annotated[str, Field(max_length=64)] | None = Field(None, description="image id (default: the lecture's photo)")
    filter: Annotated[str, Field(max_length=32)] | None = Field(None, description="a named filter (GET /api/lecture/filters)")
    kernel: MatrixIn | None = Field(None, description="or your own kernel (at most 7×7)")
    format: Literal["png", "json"] = "png"


class FilterPhotoOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"filter": {"name": "vertical_edges", "kernels": [[[1, 0, -1], [1, 0, -1]]], "divisor": 1, "display": "signed"},
         "width": 384,
         "height": 384,
         "display": "signed",
         "lo": -1.584,
         "hi": 1.584,
         "min": -2.694,
         "max": 2.89,
         "png": "data:image/png;base64,iVBORw0KGgoAAAANSU..."}
    ]})

    filter: HandFilterOut
    width: int
    height: int
    display: Literal["grey", "signed", "magnitude"]
    lo: float = Field(description="the value drawn at the dark end of the colour scale")
    hi: float = Field(description="the value drawn at the bright end")
    min: float
    max: float
    png: str = Field(description="the output as a data: URI (PNG)")

"""JSON shape of a unit's arithmetic: the common fields; each kind (conv, pool, batchnorm, linear,
flatten, activation) adds its own terms (window, weights, partials, contributions...)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ArithmeticOut(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "image": "0aacbbeb7c4dc1ce", "model": "lenet", "layer": "conv1", "shape": [8, 28, 28], "input_shape": [3, 32, 32],
        "kind": "conv", "channel": 0, "y": 0, "x": 0, "input_channels": [0, 1, 2],
        "window": [[[-1.47, -1.35], [-1.54, -1.47]]], "inside": [[True, True], [True, True]], "window_origin": [0, 0],
        "kernel_size": [5, 5], "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1,
        "weights": [[[0.0115, 0.1417], [0.1361, 0.5583]]], "bias": 0.0421, "partials": [-1.62, 0.35, 2.06],
        "pre_activation": 0.8321, "output": 0.8321, "served": 0.8321}]})

    image: str
    model: str
    layer: str
    type: str
    kind: str = Field(description="conv, pool, batchnorm, linear, flatten or activation")
    channel: int
    y: int | None
    x: int | None
    shape: list[int]
    input_shape: list[int]
    output: float = Field(description="the unit's value recomputed from the terms (float64)")
    served: float = Field(description="the value the network computed (float32): the activation endpoint's")
    window: Any = Field(None, description="conv/pool: the input window per input channel (zeros in the padding)")
    weights: Any = Field(None, description="conv: the kernel of this output channel, per input channel")
    bias: float | None = None
    partials: list[float] | None = Field(None, description="conv: the sum of window × kernel per input channel")
    pre_activation: float | None = None
    then: dict[str, Any] | None = Field(None, description="the activation that follows (ReLU ...) applied to it")
    softmax: dict[str, Any] | None = Field(None, description="last layer: the class probability from the real logits")

"""Shapes of the attribution API: one map in JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AttributionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "image": "a1b2c3d4e5f6", "model": "cifarnet", "method": "gradcam", "target": 3, "label": "cat",
        "settings": {"layer": "conv3"}, "shape": [2, 2], "min": 0.0, "max": 1.0, "values": [[0.0, 0.4], [1.0, 0.7]]}]})

    image: str
    model: str
    method: str = Field(description="saliency, smoothgrad, gradcam or occlusion")
    target: int = Field(description="the class index the map explains (default: the top prediction)")
    label: str = Field(description="that class's name")
    settings: dict[str, Any] = Field(description="the method's settings (layer, window, n, sigma...)")
    shape: list[int] = Field(description="H, W of the map, over the network input (the centre crop)")
    min: float
    max: float
    values: Any = Field(description="nested lists H x W")

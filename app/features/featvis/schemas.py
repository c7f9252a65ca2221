"""Shapes of the feature-visualization API: one picture's metadata and a layer's gallery."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeatVisOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "status": "done", "image_url": "/api/models/cifarnet/layers/conv2/channels/7/featvis?format=png",
        "objective": "channel 7 of conv2", "kind": "channel", "layer": "conv2", "channel": 7,
        "settings": "angles=(-5.0, 0.0, 5.0),decay=1.0,diversity=0.0,images=1,jitter=1,lr=0.05,pad=2,"
                    "scales=(0.95, 1.0, 1.05),seed=0,size=32,steps=256",
        "history": [0.12, 1.8, 3.05], "final_value": [3.2], "steps": 256}]})

    status: str = Field(description="done: the picture is rendered")
    image_url: str = Field(description="the picture (PNG), a URL relative to this server")
    objective: str = Field(description="what the picture maximises, in words")
    kind: str = Field(description="channel, neuron, unit, class or layer")
    layer: str
    channel: int = Field(description="channel, unit or class index (0 for a whole layer)")
    settings: str = Field(description="the render settings, as key=value pairs")
    history: list[float] = Field(description="the objective's value, every few steps")
    final_value: list[float] = Field(description="the objective's value for each picture at the end")
    steps: int = Field(description="optimisation steps done")


class GalleryItemOut(BaseModel):
    index: int
    label: str
    rendered: bool
    url: str = Field(description="this picture's JSON (GET), or where to POST to render it")
    image_url: str | None = Field(description="the PNG, when rendered")


class GallerySettingsOut(BaseModel):
    steps: int
    seed: int


class GalleryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "cifarnet", "layer": "conv2", "objective": "channel", "settings": {"steps": 256, "seed": 0},
        "rendered": 1, "items": [
            {"index": 0, "label": "0", "rendered": True, "url": "/api/models/cifarnet/layers/conv2/channels/0/featvis",
             "image_url": "/api/models/cifarnet/layers/conv2/channels/0/featvis?format=png"},
            {"index": 1, "label": "1", "rendered": False, "url": "/api/models/cifarnet/layers/conv2/channels/1/featvis",
             "image_url": None}]}]})

    model: str
    layer: str
    objective: str = Field(description="channel, unit (a vector layer) or class")
    settings: GallerySettingsOut
    rendered: int = Field(description="how many pictures are rendered")
    items: list[GalleryItemOut]


class GalleryDoneOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "done", "rendered": 32}]})

    status: str = Field(description="done: every picture is there, nothing was started")
    rendered: int

"""Shapes of the examples API: path and query parameters, the JSON bodies, and their builders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlencode

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app.features.jobs.schemas import JobOut
from app.http.responses import Problem, StrictBody

if TYPE_CHECKING:
    from app.core.examples import Example
    from app.features.examples.index_store import Manifest

ModelP = Annotated[str, Path(max_length=64, description="model name")]
LayerP = Annotated[str, Path(max_length=200, description="layer (named_modules path)")]
ChannelP = Annotated[int, Path(ge=0, le=100_000, description="channel (or unit of a vector layer)")]
ModeQ = Annotated[Literal["crop", "image"], Query(description="crop: receptive field around the maximum; "
                                                              "image: whole images ranked by mean activation")]
DatasetQ = Annotated[str | None, Query(max_length=200, description="data set name of the index ('default': the "
                                                                   "configured data set); default: the best one")]
SplitQ = Annotated[str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_-]*$")]
LimitQ = Annotated[int | None, Query(ge=1, le=10_000_000)]


class ExampleOut(BaseModel):
    rank: int = Field(description="0 = strongest")
    value: float = Field(description="activation: the channel's maximum (crop) or mean (image)")
    index: int = Field(description="index of the image in the data set (sorted by class, then file name)")
    source: str = Field(description="data set name and the image's path inside it (gallery: the image id)")
    ref: str
    label: int | None = Field(description="true class index (null when unknown, e.g. gallery photos)")
    label_name: str | None
    predicted: int
    predicted_name: str | None
    box: list[int] = Field(description="x0, y0, x1, y1 (half-open) in network-input pixels: the pixels the unit "
                                       "depends on, clipped to the image")
    field: list[int] = Field(description="x0, y0, x1, y1 of the receptive field, may extend beyond the image")
    off_image: list[str] = Field(description="sides where the field runs off the image")
    url: str = Field(description="PNG of the crop (mode crop) or of the whole network input (mode image)")


class IndexOut(BaseModel):
    key: str
    model: str
    weights_sha256: str
    dataset: str
    kind: str
    split: str
    limit: int | None
    images: int
    k: int
    created: float
    seconds: float


class ExamplesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "cifarnet",
         "layer": "conv2",
         "channel": 7,
         "mode": "crop",
         "kind": "map",
         "input_size": [3, 32, 32],
         "index": {"key": "cifarnet-cifar10-test",
                   "model": "cifarnet",
                   "weights_sha256": "9f2c...",
                   "dataset": "cifar10",
                   "kind": "folder",
                   "split": "test",
                   "limit": None,
                   "images": 10000,
                   "k": 9,
                   "created": 1765000000.0,
                   "seconds": 42.0},
         "examples": [{"rank": 0,
                       "value": 7.31,
                       "index": 4121,
                       "source": "cifar10:test/cat/0412.png",
                       "ref": "4121",
                       "label": 3,
                       "label_name": "cat",
                       "predicted": 3,
                       "predicted_name": "cat",
                       "box": [4, 6, 16, 18],
                       "field": [2, 4, 18, 20],
                       "off_image": [],
                       "url": "/api/models/cifarnet/layers/conv2/channels/7/examples/0.png?mode=crop"}]}
    ]})

    model: str
    layer: str
    channel: int
    mode: str
    kind: str = Field(description="map (C, H, W) or vector (F,)")
    input_size: list[int]
    index: IndexOut
    examples: list[ExampleOut]


class BuildIn(StrictBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model": "cifarnet"}]})

    model: str = Field(max_length=64)
    dataset: str | None = Field(None, max_length=64, description="'default' (the configured data set), 'gallery' "
                                                                 "(the uploaded photos) or 'cifar10'; left out: the "
                                                                 "configured one, else the gallery when it has photos")
    split: str = Field("test", max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    limit: int | None = Field(None, ge=1, le=10_000_000)
    k: int = Field(9, ge=1, le=64)
    workers: int = Field(0, ge=0, le=4, description="DataLoader worker processes")


class DatasetOut(BaseModel):
    name: str
    description: str


class IndexesOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"indexes": [{"key": "cifarnet-cifar10-test", "model": "cifarnet", "weights_sha256": "9f2c...", "dataset": "cifar10",
                      "kind": "folder", "split": "test", "limit": None, "images": 10000, "k": 9, "created": 1765000000.0,
                      "seconds": 42.0}],
         "jobs": [],
         "datasets": [{"name": "gallery",
                       "description": "the photos uploaded to this server (refreshed as uploads arrive)"},
                      {"name": "cifar10",
                       "description": "CIFAR-10 through torchvision's download (needs internet the first time)"}]}
    ]})

    indexes: list[IndexOut]
    jobs: list[JobOut]
    datasets: list[DatasetOut]


class MissingProblem(Problem):
    cli: str | None = None
    post: dict[str, object] | None = None


class BuildingProblem(Problem):
    job: JobOut | None = None


def index_out(m: Manifest) -> IndexOut:
    return IndexOut(key=m.key, model=m.model, weights_sha256=m.weights_sha256, dataset=m.dataset,
                    kind=str(m.source.get("kind")), split=m.split, limit=m.limit, images=m.count, k=m.k,
                    created=m.created, seconds=round(m.seconds, 2))


def png_url(m: str, layer: str, c: int, rank: int, mode: str, man: Manifest) -> str:
    q = {"mode": mode, "dataset": man.dataset, "split": man.split or None, "limit": man.limit}
    return (f"/api/models/{m}/layers/{layer}/channels/{c}/examples/{rank}.png?"
            + urlencode({k: v for k, v in q.items() if v is not None}))


def example_out(e: Example, m: str, layer: str, c: int, mode: str, man: Manifest) -> ExampleOut:
    return ExampleOut(rank=e.rank, value=e.value, index=e.index, source=f"{man.dataset}:{e.ref}", ref=e.ref,
                      label=e.label if e.label >= 0 else None, label_name=e.label_name, predicted=e.pred,
                      predicted_name=e.pred_name, box=list(e.box), field=list(e.field), off_image=list(e.off_image),
                      url=png_url(m, layer, c, e.rank, mode, man))

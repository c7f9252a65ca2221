"""The bundled sample photos (public domain or CC0, listed with source and licence in
``static/samples/credits.toml``): their catalogue, their bytes, and storing one through the normal upload
path (the same decoder workers, limits and content-addressed store as an upload)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.config import package_path
from app.core.errors import NotFoundError

SAMPLES_DIR = package_path("static") / "samples"


@dataclass(frozen=True)
class Sample:
    """One bundled photo and its credit."""

    name: str
    file: str
    title: dict[str, str]
    classes: str
    author: str
    source: str
    licence: str

    @property
    def thumb(self) -> str:
        return f"samples/thumbs/{self.name}.webp"  # a static path

    @property
    def photo(self) -> str:
        return f"samples/{self.file}"


class UnknownSampleError(NotFoundError):
    """No bundled photo of that name; the message lists those that exist."""

    kind = "sample"


@lru_cache(maxsize=1)
def catalogue() -> dict[str, Sample]:
    """Every sample photo, in the credits file's order."""
    data = tomllib.loads((SAMPLES_DIR / "credits.toml").read_text(encoding="utf-8"))
    return {name: Sample(name, t["file"], {"en": t["en"], "es": t["es"]}, t["classes"], t["author"], t["source"],
                         t["licence"]) for name, t in data.items()}


def sample(name: str) -> Sample:
    s = catalogue().get(name)
    if s is None:
        raise UnknownSampleError(name, catalogue())
    return s


def sample_bytes(name: str) -> bytes:
    return (SAMPLES_DIR / sample(name).file).read_bytes()


async def store_sample(services: Any, name: str) -> Any:
    """Store a sample photo as an upload (once per content, like any upload); returns the stored record."""
    s = sample(name)
    up = await services.ingest(sample_bytes(name), s.file)
    return up.record

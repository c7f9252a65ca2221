"""The numbers and names a request gives for a model's units, checked the same way on every route: a channel
(or unit of a vector layer) out of range is ``422 bad_parameter`` with the range, a class is taken by index
or by name (an unknown name is ``404 unknown_class`` with "did you mean")."""

from __future__ import annotations

from app.core.zoo import LoadedModel
from app.errors import BadParameterError


def check_channel(channel: int, channels: int, layer: str | None = None, what: str = "channel") -> None:
    """422 ``bad_parameter`` for a channel (or unit) the layer does not have; the message gives the range."""
    if not 0 <= channel < channels:
        of = f" of layer {layer!r}" if layer else ""
        raise BadParameterError(f"{what} {channel} is out of range{of}: this layer has {what}s 0 to {channels - 1}",
                                extra={"valid_range": [0, channels - 1]}, key=f"err.range.{what}",
                                params={"n": channel, "layer": layer or "", "last": channels - 1})


def class_of(lm: LoadedModel, value: str | int | None) -> int | None:
    """A class given by index (``3``) or by name (``cat``): its index; None stays None (the top class)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) or value.strip().lstrip("-").isdigit():
        i = int(value)
        n = len(lm.spec.categories)
        if not 0 <= i < n:
            raise BadParameterError(f"class {i} is out of range: {lm.name} has classes 0 to {n - 1}",
                                    extra={"valid_range": [0, n - 1]}, key="err.range.class",
                                    params={"n": i, "model": lm.name, "last": n - 1})
        return i
    return lm.class_index(value)

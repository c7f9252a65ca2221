"""Errors shared by the core and the routes: a name that does not exist (mapped to 404)."""

from __future__ import annotations

from collections.abc import Iterable


class NotFoundError(KeyError):
    """A name (model, layer, image...) that does not exist; the message says what does."""

    kind = "name"

    def __init__(self, name: str, valid: Iterable[str] = (), hint: str | None = None) -> None:
        self.name = name
        self.valid = list(valid)
        shown = ", ".join(self.valid[:60]) + (" ..." if len(self.valid) > 60 else "")
        msg = f"unknown {self.kind} {name!r}"
        if self.valid:
            msg += f"; {self.kind}s are: {shown}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])

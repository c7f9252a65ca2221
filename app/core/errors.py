"""Errors shared by the core and the routes: a name that does not exist (mapped to 404), with the closest
names ("did you mean") and, when there are many, a short list instead of all of them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SHORT = 20  # at most this many names are listed in full; beyond it, the closest few and the count


def close_names(name: str, valid: Iterable[str], n: int = 5) -> list[str]:
    """The names of ``valid`` closest to ``name`` (difflib), best first; case and separators are forgiven."""
    valid = list(valid)
    # a container's own layers first (block1 -> block1.conv1), then the closest spellings
    hits = [v for v in valid if name and (v.startswith(name + ".") or v.endswith("." + name))]
    low = {v.lower(): v for v in valid}
    for v in difflib.get_close_matches(name, valid, n=n, cutoff=0.6) + \
            [low[v] for v in difflib.get_close_matches(name.lower(), list(low), n=n, cutoff=0.6)]:
        if v not in hits:
            hits.append(v)
    return hits[:n]


class NotFoundError(KeyError):
    """A name (model, layer, image...) that does not exist; the message says what does.

    ``suggestions`` are the closest valid names; ``shown`` is what the answer lists: all the valid names
    when they are few, else the suggestions (or the first few); ``owner`` is what the name was looked up in
    (the model of a layer or a class), so the answer can say where the full list is."""

    kind = "name"

    def __init__(self, name: str, valid: Iterable[str] = (), hint: str | None = None, *, owner: str | None = None,
                 suggest: bool = True) -> None:
        self.name = name
        self.valid = list(valid)
        self.owner = owner
        self.suggestions = close_names(name, self.valid) if suggest else []
        many = len(self.valid) > SHORT
        self.shown = (self.suggestions or self.valid[:8]) if many else self.valid
        msg = f"unknown {self.kind} {name!r}"
        if self.suggestions:
            msg += f"; did you mean: {', '.join(self.suggestions)}?"
        if many:
            msg += f"; {len(self.valid)} {self.kind}s in all"
        elif self.valid:
            msg += f"; {self.kind}s are: {', '.join(self.valid)}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])

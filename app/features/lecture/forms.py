"""The projector pages' forms: a lenient reading of a page's query string (bad values fall back to defaults
and leave a message shown next to the form), matrices typed cell by cell, and the way back (the page's state
as link parameters, matrices as display cells, numbers as the lecture writes them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.datastructures import QueryParams

from app import i18n
from app.core import lecture as L
from app.errors import lecture_error_text

Pairs = list[tuple[str, Any]]


def link(path: str, pairs: Pairs, lang: str) -> str:
    """A URL with repeated parameters kept in order, and ``lang`` when it is not the default."""
    q = [(k, v) for k, v in pairs if v is not None]
    if lang != i18n.DEFAULT_LANG:
        q.append(("lang", lang))
    return path + ("?" + urlencode(q) if q else "")


def show(v: L.Number) -> str:
    """A number for the projector: the true minus sign (−), wider and clearer than a hyphen."""
    return L.fmt(v).replace("-", "−")


def shape_text(shape: Sequence[int] | None) -> str:
    """(C, H, W) → ``H×W×C`` as the lecture writes shapes; vectors as their length."""
    if not shape:
        return ""
    if len(shape) == 3:
        return f"{shape[1]}×{shape[2]}×{shape[0]}"
    return "×".join(str(s) for s in shape)


class Inputs:
    """Lenient reading of a page's query string: bad values fall back to defaults and leave a message."""

    def __init__(self, qp: QueryParams, lang: str) -> None:
        self.qp = qp
        self.lang = lang
        self.errors: list[str] = []

    def err(self, e: L.LectureError) -> None:
        self.errors.append(lecture_error_text(e, self.lang))

    def int(self, name: str, default: int, lo: int, hi: int, label: str | None = None) -> int:
        raw = self.qp.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            v = int(raw.strip())
        except ValueError:
            self.err(L.LectureError("not_a_number", name=label or name, value=raw[:20]))
            return default
        if v < lo:
            self.err(L.LectureError("too_small", name=label or name, min=lo, value=v))
            return lo
        if v > hi:
            self.err(L.LectureError("too_large", name=label or name, max=hi, value=v))
            return hi
        return v

    def choice(self, name: str, default: str, valid: Sequence[str]) -> str:
        v = self.qp.get(name)
        return v if v in valid else default

    def matrix(self, name: str, side_name: str, label: str = "input") -> L.Matrix | None:
        """A square matrix sent as repeated ``name`` cells, row by row, its side in ``side_name``."""
        cells = self.qp.getlist(name)
        if not cells:
            return None
        side = self.int(side_name, 0, 0, 64) or max(1, round(len(cells) ** 0.5))
        values: list[L.Number] = []
        for c in cells[:side * side]:
            v = parse_number(c)
            if v is None:
                self.err(L.LectureError("not_a_number", name=label, value=f"{c[:12]}"))
                v = 0
            values.append(v)
        values += [0] * (side * side - len(values))
        return tuple(tuple(values[i * side:(i + 1) * side]) for i in range(side))


_NUM = re.compile(r"^[+-]?\d+$")


def parse_number(s: str) -> L.Number | None:
    """``3`` → 3, ``2.5`` or ``2,5`` → 2.5, empty → 0, anything else → None."""
    t = s.strip().replace("−", "-").replace(",", ".")
    if t == "":
        return 0
    if _NUM.match(t):
        v = int(t)
        return v if abs(v) <= L.MAX_ABS_VALUE else None
    try:
        f = float(t)
    except ValueError:
        return None
    if not np.isfinite(f) or abs(f) > L.MAX_ABS_VALUE:
        return None
    return f


def matrix_pairs(name: str, m: L.Matrix) -> Pairs:
    return [(name, L.fmt(v)) for row in m for v in row]


def cells(m: L.Matrix, *, p: int = 0, window: tuple[int, int, int, int] | None = None, name: str | None = None,
          shown: int | None = None, current: int | None = None) -> list[list[dict[str, Any]]]:
    """A matrix as rows of display cells: value, padding, editable name/id, window membership and edges.

    ``window`` = (top, left, rows, cols) in padded coordinates; ``shown`` = how many cells (row-major)
    already have a value (the others are blank); ``current`` = the index of the highlighted cell. ``n`` is
    the value itself, which the page writes in its language (``v``: as the lecture's URLs write it).
    """
    h, w = L.shape(m)
    out = []
    for i in range(h + 2 * p):
        row = []
        for j in range(w + 2 * p):
            is_pad = i < p or j < p or i >= h + p or j >= w + p
            v = 0 if is_pad else m[i - p][j - p]
            k = (i - p) * w + (j - p)
            cls = ["pad"] if is_pad else []
            if window:
                t, lft, wh, ww = window
                if t <= i < t + wh and lft <= j < lft + ww:
                    cls.append("win")
                    cls += [e for e, on in (("wt", i == t), ("wb", i == t + wh - 1), ("wl", j == lft),
                                            ("wr", j == lft + ww - 1)) if on]
            if current is not None and k == current and not is_pad:
                cls.append("cur")
            blank = shown is not None and not is_pad and k >= shown
            row.append({"v": "" if blank else (L.fmt(v) if name else show(v)), "n": v, "cls": " ".join(cls), "pad": is_pad,
                        "edit": name is not None and not is_pad, "name": name, "r": i - p, "c": j - p,
                        "id": f"{name}-{i - p}-{j - p}" if name else None})
        out.append(row)
    return out


"""Server-rendered SVG charts: training curves, horizontal bars, a confusion matrix and sorted columns.

No charting library: the charts are small, static and must work offline and under a CSP without inline
styles, so they are plain SVG drawn here, coloured by classes from ``app.css`` (presentation attributes
only). Every mark carries its number in ``data-*`` attributes (and a ``<title>`` tooltip), so what is
drawn can be read back and checked against the data it came from; numbers are written in the page's
language (:mod:`app.i18n.format`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from app.i18n import format as numbers


@dataclass(frozen=True)
class Series:
    """One curve: ``key`` names it in ``data-series``; points with a None value are left out."""

    key: str
    label: str
    points: Sequence[tuple[float, float | None]]
    css: str = "s0"


def _f(v: float) -> str:
    return f"{v:.1f}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values from ``lo`` to ``hi``."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _open(cls: str, w: int, h: int, title: str, desc: str = "", *, links: bool = False) -> list[str]:
    """The SVG element with its accessible title (also drawn, on the first line) and description; a chart
    whose marks are links is a labelled group (an image cannot hold interactive controls)."""
    t = escape(title)
    role = f'role="group" aria-label="{t}"' if links else 'role="img"'
    out = [f'<svg class="chart {cls}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" {role} '
           f'preserveAspectRatio="xMinYMin meet"><title>{t}</title>']
    if desc:
        out.append(f"<desc>{escape(desc)}</desc>")
    out.append(f'<text class="chart-title" x="4" y="15" aria-hidden="true">{t}</text>')
    return out


def line_chart(series: Sequence[Series], *, title: str, x_label: str, lang: str, percent: bool = False,
               y_min: float | None = None, y_max: float | None = None, mark_x: float | None = None,
               mark_label: str = "", note: str = "", width: int = 520, height: int = 280) -> Markup:
    """Curves over a shared x axis (epochs), a legend, and an optional vertical mark at ``mark_x``."""
    pts = [(x, y) for s in series for x, y in s.points if y is not None]
    fmt: Callable[[float], str] = ((lambda v: numbers.percent(v, 0, lang)) if percent
                                   else (lambda v: numbers.sig(v, lang, 3)))
    left, right, top, bottom = 56, 12, 48 + 18 * (len(series) > 1), 44
    out = _open("chart-line", width, height, title, note)
    if not pts:
        out.append(f'<text class="axis" x="{width // 2}" y="{height // 2}" text-anchor="middle">—</text></svg>')
        return Markup("".join(out))
    xs = [x for x, _ in pts] + ([mark_x] if mark_x is not None else [])
    x0, x1 = min(xs), max(xs)
    y0 = min(y for _, y in pts) if y_min is None else y_min
    y1 = max(y for _, y in pts) if y_max is None else y_max
    if y1 <= y0:
        y1 = y0 + 1
    pw, ph = width - left - right, height - top - bottom
    sx = lambda x: left + (x - x0) / ((x1 - x0) or 1) * pw  # noqa: E731
    sy = lambda y: top + (1 - (y - y0) / (y1 - y0)) * ph  # noqa: E731
    for t in _ticks(y0, y1):
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{_f(sy(t))}" y2="{_f(sy(t))}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(sy(t) + 4)}" text-anchor="end">{escape(fmt(t))}</text>')
    for t in _ticks(x0, x1, 6):
        out.append(f'<text class="axis" x="{_f(sx(t))}" y="{top + ph + 16}" text-anchor="middle">'
                   f'{escape(numbers.sig(t, lang, 4))}</text>')
    out.append(f'<line class="frame" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>'
               f'<line class="frame" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>'
               f'<text class="axis-label" x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    if mark_x is not None:
        mx = _f(sx(mark_x))
        out.append(f'<line class="mark" data-x="{mark_x:g}" x1="{mx}" x2="{mx}" y1="{top}" y2="{top + ph}"/>'
                   f'<text class="mark-label" x="{mx}" y="{top - 4}" text-anchor="middle">{escape(mark_label)}</text>')
    for i, s in enumerate(series):
        good = [(x, y) for x, y in s.points if y is not None]
        out.append(f'<g class="series {s.css}" data-series="{escape(s.key)}">')
        if len(good) > 1:
            out.append('<polyline class="line" points="' + " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in good) + '"/>')
        for x, y in good:
            out.append(f'<circle class="pt" cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="3" data-x="{x:g}" data-y="{y!r}">'
                       f'<title>{escape(s.label)} · {escape(x_label)} {x:g}: {escape(fmt(y))}</title></circle>')
        out.append("</g>")
        if len(series) > 1:
            lx = left + i * (pw / len(series))
            out.append(f'<g class="legend {s.css}"><rect class="swatch" x="{_f(lx)}" y="26" width="14" height="10"/>'
                       f'<text class="axis" x="{_f(lx + 18)}" y="35">{escape(s.label)}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))


def hbar_chart(items: Sequence[tuple[str, str, float]], *, title: str, lang: str, percent: bool = True,
               highlight: float | None = None, width: int = 520, bar_h: int = 22) -> Markup:
    """Horizontal bars, one per (key, label, value) in the given order; ``highlight`` draws a reference line
    (the overall accuracy). Values are fractions when ``percent``."""
    label_w, gap, top = 110, 6, 28
    vmax = 1.0 if percent else max([v for _, _, v in items] + [1e-12])
    pw = width - label_w - 70
    height = top + len(items) * (bar_h + gap) + 8
    out = _open("chart-hbar", width, height, title)
    fmt = (lambda v: numbers.percent(v, 1, lang)) if percent else (lambda v: numbers.sig(v, lang, 3))
    for i, (key, label, v) in enumerate(items):
        y = top + i * (bar_h + gap)
        bw = max(0.0, v) / vmax * pw
        out.append(f'<text class="axis" x="{label_w - 6}" y="{y + bar_h * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
                   f'<rect class="bar" x="{label_w}" y="{y}" width="{_f(bw)}" height="{bar_h}" data-key="{escape(key)}" '
                   f'data-value="{v!r}"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
                   f'<text class="value" x="{_f(label_w + bw + 4)}" y="{y + bar_h * 0.7:.1f}">{escape(fmt(v))}</text>')
    if highlight is not None:
        hx = _f(label_w + highlight / vmax * pw)
        out.append(f'<line class="mark" data-x="{highlight!r}" x1="{hx}" x2="{hx}" y1="{top - 4}" y2="{height - 4}">'
                   f'<title>{escape(fmt(highlight))}</title></line>')
    out.append("</svg>")
    return Markup("".join(out))


def confusion_chart(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str, lang: str,
                    true_label: str, pred_label: str, cell: int = 44) -> Markup:
    """The confusion matrix as a grid: rows the true class, columns the predicted one, each cell's shade
    its share of the row (the diagonal in the accent colour, mistakes in the error colour)."""
    n = len(labels)
    left, top = 118, 124
    width, height = left + n * cell + 8, top + n * cell + 8
    out = _open("chart-confusion", width, height, title)
    out.append(f'<text class="axis-label" x="{left + n * cell / 2:.1f}" y="36" text-anchor="middle">{escape(pred_label)}</text>'
               f'<text class="axis-label" x="12" y="{top + n * cell / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + n * cell / 2:.1f})">{escape(true_label)}</text>')
    for j, lab in enumerate(labels):
        cx = left + j * cell + cell / 2
        out.append(f'<text class="axis" x="{cx:.1f}" y="{top - 6}" text-anchor="start" '
                   f'transform="rotate(-60 {cx:.1f} {top - 6})">{escape(lab)}</text>')
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        y = top + i * cell
        out.append(f'<text class="axis" x="{left - 6}" y="{y + cell * 0.6:.1f}" text-anchor="end">{escape(labels[i])}</text>')
        for j, c in enumerate(row):
            x = left + j * cell
            share = c / total
            kind = "diag" if i == j else "off"
            out.append(f'<rect class="cell {kind}" x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                       f'fill-opacity="{0.06 + 0.94 * share:.3f}" data-true="{i}" data-pred="{j}" data-count="{c}">'
                       f'<title>{escape(labels[i])} → {escape(labels[j])}: {escape(numbers.integer(c, lang))} '
                       f'({escape(numbers.percent(share, 1, lang))})</title></rect>')
            if c:
                dark = " dark" if share > 0.5 else ""
                out.append(f'<text class="count{dark}" x="{x + cell / 2 - 0.5:.1f}" y="{y + cell * 0.62:.1f}" '
                           f'text-anchor="middle">{escape(numbers.integer(c, lang))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def column_chart(values: Sequence[tuple[int, float]], *, title: str, lang: str, x_label: str, y_label: str,
                 href: Callable[[int], str] | None = None, width: int = 760, height: int = 240) -> Markup:
    """Columns in the given order (sorted by the caller), one per (channel, value), each a link when ``href``
    is given; a baseline at zero when values are negative."""
    left, right, top, bottom = 56, 8, 30, 36
    pw, ph = width - left - right, height - top - bottom
    vals = [v for _, v in values] or [0.0]
    lo, hi = min(0.0, min(vals)), max(0.0, max(vals))
    if hi <= lo:
        hi = lo + 1
    sy = lambda v: top + (1 - (v - lo) / (hi - lo)) * ph  # noqa: E731
    out = _open("chart-columns", width, height, title, links=href is not None)
    for t in _ticks(lo, hi, 4):
        out.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{_f(sy(t))}" y2="{_f(sy(t))}"/>'
                   f'<text class="axis" x="{left - 6}" y="{_f(sy(t) + 4)}" text-anchor="end">'
                   f'{escape(numbers.sig(t, lang, 3))}</text>')
    bw = pw / max(1, len(values))
    for k, (c, v) in enumerate(values):
        y_a, y_b = sorted((sy(v), sy(0.0)))
        rect = (f'<rect class="bar{" neg" if v < 0 else ""}" x="{_f(left + k * bw)}" y="{_f(y_a)}" '
                f'width="{max(0.5, bw - (1 if bw > 3 else 0)):.2f}" height="{max(0.5, y_b - y_a):.2f}" data-channel="{c}" '
                f'data-value="{v!r}"><title>{escape(x_label)} {c}: {escape(numbers.sig(v, lang, 3))}</title></rect>')
        out.append(f'<a href="{escape(href(c))}">{rect}</a>' if href else rect)
    out.append(f'<line class="frame" x1="{left}" x2="{left + pw}" y1="{_f(sy(0.0))}" y2="{_f(sy(0.0))}"/>'
               f'<text class="axis-label" x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">'
               f'{escape(x_label)}</text><text class="axis-label" x="12" y="{top + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2:.1f})">{escape(y_label)}</text></svg>')
    return Markup("".join(out))

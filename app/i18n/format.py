"""Numbers on a page in the page's language, with Babel: whole numbers, fixed decimals, significant
digits, percentages, lists of numbers and plural categories; the same functions serve templates (as Jinja
filters, see :func:`register`) and Python code that builds page text (pass the page's ``lang``).

English keeps the formats the pages have always had (en_US style: ``19,200``, ``72.40 %``, ``0.0224``).
Spanish follows the region set by ``Settings.locale_es`` (``es_ES`` by default): ``19.200``, ``1000``
(four-digit numbers are not grouped, CLDR's minimum grouping digits, which Babel does not apply itself),
``62.958``, ``72,4 %`` (a non-breaking space before ``%``), ``−1,58`` (a true minus sign), and lists of
numbers joined with semicolons, since the comma is the decimal mark: ``máx(7; 2; 6; 3)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale
from babel.numbers import format_decimal, format_percent, get_decimal_symbol
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from app import i18n

MINUS = "\u2212"  # the true minus sign: wider and clearer than a hyphen on a projector
NBSP = "\u00a0"
EN_LOCALE = "en_US"
# CLDR's minimumGroupingDigits where it is 2: "1000" but "10.000" (Babel groups every number)
_MIN_GROUPING = {"es": 2, "pl": 2}


@lru_cache(maxsize=8)
def locale_of(lang: str) -> Locale:
    """The Babel locale of a page language: ``en_US`` for English, ``Settings.locale_<lang>`` otherwise."""
    lang = i18n.normalize_lang(lang)
    if lang == "en":
        return Locale.parse(EN_LOCALE)
    from app.config import get_settings

    return Locale.parse(getattr(get_settings(), f"locale_{lang}", lang))


def _english(lang: str) -> bool:
    return i18n.normalize_lang(lang) == "en"


def _babel(d: Decimal, lang: str, pattern: str = "#,##0.###", *, quantize: bool = False) -> str:
    """``d`` as the locale writes it (``pattern`` in CLDR syntax), with minimum grouping and a true minus."""
    loc = locale_of(lang)
    group = abs(d) >= 10 ** (2 + _MIN_GROUPING.get(loc.language, 1))
    s = format_decimal(d, format=pattern, locale=loc, decimal_quantization=quantize, group_separator=group)
    return s.replace("-", MINUS)


def _finite(v: float) -> bool:
    return isinstance(v, int) or math.isfinite(v)


class LocalInt(int):
    """A whole number that prints itself for one page language (``{n}`` in a catalog text, or in a
    template) and still counts as a number: ``{n:plural:one=# valor|other=# valores}`` picks by its value.
    ``grouped=False`` keeps English plain (``12000``, as English pages print such counts); other languages
    always group as their locale does."""

    lang: str
    grouped: bool

    def __new__(cls, value: int, lang: str, grouped: bool = True) -> LocalInt:
        obj = super().__new__(cls, value)
        obj.lang = lang
        obj.grouped = grouped
        return obj

    def __str__(self) -> str:
        if not self.grouped and _english(self.lang):
            return int.__repr__(self)
        return integer(int(self), self.lang)

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else int(self).__format__(spec)


def integer(n: float, lang: str) -> str:
    """A whole number with thousands grouping: ``19,200`` / ``19.200`` (``1000`` in Spanish); a float is
    rounded first (English: ``'{:,.0f}'``)."""
    if isinstance(n, float):
        if _english(lang) or not math.isfinite(n):
            return f"{n:,.0f}"
        return _babel(Decimal(f"{n:.0f}"), lang)
    if _english(lang):
        return f"{int(n):,}"
    return _babel(Decimal(int(n)), lang)


def count(n: int, lang: str, *, grouped: bool = False) -> LocalInt:
    """A whole number to pass into a catalog text: it selects plural forms and prints plain in English
    (``grouped=False``, as English texts always got their counts) or grouped (:func:`integer`)."""
    return LocalInt(int(n), i18n.normalize_lang(lang), grouped)


def fixed(v: float, digits: int, lang: str) -> str:
    """A number with exactly ``digits`` decimals: ``93.0`` / ``93,0`` (English: ``'%.Nf'``, no grouping)."""
    if _english(lang) or not _finite(v):
        return f"{v:.{digits}f}"
    return _babel(Decimal(f"{v:.{digits}f}"), lang, "#,##0" + ("." + "0" * digits if digits else ""), quantize=True)


def sig(v: float, lang: str, digits: int = 3) -> str:
    """``digits`` significant digits: ``-1.58`` / ``−1,58``, ``0.0224`` / ``0,0224`` (English: ``'%.3g'``)."""
    s = f"{v:.{digits}g}"
    if _english(lang) or not _finite(v):
        return s
    return _babel(Decimal(s), lang, "#,##0.#")


def number(v: float, lang: str) -> str:
    """A measured value: three significant digits, whole numbers from 1000 up (English: ``12345``,
    Spanish ``12.345``)."""
    if not _finite(v):
        return str(v)
    if abs(v) < 1000:
        return sig(v, lang, 3)
    if _english(lang):
        return f"{v:.0f}"
    return _babel(Decimal(f"{v:.0f}"), lang)


def figure(v: float, lang: str, digits: int = 4) -> str:
    """A number as the lecture writes it: whole numbers plain (not grouped), others with ``digits``
    significant digits, the true minus sign (−) in every language: ``−2``, ``1.5`` / ``1,5``."""
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        s = str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.{digits}g}"
    else:
        s = str(v)
    if not _english(lang):
        s = s.replace(".", get_decimal_symbol(locale_of(lang)))
    return s.replace("-", MINUS)


def term(v: float, lang: str) -> str:
    """A lecture number inside a sum: negatives in parentheses, ``(−2)``."""
    s = figure(v, lang)
    return f"({s})" if s.startswith(MINUS) else s


def percent(frac: float, digits: int, lang: str) -> str:
    """A fraction as a percentage: English ``'%.Nf %'`` of ``100·frac`` (``72.40 %``), other languages
    the locale's pattern with one to ``digits`` decimals (``72,4 %``, ``93,0 %``, a non-breaking space)."""
    if _english(lang) or not _finite(frac):
        return f"{100 * frac:.{digits}f} %"
    loc = locale_of(lang)
    pattern = loc.percent_formats[None].pattern
    if digits > 0:  # "#,##0 %" -> "#,##0.0# %"
        pattern = pattern.replace("#,##0", "#,##0.0" + "#" * (digits - 1), 1)
    try:
        d = Decimal(repr(float(frac)))
    except InvalidOperation:
        return f"{100 * frac:.{digits}f} %"
    return format_percent(d, format=pattern, locale=loc).replace("-", MINUS)


def numlist(items: Iterable[Any], lang: str) -> str:
    """Numbers (already written) in a row: ``7, 2, 6, 3`` in English, ``7; 2; 6; 3`` where the comma is
    the decimal mark."""
    sep = ", " if _english(lang) or get_decimal_symbol(locale_of(lang)) != "," else "; "
    return sep.join(str(i) for i in items)


def plural(n: float, lang: str) -> str:
    """The CLDR plural category of ``n``: ``one``, ``many`` or ``other``."""
    return i18n.plural_category(n, lang)


# -- Jinja ------------------------------------------------------------------------------------------
def _lang(ctx: Context) -> str:
    return i18n.normalize_lang(ctx.get("lang"))


def register(env: Environment) -> None:
    """The filters every template gets; each reads the page's ``lang`` from the template context:
    ``n|num`` (19.200, grouped in every language), ``n|count`` (a count for a catalog text: plain in
    English, grouped in Spanish; both choose plural forms), ``v|fixed(1)``, ``v|sig``, ``v|measure``
    (three significant digits, whole from 1000), ``v|figure`` and ``v|term`` (the lecture's numbers),
    ``p|pct(1)`` (a fraction as a percentage), ``values|numlist``, ``name|classname``, and the globals
    ``classes_note(categories)``, ``text_or(key, default)`` (a catalog text where there is one),
    ``locale_tag()`` (``es-ES``, for scripts' ``Intl``) and ``class_names()``."""
    filters: dict[str, Any] = {
        "num": lambda ctx, n: count(n, _lang(ctx), grouped=True) if isinstance(n, int) else integer(n, _lang(ctx)),
        "count": lambda ctx, n: count(n, _lang(ctx)),
        "fixed": lambda ctx, v, digits=1: fixed(v, digits, _lang(ctx)),
        "sig": lambda ctx, v, digits=3: sig(v, _lang(ctx), digits),
        "measure": lambda ctx, v: number(v, _lang(ctx)),
        "figure": lambda ctx, v: figure(v, _lang(ctx)),
        "term": lambda ctx, v: term(v, _lang(ctx)),
        "pct": lambda ctx, v, digits=1: percent(v, digits, _lang(ctx)),
        "numlist": lambda ctx, items: numlist(items, _lang(ctx)),
        "classname": lambda ctx, name: class_name(name, _lang(ctx)),
    }
    for name, fn in filters.items():
        env.filters[name] = pass_context(fn)
    env.globals["classes_note"] = pass_context(lambda ctx, categories: classes_note(categories, _lang(ctx)))
    env.globals["text_or"] = pass_context(lambda ctx, key, default: i18n.translator(_lang(ctx))(key)
                                          if i18n.has(key) else default)
    env.globals["locale_tag"] = pass_context(lambda ctx: str(locale_of(_lang(ctx))).replace("_", "-"))
    env.globals["class_names"] = pass_context(lambda ctx: class_names(_lang(ctx)))


# -- class names ------------------------------------------------------------------------------------
def class_name(name: str, lang: str) -> str:
    """A class name in the page's language where the catalog has it (``class.<name>``: CIFAR-10's ten);
    ImageNet's 1000 stay in English (see :func:`classes_note`)."""
    key = f"class.{name}"
    return i18n.translator(lang)(key) if name and i18n.has(key) else name


def class_names(lang: str) -> dict[str, str]:
    """Every class name the catalog translates, for scripts that show predictions (the live page)."""
    _ = i18n.translator(lang)
    return {k.removeprefix("class."): _(k) for k in i18n.catalog() if k.startswith("class.") and k.count(".") == 1}


def classes_note(categories: Iterable[str], lang: str) -> str:
    """A short note, in the page's language, where some class names cannot be shown in it; else ``""``."""
    if _english(lang) or all(i18n.has(f"class.{c}") for c in categories):
        return ""
    return i18n.translator(lang)("class.note.english")

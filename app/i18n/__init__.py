"""Spanish and English wording, read once from the catalogs in ``app/i18n/messages/*.toml`` (data, not code).

Each key's table holds one text per language (``en``, ``es``). The language is chosen by the ``lang``
query parameter (kept in every link), so a URL always shows the same language; English is the default.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from babel import Locale

LANGS = ("en", "es")
DEFAULT_LANG = "en"


def _load() -> dict[str, tuple[str, str]]:
    """Every catalog file; a key found in two files is an error (each key has one home)."""
    out: dict[str, tuple[str, str]] = {}
    where: dict[str, str] = {}
    for f in sorted(resources.files(__package__).joinpath("messages").iterdir(), key=lambda p: p.name):
        if not f.name.endswith(".toml"):
            continue
        for key, texts in tomllib.loads(f.read_text(encoding="utf-8")).items():
            if key in out:
                raise ValueError(f"message {key!r} is in both {where[key]} and {f.name}")
            missing = [lang for lang in LANGS if lang not in texts]
            if missing:
                raise ValueError(f"message {key!r} in {f.name} has no text for {', '.join(missing)}")
            out[key] = tuple(texts[lang] for lang in LANGS)  # type: ignore[assignment]
            where[key] = f.name
    return out


_CATALOG = _load()


def has(key: str) -> bool:
    return key in _CATALOG


def catalog() -> dict[str, tuple[str, str]]:
    return dict(_CATALOG)


def normalize_lang(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


@lru_cache(maxsize=8)
def _plural_rule(lang: str) -> Any:
    return Locale.parse(normalize_lang(lang)).plural_form


def plural_category(n: float, lang: str) -> str:
    """CLDR plural category of ``n`` in ``lang``: ``one``, ``many`` or ``other`` (Spanish), ``one`` or
    ``other`` (English)."""
    return str(_plural_rule(lang)(abs(n)))


class _TextFormatter(string.Formatter):
    """``str.format`` plus the ``plural:`` field spec (``{n:plural:one=# hoja|other=# hojas}``)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def format_field(self, value: Any, format_spec: str) -> str:
        if not format_spec.startswith("plural:"):
            return super().format_field(value, format_spec)
        forms = dict(f.split("=", 1) for f in format_spec[len("plural:"):].split("|"))
        form = forms.get(plural_category(float(value), self.lang), forms["other"])
        return form.replace("#", str(value))


def translator(lang: str) -> Callable[..., str]:
    """``_(key, **fmt)`` for one language; an unknown key shows itself (tests catch those)."""
    lang = normalize_lang(lang)
    i = LANGS.index(lang)
    plural = _TextFormatter(lang)

    def _(key: str, **fmt: object) -> str:
        pair = _CATALOG.get(key)
        text = pair[i] if pair else key
        if not fmt:
            return text
        return plural.format(text, **fmt) if ":plural:" in text else text.format(**fmt)

    return _

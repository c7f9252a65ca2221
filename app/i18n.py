"""Spanish and English wording. Each area registers its messages as ``key: (english, spanish)``.

The language is chosen by the ``lang`` query parameter (kept in every link), so a URL always
shows the same language; English is the default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

LANGS = ("en", "es")
DEFAULT_LANG = "en"
_CATALOG: dict[str, tuple[str, str]] = {}


def register(messages: Mapping[str, tuple[str, str]]) -> None:
    """Add messages (key -> (en, es)); a key registered twice with other wording is an error."""
    for k, v in messages.items():
        if k in _CATALOG and _CATALOG[k] != v:
            raise ValueError(f"message {k!r} registered twice with different wording")
        _CATALOG[k] = v


def has(key: str) -> bool:
    return key in _CATALOG


def catalog() -> dict[str, tuple[str, str]]:
    return dict(_CATALOG)


def normalize_lang(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG


def translator(lang: str) -> Callable[..., str]:
    """``_(key, **fmt)`` for one language; an unknown key shows itself (tests catch those)."""
    i = LANGS.index(normalize_lang(lang))

    def _(key: str, **fmt: object) -> str:
        pair = _CATALOG.get(key)
        text = pair[i] if pair else key
        return text.format(**fmt) if fmt else text

    return _

"""Template rendering shared by the HTML routes: whole page, or one block for htmx requests; the Jinja globals
that size a user's photo (``photo_attrs``) and fingerprint a static file's URL (``static_url``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2_fragments.fastapi import Jinja2Blocks
from markupsafe import Markup

from app import i18n
from app.config import package_path
from app.features.images.service import SizeName, rendition_size
from app.i18n import format as numbers
from app.store.database import ImageRecord
from app.web.assets import static_url

templates = Jinja2Blocks(directory=str(package_path("templates")))


def duration(seconds: float | None) -> str:
    """``95`` -> ``1 min 35 s``; unknown -> ``?`` (a Jinja filter)."""
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def fmt_num(v: float, lang: str = i18n.DEFAULT_LANG) -> str:
    """A number for a page in its language: three significant digits, whole numbers from 1000 up."""
    return numbers.number(v, lang)


def photo_attrs(rec: ImageRecord, size: SizeName = "display") -> Markup:
    """``src``, ``width`` and ``height`` of a stored photo shown at ``size`` (a Jinja global: the page reserves
    its place before it loads); at the display size also a ``srcset`` with the twice-as-large one for 2x screens."""
    w, h = rendition_size(rec, size)
    src = f"/api/images/{rec.id}/file?size={size}"
    srcset = f' srcset="{src} 1x, /api/images/{rec.id}/file?size=display2x 2x"' if size == "display" else ""
    return Markup(f'src="{src}"{srcset} width="{w}" height="{h}"')


templates.env.filters["duration"] = duration
templates.env.globals["photo_attrs"] = photo_attrs
templates.env.globals["static_url"] = static_url
numbers.register(templates.env)  # num, count, fixed, sig, measure, figure, term, pct, numlist, classname


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path in ("/healthz", "/readyz")


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def lang_of(request: Request) -> str:
    return i18n.normalize_lang(request.query_params.get("lang"))


def url_with(request: Request, path: str, **params: object) -> str:
    """A link that keeps the language of the current page."""
    q = {k: v for k, v in params.items() if v is not None}
    lang = lang_of(request)
    if lang != i18n.DEFAULT_LANG:
        q.setdefault("lang", lang)
    return path + ("?" + urlencode(q) if q else "")


def render(request: Request, template: str, context: dict[str, Any], *, block: str | None = None,
           status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The full page, or only ``block`` when the request comes from htmx and a block is named."""
    lang = lang_of(request)
    _ = i18n.translator(lang)
    ctx = {"request": request, "lang": lang, "_": _,
           "url": lambda path, **p: url_with(request, path, **p),
           # a model's title in the page's language where it has wording to translate (else as it is)
           "title_of": lambda lm: _(f"model.title.{lm.name}") if i18n.has(f"model.title.{lm.name}")
           else lm.spec.title,
           "other_lang": "es" if lang == "en" else "en", **context}
    block_name = block if (block and is_htmx(request)) else None
    return templates.TemplateResponse(request, template, ctx, block_name=block_name,  # type: ignore[return-value]
                                      status_code=status_code, headers=headers)


def render_error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    return render(request, "error.html", {"status": status, "message": message}, block="error",
                  status_code=status, headers=headers)

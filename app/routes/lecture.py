"""Lecture mode: eight projector pages (``/lecture``, ``/lecture/1`` … ``/lecture/8``) and their JSON faces
(``/api/lecture/...``).

Every number comes from :mod:`app.core.lecture`; these routes only read parameters, call the core and
turn its dataclasses into HTML (whole page, or the ``section`` block for htmx) or JSON. Errors from the
core (:class:`LectureError`) and from request validation are answered in the request's language.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from PIL import Image
from starlette.datastructures import QueryParams

from app import i18n
from app.config import ROOT
from app.core import imaging
from app.core import lecture as L
from app.core.zoo import UnknownModelError
from app.deps import EngineDep
from app.lecture_i18n import error_text, validation_text
from app.lecture_schemas import (
    ChannelPartOut,
    CnnLayerOut,
    CnnShapesOut,
    Conv2dIn,
    Conv2dOut,
    Conv3dIn,
    Conv3dOut,
    ConvStepOut,
    FcParamsOut,
    FilterPhotoIn,
    FilterPhotoOut,
    HandFilterOut,
    OutputSizeOut,
    ParamRowOut,
    ParamTableOut,
    PixelFilterOut,
    PixelOut,
    PoolIn,
    PoolOut,
    PoolWindowOut,
)
from app.schemas import Problem
from app.services import Engine, UnknownImageError
from app.web import is_api, is_htmx, lang_of, render, render_error

DEFAULT_PHOTO = ROOT / "static" / "img" / "astronaut.jpg"
SECTIONS = tuple(range(1, 9))


# -- errors in the request's language ----------------------------------------------------------
class LectureRoute(APIRoute):
    """Answers invalid requests (validation, :class:`LectureError`, unknown model or image) in the
    request's language: JSON ``{detail, code, ...}`` for the API, the error page for HTML."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            lang = lang_of(request)
            try:
                return await handler(request)
            except RequestValidationError as e:
                text, errors = validation_text(e.errors(), lang)
                return _problem(request, 422, "invalid_request", text, {"errors": errors})
            except L.LectureError as e:
                return _problem(request, 422, e.code, error_text(e, lang))
            except UnknownModelError as e:
                return _problem(request, 404, "unknown_model",
                                i18n.translator(lang)("lec.err.unknown_model", name=e.name,
                                                      valid=", ".join(e.valid)), {"valid": e.valid})
            except UnknownImageError as e:
                return _problem(request, 404, "unknown_image",
                                i18n.translator(lang)("lec.err.unknown_image", id=getattr(e, "name", "?")))

        return handle


def _problem(request: Request, status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> Response:
    if is_api(request):
        return JSONResponse({"detail": message, "code": code, **(extra or {})}, status_code=status)
    return render_error(request, status, message)


pages = APIRouter(include_in_schema=False, route_class=LectureRoute)
api = APIRouter(prefix="/api/lecture", tags=["lecture"], route_class=LectureRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "invalid input; the message says what to change (add ?lang=es for "
                                           "Spanish)"}}
PHOTO_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"model": Problem, "description": "unknown image id"},
    503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}
PNG: dict[str, Any] = {"content": {"image/png": {}}}
LangQ = Annotated[str | None, Query(max_length=5, description="language of error messages: en or es")]


# -- JSON faces -----------------------------------------------------------------------------------
def _size_out(s: L.OutputSize) -> OutputSizeOut:
    return OutputSizeOut(n=s.n, f=s.f, p=s.p, s=s.s, padded=s.padded, size=s.size, exact=s.exact, formula=s.formula)


def _lists(m: Sequence[Any]) -> Any:
    return [_lists(v) for v in m] if isinstance(m, tuple | list) else m


@api.post("/conv2d", response_model=Conv2dOut, responses=ERRORS,
          summary="2D convolution step by step: every window, its nine products and their sum")
def api_conv2d(body: Conv2dIn, lang: LangQ = None) -> Conv2dOut:
    """Cross-correlation as ``torch.nn.functional.conv2d``: ``out[i][j] = Σ x_pad[i·S+a][j·S+b]·k[a][b]``.
    The deck's 8×8 input and 3×3 kernel give 107, 156, 121, … (stride 2: 107, 121, 76)."""
    r = L.conv2d(body.input, body.kernel, body.padding, body.stride)
    steps = [ConvStepOut(index=s.index, row=s.row, col=s.col, top=s.top, left=s.left, window=_lists(s.window),
                         products=_lists(s.products), sum=s.total, expression=s.expression(r.kernel))
             for s in r.steps] if body.steps else None
    return Conv2dOut(input=_lists(r.input), kernel=_lists(r.kernel), padding=r.padding, stride=r.stride,
                     padded=_lists(r.padded), output=_lists(r.output), output_shape=list(r.out_shape),
                     output_size=_size_out(r.size()), steps=steps)


@api.post("/conv3d", response_model=Conv3dOut, responses=ERRORS,
          summary="Convolution over volume: K filters f×f×c, ReLU(conv + bias), per-channel partial sums")
def api_conv3d(body: Conv3dIn, lang: LangQ = None) -> Conv3dOut:
    """Same as ``relu(torch.nn.functional.conv2d(x[None], w, b, stride, padding))``; ``partial_sums[k][c]``
    is channel c's contribution to map k."""
    r = L.conv_volume(body.input, body.filters, body.bias, body.padding, body.stride, relu=body.relu,
                      pixel=(body.pixel[0], body.pixel[1]))
    px = PixelOut(row=r.pixel[0], col=r.pixel[1], filters=[
        PixelFilterOut(filter=d.filter, bias=d.bias, pre_activation=d.pre_activation, output=d.output,
                       channels=[ChannelPartOut(channel=c.channel, window=_lists(c.window), weights=_lists(c.weights),
                                                partial=c.partial) for c in d.parts])
        for d in r.detail])
    return Conv3dOut(output_shape=list(r.out_shape), partial_sums=_lists(r.partial_sums),
                     pre_activation=_lists(r.pre_activation), output=_lists(r.output), pixel=px)


@api.post("/pool", response_model=PoolOut, responses=ERRORS,
          summary="Max or average pooling (size, stride) and nearest upsampling of the result")
def api_pool(body: PoolIn, lang: LangQ = None) -> PoolOut:
    """The deck's 4×4 with max pooling 2×2, stride 2 gives [[8, 7], [7, 7]] (the slide prints 6 top right);
    upsampled ×2: [[8,8,7,7],[8,8,7,7],[7,7,7,7],[7,7,7,7]]."""
    r = L.pool2d(body.input, body.size, body.stride, body.mode)
    up = L.upsample_nearest(r.output, body.upsample)
    return PoolOut(mode=r.mode, size=r.size, stride=r.stride, output=_lists(r.output),
                   output_shape=list(L.shape(r.output)),
                   windows=[PoolWindowOut(row=w.row, col=w.col, top=w.top, left=w.left, values=_lists(w.values),
                                          result=w.result) for w in r.windows],
                   upsample=body.upsample, upsampled=_lists(up))


@api.get("/output-size", response_model=OutputSizeOut, responses=ERRORS,
         summary="Output side of a convolution: ⌊(n + 2p − f)/S⌋ + 1")
def api_output_size(n: Annotated[int, Query(description="input side")],
                    f: Annotated[int, Query(description="filter side")],
                    p: Annotated[int, Query(description="padding")] = 0,
                    s: Annotated[int, Query(description="stride")] = 1, lang: LangQ = None) -> OutputSizeOut:
    return _size_out(L.output_size(n, f, p, s))


def _fc_out(r: L.FcVsConv) -> FcParamsOut:
    return FcParamsOut(width=r.width, height=r.height, channels=r.channels, hidden=r.hidden, inputs=r.inputs,
                       fc_weights=r.fc_weights, fc_biases=r.fc_biases, fc_total=r.fc_total, fc_formula=r.fc_formula,
                       conv_f=r.conv_f, conv_k=r.conv_k, conv_params=r.conv_params, conv_formula=r.conv_formula,
                       ratio=r.ratio)


@api.get("/fc-params", response_model=FcParamsOut, responses=ERRORS,
         summary="First fully connected layer on raw pixels vs a conv layer on the same image")
def api_fc_params(width: int, height: int, channels: int = 3,
                  hidden: Annotated[int, Query(description="H, neurons of the first hidden layer")] = 1,
                  f: Annotated[int, Query(description="conv filter side")] = 5,
                  k: Annotated[int, Query(description="number of conv filters")] = 8,
                  lang: LangQ = None) -> FcParamsOut:
    """80×80×3: 19,200·H weights; 1280×720×3: 2,764,800·H — against (f·f·c + 1)·K for a conv layer."""
    return _fc_out(L.fc_vs_conv(width, height, channels, hidden, f=f, k=k))


def _cnn_out(r: L.CnnShapes) -> CnnShapesOut:
    return CnnShapesOut(n=r.n, f1=r.f1, f2=r.f2, m=r.m, total=r.total, layers=[
        CnnLayerOut(name=x.name, kind=x.kind, shape=list(x.shape), parameters=x.parameters, formula=x.formula,
                    filters=x.filters, f=x.f, padding=x.padding, stride=x.stride) for x in r.layers])


@api.get("/cnn-shapes", response_model=CnnShapesOut, responses=ERRORS,
         summary="Shapes of input → conv1 → pool1 → conv2 → fc1 → out ('same' padding)")
def api_cnn_shapes(n: int, f1: int = 3, f2: int = 3, m: int = 100, lang: LangQ = None) -> CnnShapesOut:
    return _cnn_out(L.cnn_shapes(n, f1, f2, m))


def _table_out(model: str, t: L.ParamTable) -> ParamTableOut:
    return ParamTableOut(model=model, total=t.total, rows=[
        ParamRowOut(name=r.name, type=r.type, parameters=r.parameters, formula=r.formula,
                    output_shape=list(r.output_shape) if r.output_shape is not None else None) for r in t.rows])


@api.get("/params/lecture-net", response_model=ParamTableOut, responses=ERRORS,
         summary="The lecture network's parameters: 608 + 3,216 + 48,120 + 10,164 + 850 = 62,958")
def api_params_lecture(lang: LangQ = None) -> ParamTableOut:
    return _table_out("lecture-net", L.lecture_net_table())


def _zoo_table(engine: Engine, model: str) -> L.ParamTable:
    lm = engine.model(model)
    return L.parameter_table(lm.module, shapes={li.name: li.output_shape for li in lm.layers})


@api.get("/params/{model}", response_model=ParamTableOut, responses={**ERRORS, 404: {"model": Problem}},
         summary="Parameters of a served model, layer by layer, with formulas for Conv, Linear and BatchNorm")
def api_params_model(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                     lang: LangQ = None) -> ParamTableOut:
    return _table_out(model, _zoo_table(engine, model))


def _filter_out(f: L.HandFilter) -> HandFilterOut:
    return HandFilterOut(name=f.name, kernels=_lists(f.kernels), divisor=f.divisor, display=f.display)


@api.get("/filters", response_model=list[HandFilterOut], summary="The hand-made filters (edges, Sobel, blur…)")
def api_filters() -> list[HandFilterOut]:
    return [_filter_out(f) for f in L.HAND_FILTERS.values()]


@lru_cache(maxsize=1)
def _default_photo() -> Image.Image:
    with Image.open(DEFAULT_PHOTO) as im:
        return im.convert("RGB")


def _photo(engine: Engine, image: str | None) -> Image.Image:
    return _default_photo() if not image else engine.picture(engine.image(image))


def _filtered_png(res: L.FilteredPhoto) -> bytes:
    if res.display == "grey":
        im = Image.fromarray((res.unit * 255 + 0.5).astype(np.uint8), "L")
    else:
        im = Image.fromarray(imaging.colorize(res.unit), "RGB")
    return imaging.png_bytes(im)


_FILTERED: OrderedDict[tuple[str, L.HandFilter], tuple[L.FilteredPhoto, bytes]] = OrderedDict()
_FILTERED_LOCK = threading.Lock()


def _filter_photo(engine: Engine, image: str | None, flt: L.HandFilter) -> tuple[L.FilteredPhoto, bytes]:
    """The filtered photo and its PNG; the last 32 (photo, filter) pairs are kept (a page shows the same
    result three times: the legend's numbers, the input and the output)."""
    pic = _photo(engine, image)  # checks that the image still exists
    key = (image or "", flt)
    with _FILTERED_LOCK:
        hit = _FILTERED.get(key)
        if hit is not None:
            _FILTERED.move_to_end(key)
            return hit
    res = L.apply_filter(pic, flt)
    out = (res, _filtered_png(res))
    with _FILTERED_LOCK:
        _FILTERED[key] = out
        while len(_FILTERED) > 32:
            _FILTERED.popitem(last=False)
    return out


def _photo_response(res: L.FilteredPhoto, png: bytes, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(FilterPhotoOut(
            filter=_filter_out(res.filter), width=int(res.output.shape[1]), height=int(res.output.shape[0]),
            display=res.display, lo=res.lo, hi=res.hi, min=float(res.output.min()), max=float(res.output.max()),
            png="data:image/png;base64," + base64.b64encode(png).decode()).model_dump())
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


@api.get("/filter-photo", responses={**PHOTO_ERRORS, 200: {**PNG, "model": FilterPhotoOut}}, response_class=Response,
         summary="A hand-made filter applied to a photo (grey levels): PNG, or JSON with the scale")
async def api_filter_photo_get(engine: EngineDep, image: Annotated[str | None, Query(max_length=64)] = None,
                               filter: Annotated[str, Query(max_length=32)] = "vertical_edges",
                               format: Literal["png", "json"] = "png",
                               lang: LangQ = None) -> Response:
    """``image`` is an id from ``POST /api/images`` (default: the lecture's photo). Signed outputs (edges)
    are drawn with viridis, −m dark, 0 in the middle, +m bright; intensities in grey."""
    flt = L.hand_filter(filter)
    if image:
        engine.image(image)  # an unknown id: 404 before any work
    res, png = await engine.gate.run(_filter_photo, engine, image, flt)
    return _photo_response(res, png, format)


@api.post("/filter-photo", responses={**PHOTO_ERRORS, 200: {**PNG, "model": FilterPhotoOut}}, response_class=Response,
          summary="A named filter or your own kernel applied to a photo: PNG, or JSON with the scale")
async def api_filter_photo_post(engine: EngineDep, body: FilterPhotoIn, lang: LangQ = None) -> Response:
    if body.kernel is not None and body.filter is not None:
        raise L.LectureError("filter_or_kernel")
    flt = L.custom_filter(body.kernel) if body.kernel is not None else L.hand_filter(body.filter or "vertical_edges")
    if body.image:
        engine.image(body.image)
    res, png = await engine.gate.run(_filter_photo, engine, body.image, flt)
    return _photo_response(res, png, body.format)


# -- HTML pages: helpers ---------------------------------------------------------------------------
Pairs = list[tuple[str, Any]]


def link(path: str, pairs: Pairs, lang: str) -> str:
    """A URL with repeated parameters kept in order, and ``lang`` when it is not the default."""
    q = [(k, v) for k, v in pairs if v is not None]
    if lang != i18n.DEFAULT_LANG:
        q.append(("lang", lang))
    return path + ("?" + urlencode(q) if q else "")


def page(request: Request, n: int, template: str, ctx: dict[str, Any], pairs: Pairs) -> HTMLResponse:
    """The whole page, or (htmx) the ``section`` block plus the navigation bar out of band, with the
    canonical URL of the new state pushed into the history."""
    lang = lang_of(request)
    other = "es" if lang == "en" else "en"
    path = f"/lecture/{n}" if n else "/lecture"
    canonical = link(path, pairs, lang)
    ctx = {**ctx, "sec": n, "sections": SECTIONS, "canonical": canonical,
           "lang_url": link(path, pairs, other),
           "prev_url": link(f"/lecture/{n - 1}" if n > 1 else "/lecture", [], lang) if n >= 1 else None,
           "next_url": link(f"/lecture/{n + 1}", [], lang) if n < len(SECTIONS) else None,
           "section_url": lambda i: link(f"/lecture/{i}", [], lang), "index_url": link("/lecture", [], lang),
           "fmt": show, "term": term, "shape_text": shape_text}
    if is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true":
        body = render(request, template, ctx, block="section").body
        nav = render(request, "lecture/_nav.html", {**ctx, "oob": True}).body
        return HTMLResponse(bytes(body) + bytes(nav), headers={"HX-Push-Url": canonical, "Vary": "HX-Request"})
    resp = render(request, template, {**ctx, "full": True})
    resp.headers["Vary"] = "HX-Request"
    return resp


def show(v: L.Number) -> str:
    """A number for the projector: the true minus sign (−), wider and clearer than a hyphen."""
    return L.fmt(v).replace("-", "−")


def term(v: L.Number) -> str:
    """A number inside a sum: negatives in parentheses."""
    s = show(v)
    return f"({s})" if s.startswith("−") else s


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
        self.errors.append(error_text(e, self.lang))

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
    already have a value (the others are blank); ``current`` = the index of the highlighted cell.
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
            row.append({"v": "" if blank else (L.fmt(v) if name else show(v)), "cls": " ".join(cls), "pad": is_pad,
                        "edit": name is not None and not is_pad, "name": name, "r": i - p, "c": j - p,
                        "id": f"{name}-{i - p}-{j - p}" if name else None})
        out.append(row)
    return out


# -- the pages --------------------------------------------------------------------------------------
@pages.get("/lecture", response_class=HTMLResponse)
def lecture_index(request: Request) -> HTMLResponse:
    return page(request, 0, "lecture/index.html", {}, [])


PRESETS = {"small": (80, 80, 3), "hd": (1280, 720, 3)}


@pages.get("/lecture/1", response_class=HTMLResponse)
def lecture_1(request: Request) -> HTMLResponse:
    """Fully connected vs convolutional: parameters of the first layer."""
    inp = Inputs(request.query_params, lang_of(request))
    preset = inp.choice("preset", "", tuple(PRESETS))
    if preset:
        width, height, channels = PRESETS[preset]
    else:
        width = inp.int("width", 80, 1, L.MAX_IMAGE_SIDE, "width")
        height = inp.int("height", 80, 1, L.MAX_IMAGE_SIDE, "height")
        channels = inp.int("channels", 3, 1, L.MAX_CHANNELS, "number of channels")
    hidden = inp.int("hidden", 1000, 1, L.MAX_HIDDEN, "number of hidden neurons H")
    f = inp.int("f", 5, 1, L.MAX_CNN_F, "filter size f")
    k = inp.int("k", 8, 1, 4096, "number of filters K")
    res = None
    try:
        res = L.fc_vs_conv(width, height, channels, hidden, f=f, k=k)
        presets = {name: L.fc_vs_conv(*wh, hidden=hidden, f=f, k=k) for name, wh in PRESETS.items()}
    except L.LectureError as e:
        inp.err(e)
        presets = {}
    pairs: Pairs = [("width", width), ("height", height), ("channels", channels), ("hidden", hidden), ("f", f),
                    ("k", k)]
    return page(request, 1, "lecture/s1.html", {
        "res": res, "presets": presets, "errors": inp.errors, "width": width, "height": height,
        "channels": channels, "hidden": hidden, "f": f, "k": k}, pairs)


PAGE_N, PAGE_F, PAGE_P, PAGE_S = 10, 5, 3, 4


@pages.get("/lecture/2", response_class=HTMLResponse)
def lecture_2(request: Request) -> HTMLResponse:
    """Convolution step by step on the deck's 8×8 input and 3×3 kernel (editable)."""
    inp = Inputs(request.query_params, lang_of(request))
    n = inp.int("n", 8, 1, PAGE_N, "input size n")
    f = inp.int("f", 3, 1, PAGE_F, "filter size f")
    p = inp.int("p", 0, 0, PAGE_P, "padding p")
    s = inp.int("s", 1, 1, PAGE_S, "stride S")
    x = inp.matrix("x", "xn") or L.resize_matrix(L.DECK_INPUT, n, n)
    k = inp.matrix("k", "kf", label="kernel") or L.resize_matrix(L.DECK_KERNEL, f, f)
    fill = inp.choice("fill", "", ("deck", "random", "zeros"))
    step = inp.int("go", 0, 0, 10**6) or inp.int("step", 1, 1, 10**6)
    seed = None
    if fill == "deck":
        n, f, p, s, step = 8, 3, 0, 1, 1
        x, k = L.DECK_INPUT, L.DECK_KERNEL
    elif fill == "random":
        seed = secrets.randbelow(10**6)
        x, k, step = L.random_matrix(n, n, seed), L.random_matrix(f, f, seed + 1, 0, 5), 1
    elif fill == "zeros":
        x, step = L.resize_matrix(((0,),), n, n), 1
    x, k = L.resize_matrix(x, n, n), L.resize_matrix(k, f, f)
    res: L.Conv2dResult | None = None
    size: L.OutputSize | None = None
    try:
        res = L.conv2d(x, k, p, s, max_n=PAGE_N, max_f=PAGE_F)
        size = res.size()
    except L.LectureError as e:
        inp.err(e)
    total = len(res.steps) if res else 0
    step = max(1, min(step, total or 1))
    cur = res.steps[step - 1] if res else None
    pairs: Pairs = [("n", n), ("f", f), ("p", p), ("s", s), ("step", step)]
    if x != L.DECK_INPUT:
        pairs += [("xn", n)] + matrix_pairs("x", x)
    if k != L.DECK_KERNEL:
        pairs += [("kf", f)] + matrix_pairs("k", k)
    return page(request, 2, "lecture/s2.html", {
        "errors": inp.errors, "n": n, "f": f, "p": p, "s": s, "step": step, "total": total, "res": res,
        "size": size, "cur": cur, "x": x, "k": k, "limits": (PAGE_N, PAGE_F, PAGE_P, PAGE_S),
        "in_cells": cells(x, p=p, name="x", window=(cur.top, cur.left, f, f) if cur else None),
        "k_cells": cells(k, name="k"),
        "out_cells": cells(res.output, shown=step, current=step - 1) if res else [],
        "prod_cells": [[{"v": f"{term(cur.window[a][b])}·{term(k[a][b])}", "p": show(cur.products[a][b])}
                        for b in range(f)] for a in range(f)] if cur else [],
        "expression": cur.expression(k).replace("-", "−") if cur else "",
        "is_deck": x == L.DECK_INPUT and k == L.DECK_KERNEL, "seed": seed}, pairs)


@pages.get("/lecture/3", response_class=HTMLResponse)
async def lecture_3(request: Request, engine: EngineDep) -> HTMLResponse:
    """Hand-made filters (the deck's edge filters, Sobel, blur, sharpen) on a real photo."""
    inp = Inputs(request.query_params, lang_of(request))
    names = [n for n in L.HAND_FILTERS if n != "identity"]
    name = inp.choice("filter", "vertical_edges", names)
    image = request.query_params.get("image") or None
    if image is not None:
        engine.image(image)  # unknown id: 404 in the page's language
    flt = L.hand_filter(name)
    res, _png = await engine.gate.run(_filter_photo, engine, image, flt)
    i = names.index(name)
    q = [("image", image)]
    return page(request, 3, "lecture/s3.html", {
        "errors": inp.errors, "names": names, "name": name, "flt": flt, "res": res, "image": image,
        "recent": engine.store.list_images(6),
        "src": link("/api/lecture/filter-photo", [("filter", name)] + q, "en"),
        "grey_src": link("/api/lecture/filter-photo", [("filter", "identity")] + q, "en"),
        "filter_url": lambda nm: link("/lecture/3", [("filter", nm)] + q, lang_of(request)),
        "image_url": lambda im: link("/lecture/3", [("filter", name), ("image", im)], lang_of(request)),
        "prev_filter": names[i - 1] if i > 0 else None, "next_filter": names[i + 1] if i + 1 < len(names) else None,
    }, [("filter", name), ("image", image)])


@pages.get("/lecture/4", response_class=HTMLResponse)
def lecture_4(request: Request) -> HTMLResponse:
    """Convolution over volume: RGB input, K filters f×f×3, ReLU(conv + bias), per-channel partial sums."""
    inp = Inputs(request.query_params, lang_of(request))
    n = inp.int("n", 5, 2, 7, "input size n")
    f = inp.int("f", 3, 1, 5, "filter size f")
    kk = inp.int("k", 2, 1, 3, "number of filters K")
    p = inp.int("p", 0, 0, 2, "padding p")
    s = inp.int("s", 1, 1, 3, "stride S")
    relu = request.query_params.get("relu", "1") not in ("0", "off", "")
    fill = request.query_params.get("fill")
    seed = L.EXAMPLE_SEED if fill == "example" else (
        secrets.randbelow(10**6) if fill == "random" else inp.int("seed", L.EXAMPLE_SEED, 0, 10**6))
    x, w, b = L.example_volume(seed, n, 3, f, kk)
    res: L.VolumeResult | None = None
    try:
        oh = L.output_size(n, f, p, s).size
        step = inp.int("go", 0, 0, 10**6) or inp.int("step", 1, 1, 10**6)
        step = max(1, min(step, oh * oh))
        r, c = divmod(step - 1, oh)
        res = L.conv_volume(x, w, b, p, s, relu=relu, pixel=(r, c))
    except L.LectureError as e:
        inp.err(e)
        oh, step, r, c = 0, 1, 0, 0
    pairs: Pairs = [("n", n), ("f", f), ("k", kk), ("p", p), ("s", s), ("relu", int(relu)), ("seed", seed),
                    ("step", step)]
    win = (r * s, c * s, f, f)
    return page(request, 4, "lecture/s4.html", {
        "errors": inp.errors, "n": n, "f": f, "kk": kk, "p": p, "s": s, "relu": relu, "seed": seed, "res": res,
        "step": step, "total": oh * oh, "oh": oh, "row": r, "col": c,
        "x_cells": [cells(ch, p=p, window=win) for ch in x],
        "w_cells": [[cells(ch) for ch in flt] for flt in w],
        "out_cells": [cells(m, current=step - 1) for m in res.output] if res else [],
        "pre_cells": [cells(m, current=step - 1) for m in res.pre_activation] if res else [],
        "bias": b, "channels": ("R", "G", "B")}, pairs)


@pages.get("/lecture/5", response_class=HTMLResponse)
def lecture_5(request: Request) -> HTMLResponse:
    """Pooling (max / average) and nearest upsampling on the deck's 4×4 example (editable)."""
    inp = Inputs(request.query_params, lang_of(request))
    n = inp.int("n", 4, 1, 8, "input size n")
    mode = inp.choice("mode", "max", ("max", "avg"))
    size = inp.int("size", 2, 1, 4, "pooling size")
    s = inp.int("s", 2, 1, 4, "stride S")
    up = inp.int("up", 2, 1, 4, "upsampling factor")
    x = inp.matrix("x", "xn") or L.resize_matrix(L.DECK_POOL_INPUT, n, n)
    fill = inp.choice("fill", "", ("deck", "random"))
    if fill == "deck":
        n, mode, size, s, up, x = 4, "max", 2, 2, 2, L.DECK_POOL_INPUT
    elif fill == "random":
        x = L.random_matrix(n, n, secrets.randbelow(10**6))
    x = L.resize_matrix(x, n, n)
    res: L.PoolResult | None = None
    upsampled: L.Matrix | None = None
    try:
        res = L.pool2d(x, size, s, mode)  # type: ignore[arg-type]
        upsampled = L.upsample_nearest(res.output, up)
    except L.LectureError as e:
        inp.err(e)
    total = len(res.windows) if res else 0
    default_step = 2 if (res and total >= 2) else 1  # the deck's slip is in the second window
    step = inp.int("go", 0, 0, 10**6) or inp.int("step", default_step, 1, 10**6)
    step = max(1, min(step, total or 1))
    cur = res.windows[step - 1] if res else None
    is_deck = x == L.DECK_POOL_INPUT and mode == "max" and size == 2 and s == 2
    pairs: Pairs = [("n", n), ("mode", mode), ("size", size), ("s", s), ("up", up), ("step", step)]
    if x != L.DECK_POOL_INPUT:
        pairs += [("xn", n)] + matrix_pairs("x", x)
    return page(request, 5, "lecture/s5.html", {
        "errors": inp.errors, "n": n, "mode": mode, "size": size, "s": s, "up": up, "res": res, "cur": cur,
        "step": step, "total": total, "is_deck": is_deck, "printed": L.DECK_POOL_PRINTED,
        "window_text": ", ".join(show(v) for row in cur.values for v in row) if cur else "",
        "in_cells": cells(x, name="x", window=(cur.top, cur.left, size, size) if cur else None),
        "out_cells": cells(res.output, current=step - 1) if res else [],
        "up_cells": cells(upsampled, window=(cur.row * up, cur.col * up, up, up) if cur else None)
        if upsampled else []}, pairs)


@pages.get("/lecture/6", response_class=HTMLResponse)
def lecture_6(request: Request) -> HTMLResponse:
    """A CNN end to end: input → conv1 → pool1 → conv2 → fc1 → out, shapes for chosen n, f1, f2, M."""
    inp = Inputs(request.query_params, lang_of(request))
    n = inp.int("n", 28, 2, L.MAX_CNN_N, "input size n")
    f1 = inp.int("f1", 3, 1, L.MAX_CNN_F, "f1")
    f2 = inp.int("f2", 5, 1, L.MAX_CNN_F, "f2")
    m = inp.int("m", 100, 1, L.MAX_CNN_M, "number of neurons M")
    res = None
    try:
        res = L.cnn_shapes(n, f1, f2, m)
    except L.LectureError as e:
        inp.err(e)
    return page(request, 6, "lecture/s6.html", {"errors": inp.errors, "n": n, "f1": f1, "f2": f2, "neurons": m,
                                                 "res": res}, [("n", n), ("f1", f1), ("f2", f2), ("m", m)])


@pages.get("/lecture/7", response_class=HTMLResponse)
def lecture_7(request: Request, engine: EngineDep) -> HTMLResponse:
    """Counting parameters: the lecture network's table, then any served model's."""
    names = engine.zoo.names()
    model = request.query_params.get("model") or None
    if model is not None and model not in names:
        engine.model(model)  # raises UnknownModelError: 404 in the page's language
    zoo = _zoo_table(engine, model) if model else None
    lm = engine.model(model) if model else None
    return page(request, 7, "lecture/s7.html", {"lecture": L.lecture_net_table(), "names": names, "model": model,
                                                 "zoo": zoo, "lm": lm}, [("model", model)])


@pages.get("/lecture/8", response_class=HTMLResponse)
def lecture_8(request: Request, engine: EngineDep) -> HTMLResponse:
    """What a CNN learned: links into the live views for the four methods."""
    image = request.query_params.get("image") or None
    if image is not None:
        engine.image(image)
    models = list(engine.zoo.models.values())
    return page(request, 8, "lecture/s8.html", {"models": models, "image": image}, [("image", image)])


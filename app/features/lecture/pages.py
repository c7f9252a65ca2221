"""Lecture mode's projector pages: the index (``/lecture``) and the eight sections ``/lecture/1`` …
``/lecture/8``. Under htmx a page answers its ``section`` block plus the navigation bar out of band, and
pushes the canonical URL of the new state into the history.

Every number comes from :mod:`app.core.lecture`. A value the page cannot take falls back to a default and
leaves a message next to the form (:class:`~app.features.lecture.forms.Inputs`); unknown images and models
are answered by :mod:`app.errors`, in the page's language.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.core import lecture as L
from app.deps import EngineDep, ServicesDep
from app.features.lecture.forms import Inputs, Pairs, cells, link, matrix_pairs, shape_text
from app.features.lecture.s8 import section8
from app.features.lecture.service import filter_photo, model_table
from app.i18n import format as numbers
from app.web.templating import is_htmx, lang_of, render

SECTIONS = tuple(range(1, 9))

router = APIRouter(include_in_schema=False)


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
           "shape_text": shape_text}  # numbers: the templates' |figure and |term (app.i18n.format)
    if is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true":
        body = render(request, template, ctx, block="section").body
        nav = render(request, "lecture/_nav.html", {**ctx, "oob": True}).body
        return HTMLResponse(bytes(body) + bytes(nav), headers={"HX-Push-Url": canonical, "Vary": "HX-Request"})
    resp = render(request, template, {**ctx, "full": True})
    resp.headers["Vary"] = "HX-Request"
    return resp


@router.get("/lecture", response_class=HTMLResponse)
def lecture_index(request: Request) -> HTMLResponse:
    return page(request, 0, "lecture/index.html", {}, [])


PRESETS = {"small": (80, 80, 3), "hd": (1280, 720, 3)}


@router.get("/lecture/1", response_class=HTMLResponse)
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


@router.get("/lecture/2", response_class=HTMLResponse)
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
        "is_deck": x == L.DECK_INPUT and k == L.DECK_KERNEL, "seed": seed}, pairs)


@router.get("/lecture/3", response_class=HTMLResponse)
async def lecture_3(request: Request, engine: EngineDep) -> HTMLResponse:
    """Hand-made filters (the deck's edge filters, Sobel, blur, sharpen) on a real photo."""
    inp = Inputs(request.query_params, lang_of(request))
    names = [n for n in L.HAND_FILTERS if n != "identity"]
    name = inp.choice("filter", "vertical_edges", names)
    image = request.query_params.get("image") or None
    if image is not None:
        engine.image(image)  # unknown id: 404 in the page's language
    flt = L.hand_filter(name)
    res, _png = await engine.gate.run(filter_photo, engine, image, flt)
    i = names.index(name)
    q = [("image", image)]
    return page(request, 3, "lecture/s3.html", {
        "errors": inp.errors, "names": names, "name": name, "flt": flt, "res": res, "image": image,
        "recent": engine.store.list_images(6),
        "src": link("/api/lecture/filter-photo", [("filter", name), ("format", "jpeg")] + q, "en"),
        "grey_src": link("/api/lecture/filter-photo", [("filter", "identity"), ("format", "jpeg")] + q, "en"),
        "filter_url": lambda nm: link("/lecture/3", [("filter", nm)] + q, lang_of(request)),
        "image_url": lambda im: link("/lecture/3", [("filter", name), ("image", im)], lang_of(request)),
        "prev_filter": names[i - 1] if i > 0 else None, "next_filter": names[i + 1] if i + 1 < len(names) else None,
    }, [("filter", name), ("image", image)])


@router.get("/lecture/4", response_class=HTMLResponse)
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


@router.get("/lecture/5", response_class=HTMLResponse)
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
        "in_cells": cells(x, name="x", window=(cur.top, cur.left, size, size) if cur else None),
        "out_cells": cells(res.output, current=step - 1) if res else [],
        "up_cells": cells(upsampled, window=(cur.row * up, cur.col * up, up, up) if cur else None)
        if upsampled else []}, pairs)


@router.get("/lecture/6", response_class=HTMLResponse)
def lecture_6(request: Request) -> HTMLResponse:
    """A CNN end to end: input → conv1 → pool1 → conv2 → fc1 → out, shapes for chosen n, f1, f2, M."""
    inp = Inputs(request.query_params, lang_of(request))
    n = inp.int("n", 28, 2, L.MAX_CNN_N, "input size n")
    f1 = inp.int("f1", 3, 1, L.MAX_CNN_F, "f1")
    f2 = inp.int("f2", 5, 1, L.MAX_CNN_F, "f2")
    m = inp.int("m", 100, 1, L.MAX_CNN_M, "number of neurons M")
    res = None
    try:
        res = L.cnn_shapes(n, f1, f2, m, num=lambda v: numbers.integer(v, inp.lang))
    except L.LectureError as e:
        inp.err(e)
    return page(request, 6, "lecture/s6.html", {"errors": inp.errors, "n": n, "f1": f1, "f2": f2, "neurons": m,
                                                 "res": res}, [("n", n), ("f1", f1), ("f2", f2), ("m", m)])


@router.get("/lecture/7", response_class=HTMLResponse)
def lecture_7(request: Request, engine: EngineDep) -> HTMLResponse:
    """Counting parameters: the lecture network's table, then any served model's."""
    names = engine.zoo.names()
    model = request.query_params.get("model") or None
    lm = engine.model(model) if model else None  # an unknown name: 404 in the page's language
    zoo = model_table(lm) if lm else None
    return page(request, 7, "lecture/s7.html", {"lecture": L.lecture_net_table(), "names": names, "model": model,
                                                 "zoo": zoo, "lm": lm}, [("model", model)])


@router.get("/lecture/8", response_class=HTMLResponse)
async def lecture_8(request: Request, services: ServicesDep) -> HTMLResponse:
    """What a CNN learned: the four methods with real pictures, each linking to its live view."""
    image = request.query_params.get("image") or None
    ctx = await section8(request, services, image)
    return page(request, 8, "lecture/s8.html", ctx, [("image", image)])


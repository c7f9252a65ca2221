"""Lecture mode's JSON (and PNG) faces under ``/api/lecture``: the computations behind the projector pages
(2D convolution step by step, convolution over volume, pooling, output sizes, fully connected vs convolutional
parameters, a CNN's shapes, parameter tables) and the hand-made filters applied to a photo.

Every number comes from :mod:`app.core.lecture`; these routes turn its dataclasses into the models of
:mod:`app.features.lecture.schemas`. Errors (the core's :class:`~app.core.lecture.LectureError`, validation,
unknown names) are answered by :mod:`app.errors`, in the request's language.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from app.core import lecture as L
from app.core.imaging import png_data_uri
from app.deps import EngineDep
from app.features.lecture.schemas import (
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
from app.features.lecture.service import filter_photo, filter_photo_jpeg, model_table
from app.http.responses import BINARY, PNG, Problem

router = APIRouter(prefix="/api/lecture", tags=["lecture"])
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": Problem, "description": "invalid input; the message says what to change (add ?lang=es for "
                                           "Spanish)"}}
PHOTO_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 404: {"model": Problem, "description": "unknown image id"},
    503: {"model": Problem, "description": "busy: retry after the Retry-After header"}}
LangQ = Annotated[str | None, Query(max_length=5, description="language of error messages: en or es")]


def _size_out(s: L.OutputSize) -> OutputSizeOut:
    return OutputSizeOut(n=s.n, f=s.f, p=s.p, s=s.s, padded=s.padded, size=s.size, exact=s.exact, formula=s.formula)


def _lists(m: Sequence[Any]) -> Any:
    return [_lists(v) for v in m] if isinstance(m, tuple | list) else m


@router.post("/conv2d", response_model=Conv2dOut, responses=ERRORS,
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


@router.post("/conv3d", response_model=Conv3dOut, responses=ERRORS,
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


@router.post("/pool", response_model=PoolOut, responses=ERRORS,
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


@router.get("/output-size", response_model=OutputSizeOut, responses=ERRORS,
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


@router.get("/fc-params", response_model=FcParamsOut, responses=ERRORS,
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


@router.get("/cnn-shapes", response_model=CnnShapesOut, responses=ERRORS,
            summary="Shapes of input → conv1 → pool1 → conv2 → fc1 → out ('same' padding)")
def api_cnn_shapes(n: int, f1: int = 3, f2: int = 3, m: int = 100, lang: LangQ = None) -> CnnShapesOut:
    return _cnn_out(L.cnn_shapes(n, f1, f2, m))


def _table_out(model: str, t: L.ParamTable) -> ParamTableOut:
    return ParamTableOut(model=model, total=t.total, rows=[
        ParamRowOut(name=r.name, type=r.type, parameters=r.parameters, formula=r.formula,
                    output_shape=list(r.output_shape) if r.output_shape is not None else None) for r in t.rows])


@router.get("/params/lecture-net", response_model=ParamTableOut, responses=ERRORS,
            summary="The lecture network's parameters: 608 + 3,216 + 48,120 + 10,164 + 850 = 62,958")
def api_params_lecture(lang: LangQ = None) -> ParamTableOut:
    return _table_out("lecture-net", L.lecture_net_table())


@router.get("/params/{model}", response_model=ParamTableOut, responses={**ERRORS, 404: {"model": Problem}},
            summary="Parameters of a served model, layer by layer, with formulas for Conv, Linear and BatchNorm")
def api_params_model(engine: EngineDep, model: Annotated[str, Path(max_length=64)],
                     lang: LangQ = None) -> ParamTableOut:
    return _table_out(model, model_table(engine.model(model)))


def _filter_out(f: L.HandFilter) -> HandFilterOut:
    return HandFilterOut(name=f.name, kernels=_lists(f.kernels), divisor=f.divisor, display=f.display)


@router.get("/filters", response_model=list[HandFilterOut], summary="The hand-made filters (edges, Sobel, blur…)")
def api_filters() -> list[HandFilterOut]:
    return [_filter_out(f) for f in L.HAND_FILTERS.values()]


def _photo_response(res: L.FilteredPhoto, png: bytes, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(FilterPhotoOut(
            filter=_filter_out(res.filter), width=int(res.output.shape[1]), height=int(res.output.shape[0]),
            display=res.display, lo=res.lo, hi=res.hi, min=float(res.output.min()), max=float(res.output.max()),
            png=png_data_uri(png)).model_dump())
    if fmt == "jpeg":
        return Response(png, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/filter-photo", responses={**PHOTO_ERRORS, 200: {"content": {**PNG["content"], "image/jpeg": {"schema": BINARY}},
                                                                  "model": FilterPhotoOut}}, response_class=Response,
            summary="A hand-made filter applied to a photo (grey levels): PNG, JPEG (for a page), or JSON with the scale")
async def api_filter_photo_get(engine: EngineDep, image: Annotated[str | None, Query(max_length=64)] = None,
                               filter: Annotated[str, Query(max_length=32)] = "vertical_edges",
                               format: Literal["png", "json", "jpeg"] = "png",
                               lang: LangQ = None) -> Response:
    """``image`` is an id from ``POST /api/images`` (default: the lecture's photo). Signed outputs (edges)
    are drawn with viridis, −m dark, 0 in the middle, +m bright; intensities in grey."""
    flt = L.hand_filter(filter)
    if image:
        engine.image(image)  # an unknown id: 404 before any work
    res, data = await engine.gate.run(filter_photo_jpeg if format == "jpeg" else filter_photo, engine, image, flt)
    return _photo_response(res, data, format)


@router.post("/filter-photo", responses={**PHOTO_ERRORS, 200: {**PNG, "model": FilterPhotoOut}}, response_class=Response,
             summary="A named filter or your own kernel applied to a photo: PNG, or JSON with the scale")
async def api_filter_photo_post(engine: EngineDep, body: FilterPhotoIn, lang: LangQ = None) -> Response:
    if body.kernel is not None and body.filter is not None:
        raise L.LectureError("filter_or_kernel")
    flt = L.custom_filter(body.kernel) if body.kernel is not None else L.hand_filter(body.filter or "vertical_edges")
    if body.image:
        engine.image(body.image)
    res, png = await engine.gate.run(filter_photo, engine, body.image, flt)
    return _photo_response(res, png, body.format)


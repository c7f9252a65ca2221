"""Lecture mode through HTTP: every figure through the JSON API, every page with and without htmx,
both languages, plain forms without JavaScript, and translated errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app import i18n
from app.core import lecture as L
from conftest import make_photo

DECK = [list(r) for r in L.DECK_INPUT]
K = [list(r) for r in L.DECK_KERNEL]
POOL = [list(r) for r in L.DECK_POOL_INPUT]
TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "lecture"
HX = {"HX-Request": "true"}


# -- JSON faces -----------------------------------------------------------------------------------------
def test_conv2d_api_deck_figures(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/lecture/conv2d", json={"input": DECK, "kernel": K})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output_shape"] == [6, 6] and body["output"][0][:3] == [107, 156, 121]
    s0, s1 = body["steps"][0], body["steps"][1]
    assert s0["sum"] == 107 and s0["window"] == [[1, 7, 7], [3, 8, 6], [4, 7, 4]]
    assert s0["products"] == [[3, 21, 35], [6, 8, 6], [12, 0, 16]]
    assert s0["expression"] == "1·3 + 3·2 + 4·3 + 7·3 + 8·1 + 7·0 + 7·5 + 6·1 + 4·4 = 107"
    assert (s1["top"], s1["left"], s1["sum"]) == (0, 1, 156)
    assert body["output_size"]["size"] == 6 and body["output_size"]["formula"] == "⌊(8 + 2·0 − 3)/1⌋ + 1 = 6"

    r2 = client.post("/api/lecture/conv2d", json={"input": DECK, "kernel": K, "stride": 2}).json()
    assert r2["output_shape"] == [3, 3] and r2["output"][0] == [107, 121, 76]
    assert r2["steps"][1]["sum"] == 121
    assert r2["steps"][1]["expression"] == "7·3 + 6·2 + 4·3 + 8·3 + 3·1 + 7·0 + 9·5 + 4·1 + 0·4 = 121"

    block = [row[:5] for row in DECK[:5]]
    r3 = client.post("/api/lecture/conv2d", json={"input": block, "kernel": K, "padding": 1, "steps": False}).json()
    assert r3["output_shape"] == [5, 5] and r3["steps"] is None and len(r3["padded"]) == 7
    assert r3["padded"][0] == [0] * 7 and r3["padded"][1] == [0, 1, 7, 7, 8, 9, 0]


def test_conv2d_api_matches_torch_with_floats(client) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x, k = rng.normal(size=(9, 7)).round(3), rng.normal(size=(3, 2)).round(3)
    body = client.post("/api/lecture/conv2d", json={"input": x.tolist(), "kernel": k.tolist(), "padding": 2,
                                                    "stride": 3}).json()
    ref = F.conv2d(torch.tensor(x)[None, None], torch.tensor(k)[None, None], stride=3, padding=2)[0, 0]
    assert np.allclose(np.array(body["output"]), ref.numpy())


def test_output_size_and_fc_params_api(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/lecture/output-size", params={"n": 10, "f": 3}).json()["size"] == 8
    r = client.get("/api/lecture/output-size", params={"n": 5, "f": 3, "p": 1}).json()
    assert r["size"] == 5 and r["padded"] == 7
    assert client.get("/api/lecture/output-size", params={"n": 8, "f": 3, "s": 2}).json()["size"] == 3
    small = client.get("/api/lecture/fc-params", params={"width": 80, "height": 80, "channels": 3, "hidden": 10}).json()
    assert small["inputs"] == 19_200 and small["fc_weights"] == 192_000 and small["fc_formula"].endswith("19,200·H")
    hd = client.get("/api/lecture/fc-params", params={"width": 1280, "height": 720, "channels": 3}).json()
    assert hd["inputs"] == 2_764_800 and hd["fc_formula"].endswith("2,764,800·H")
    assert hd["conv_params"] == 608 and hd["conv_formula"] == "(5·5·3 + 1)·8 = 608"


def test_cnn_shapes_api(client) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/lecture/cnn-shapes", params={"n": 28, "f1": 3, "f2": 5, "m": 100}).json()
    shapes = {layer["name"]: layer["shape"] for layer in body["layers"]}
    assert shapes == {"input": [28, 28, 1], "conv1": [28, 28, 3], "pool1": [14, 14, 3], "conv2": [14, 14, 5],
                      "flatten": [980], "fc1": [100], "out": [10]}
    assert body["total"] == 30 + 380 + 98_100 + 1_010


def test_params_api_lecture_net_and_zoo(client, zoo) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/lecture/params/lecture-net").json()
    counts = {r["name"]: r["parameters"] for r in body["rows"]}
    assert counts == {"conv1": 608, "pool1": 0, "conv2": 3216, "pool2": 0, "fc3": 48120, "fc4": 10164, "out": 850}
    assert body["total"] == 62_958
    for name in ("lenet", "cifarnet"):
        body = client.get(f"/api/lecture/params/{name}").json()
        assert body["total"] == zoo.get(name).total_parameters == sum(r["parameters"] for r in body["rows"])
        assert all(r["formula"] for r in body["rows"] if r["type"] in ("Conv2d", "Linear", "BatchNorm2d"))
    assert client.get("/api/lecture/params/lenet").json()["total"] == 62_958
    r = client.get("/api/lecture/params/nope")
    assert r.status_code == 404 and "lenet" in r.json()["valid"]
    es = client.get("/api/lecture/params/nope", params={"lang": "es"}).json()["detail"]
    assert "No existe el modelo" in es


def test_pool_api(client) -> None:  # type: ignore[no-untyped-def]
    body = client.post("/api/lecture/pool", json={"input": POOL, "mode": "max", "size": 2, "stride": 2}).json()
    assert body["output"] == [[8, 7], [7, 7]] and body["parameters"] == 0
    assert body["windows"][1]["values"] == [[7, 2], [6, 3]] and body["windows"][1]["result"] == 7
    assert body["upsampled"] == [[8, 8, 7, 7], [8, 8, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]]
    avg = client.post("/api/lecture/pool", json={"input": POOL, "mode": "avg", "upsample": 1}).json()
    assert avg["output"] == [[4.75, 4.5], [5.75, 4.75]] and avg["upsampled"] == avg["output"]


def test_conv3d_api_matches_torch(client) -> None:  # type: ignore[no-untyped-def]
    x, w, b = L.example_volume(5, 5, 3, 3, 2)
    body = client.post("/api/lecture/conv3d", json={"input": x, "filters": w, "bias": b, "padding": 1, "stride": 2,
                                                    "pixel": [1, 2]}).json()
    ref = F.conv2d(torch.tensor(x, dtype=torch.float64)[None], torch.tensor(w, dtype=torch.float64),
                   torch.tensor(b, dtype=torch.float64), stride=2, padding=1)[0]
    assert body["output_shape"] == [3, 3, 2]
    assert np.array_equal(np.array(body["pre_activation"]), ref.numpy())
    assert np.array_equal(np.array(body["output"]), torch.relu(ref).numpy())
    px = body["pixel"]
    assert (px["row"], px["col"]) == (1, 2)
    for k, d in enumerate(px["filters"]):
        assert d["pre_activation"] == sum(c["partial"] for c in d["channels"]) + b[k] == ref[k, 1, 2].item()


def test_filter_photo_api(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/lecture/filter-photo")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    j = client.get("/api/lecture/filter-photo", params={"filter": "edges", "format": "json"}).json()
    assert j["display"] == "magnitude" and j["lo"] == 0 and j["hi"] > 0 and j["png"].startswith("data:image/png")
    iid = client.post("/api/images", files={"file": ("p.jpg", make_photo(), "image/jpeg")}).json()["id"]
    j = client.get("/api/lecture/filter-photo", params={"image": iid, "filter": "sobel_x", "format": "json"}).json()
    assert (j["width"], j["height"]) == (96, 72) and j["lo"] == -j["hi"]
    r = client.post("/api/lecture/filter-photo", json={"image": iid, "kernel": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    r = client.post("/api/lecture/filter-photo", json={"filter": "blur", "kernel": [[1]], "format": "json"})
    assert r.status_code == 422 and "not both" in r.json()["detail"]
    r = client.get("/api/lecture/filter-photo", params={"filter": "nope", "lang": "es"})
    assert r.status_code == 422 and "No existe el filtro" in r.json()["detail"]
    r = client.get("/api/lecture/filter-photo", params={"image": "0" * 32, "lang": "es"})
    assert r.status_code == 404 and f"No existe la imagen «{'0' * 32}»" in r.json()["detail"]
    assert {f["name"] for f in client.get("/api/lecture/filters").json()} >= {"vertical_edges", "horizontal_edges"}


@pytest.mark.parametrize(("path", "body", "en", "es"), [
    ("/api/lecture/conv2d", {"input": [[1, 2], [3, 4]], "kernel": K}, "does not fit", "no cabe"),
    ("/api/lecture/conv2d", {"input": DECK, "kernel": K, "stride": 0}, "at least 1", "al menos 1"),
    ("/api/lecture/conv2d", {"input": DECK, "kernel": K, "padding": -1}, "0 or more", "0 o más"),
    ("/api/lecture/conv2d", {"input": [[1, 2], [3]], "kernel": K}, "not rectangular", "no es rectangular"),
    ("/api/lecture/conv2d", {"input": [[1] * 65] * 65, "kernel": K}, "at most 64×64", "como máximo 64×64"),
    ("/api/lecture/conv2d", {"input": [[1, "x"]], "kernel": [[1]]}, "should be a number", "debe ser un número"),
    ("/api/lecture/conv2d", {"kernel": [[1]]}, "required", "falta este campo"),
    ("/api/lecture/conv3d", {"input": [[[1]]], "filters": [[[[1]], [[1]]]]}, "as deep as", "misma profundidad"),
    ("/api/lecture/pool", {"input": [[1, 2], [3, 4]], "size": 3}, "does not fit", "no cabe"),
    ("/api/lecture/pool", {"input": POOL, "mode": "median"}, "should be", "debe ser"),
])
def test_invalid_requests_get_clear_translated_422(client, path, body, en, es) -> None:  # type: ignore[no-untyped-def]
    r = client.post(path, json=body)
    assert r.status_code == 422 and en in r.json()["detail"], r.text
    r = client.post(path, params={"lang": "es"}, json=body)
    assert r.status_code == 422 and es in r.json()["detail"], r.text


def test_invalid_get_parameters(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/api/lecture/output-size", params={"n": 3, "f": 5, "lang": "es"})
    assert r.status_code == 422 and "no cabe" in r.json()["detail"]
    r = client.get("/api/lecture/output-size", params={"n": "ten", "f": 3})
    assert r.status_code == 422 and "n: this should be a whole number" in r.json()["detail"]
    r = client.get("/api/lecture/cnn-shapes", params={"n": 28, "f1": 4, "lang": "es"})
    assert r.status_code == 422 and "impar" in r.json()["detail"]
    r = client.get("/api/lecture/fc-params", params={"width": 0, "height": 80})
    assert r.status_code == 422 and "at least 1" in r.json()["detail"]


def test_openapi_documents_the_lecture_api(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    for path in ("/api/lecture/conv2d", "/api/lecture/conv3d", "/api/lecture/pool", "/api/lecture/output-size",
                 "/api/lecture/fc-params", "/api/lecture/cnn-shapes", "/api/lecture/params/lecture-net",
                 "/api/lecture/params/{model}", "/api/lecture/filter-photo"):
        assert path in spec["paths"], path
    for name in ("Conv2dIn", "Conv2dOut", "Conv3dIn", "Conv3dOut", "PoolIn", "PoolOut", "FcParamsOut",
                 "CnnShapesOut", "ParamTableOut", "FilterPhotoIn"):
        assert name in spec["components"]["schemas"], name
    assert not any(p.startswith("/lecture") for p in spec["paths"])


# -- pages -------------------------------------------------------------------------------------------------
PAGES = [
    ("/lecture", ["Convolutional networks", "/lecture/8"]),
    ("/lecture/1", ["19,200·H", "608"]),
    ("/lecture/1?preset=hd", ["2,764,800·H"]),
    ("/lecture/2", ["= 107", "⌊(8 + 2·0 − 3)/1⌋ + 1 = 6"]),
    ("/lecture/2?step=2", ["7·3 + 8·2 + 7·3 + 7·3 + 6·1 + 4·0 + 8·5 + 3·1 + 7·4 = 156"]),
    ("/lecture/2?s=2&step=2", ["= 121", "Output 3×3"]),
    ("/lecture/3", ["/api/lecture/filter-photo?filter=vertical_edges", "−1"]),
    ("/lecture/3?filter=sobel", ["filter=sobel"]),
    ("/lecture/4", ["5×5×3", "3×3×2", "ReLU"]),
    ("/lecture/5", ["max(7, 2, 6, 3) = <strong>7</strong>", "print 6"]),
    ("/lecture/6?n=28&f1=3&f2=5&m=100", ["14×14×3", "98,100"]),
    ("/lecture/7", ["62,958", "48,120", "10,164", "(5·5·3 + 1)·8", "3,216"]),
    ("/lecture/7?model=cifarnet", ["62,958", "stem"]),
    ("/lecture/8", ["/models/lenet/filters", "/models/cifarnet/featvis", "/models/lenet/layers/conv1/examples"]),
]


@pytest.mark.parametrize(("path", "needles"), PAGES)
def test_pages_full_and_htmx(client, path: str, needles: list[str]) -> None:  # type: ignore[no-untyped-def]
    full = client.get(path)
    assert full.status_code == 200 and full.text.startswith("<!doctype html>")
    assert 'class="projector"' in full.text and "/static/js/lecture.js" in full.text
    part = client.get(path, headers=HX)
    assert part.status_code == 200 and "<html" not in part.text
    assert 'id="section"' in part.text and 'hx-swap-oob="true"' in part.text
    assert part.headers["HX-Push-Url"].startswith(path.split("?")[0])
    for needle in needles:
        assert needle in full.text, (path, needle)
        assert needle in part.text, (path, needle)
    assert "style=" not in full.text and "<script>" not in full.text and "hx-on" not in full.text  # CSP


def test_history_restore_gets_the_whole_page(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/lecture/2?step=3", headers={**HX, "HX-History-Restore-Request": "true"})
    assert r.text.startswith("<!doctype html>")


SPANISH = {
    "/lecture": ["Redes convolucionales", "Teclado"],
    "/lecture/1": ["Primera capa totalmente conectada", "19.200·H"],
    "/lecture/2": ["Posición 1 de 36", "salida[0][0]", "= 107"],
    "/lecture/3": ["Bordes verticales", "Salida del filtro"],
    "/lecture/4": ["Entrada, canal R", "un mapa 2D por filtro"],
    "/lecture/5": ["Las diapositivas muestran 6", "máx(7; 2; 6; 3)"],
    "/lecture/6": ["sin parámetros", "filtros"],
    "/lecture/7": ["La red de la clase", "Fórmula", "62.958"],
    "/lecture/8": ["Los filtros de la primera capa", "Visualización de características"],
}


@pytest.mark.parametrize("path", list(SPANISH))
def test_spanish_pages_have_no_untranslated_keys(client, path: str) -> None:  # type: ignore[no-untyped-def]
    for lang, headers in (("es", {}), ("es", HX), ("en", {})):
        r = client.get(path, params={"lang": lang}, headers=headers)
        assert r.status_code == 200
        assert not re.findall(r"\blec\.[a-z0-9_]+\.?[a-z0-9_.]*", r.text), (path, lang)
    es = client.get(path, params={"lang": "es"}).text
    for word in SPANISH[path]:
        assert word in es, (path, word)
    assert '<html lang="es">' in es and 'href="/lecture/1?lang=es"' in es  # the choice stays in the links
    en = client.get(path).text
    assert 'hreflang="es"' in en and "Español" in en


def test_every_message_key_has_english_and_spanish() -> None:
    catalog = i18n.catalog()
    used: set[str] = set()
    for tpl in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["'](lec\.[a-z0-9_.]+[a-z0-9_])["']""", tpl.read_text()))
    assert len(used) > 60
    missing = sorted(k for k in used if k not in catalog)
    assert not missing, missing
    for key, (en, es) in catalog.items():
        if key.startswith("lec."):
            assert en.strip() and es.strip(), key
    # every core error code has both languages, with the same placeholders
    for code in L.MESSAGES:
        en, es = catalog[f"lec.err.{code}"]
        assert en == L.MESSAGES[code], code  # the catalog's English is the core's own template
        assert set(re.findall(r"{(\w+)", en)) == set(re.findall(r"{(\w+)", es)), code


def test_plain_forms_work_without_javascript(client) -> None:  # type: ignore[no-untyped-def]
    # what a browser without JS sends when "Next" is pressed in the form on step 1
    cells = [("x", str(v)) for row in DECK for v in row] + [("k", str(v)) for row in K for v in row]
    q = [("n", "8"), ("f", "3"), ("p", "0"), ("s", "1"), ("xn", "8"), ("kf", "3"), ("step", "1"), ("go", "2")] + cells
    r = client.get("/lecture/2", params=q)
    assert r.status_code == 200 and "= 156" in r.text and "Step 2 of 36" in r.text
    # an edited cell: 2 instead of 1 top left -> 107 + 3
    q2 = [("n", "8"), ("f", "3"), ("xn", "8"), ("kf", "3")] + [("x", "2")] + cells[1:]
    assert "= 110" in client.get("/lecture/2", params=q2).text
    # Spanish decimal comma and a real minus sign are understood
    q3 = [("n", "2"), ("f", "1"), ("xn", "2"), ("kf", "1"), ("x", "1,5"), ("x", "−2"), ("x", "0"), ("x", "0"),
          ("k", "2")]
    assert "= 3" in client.get("/lecture/2", params=q3).text
    r = client.get("/lecture/5", params=[("fill", "random")])
    assert r.status_code == 200
    r = client.get("/lecture/1", params={"preset": "small", "hidden": "5"})
    assert "96,000 + 5 = <strong>96,005</strong>" in r.text


def test_page_errors_are_inline_and_translated(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/lecture/2", params={"n": 2, "f": 5})
    assert r.status_code == 200 and 'role="alert"' in r.text and "does not fit" in r.text
    r = client.get("/lecture/2", params={"n": 2, "f": 5, "lang": "es"})
    assert "no cabe" in r.text
    r = client.get("/lecture/6", params={"f1": 4, "lang": "es"})
    assert "impar" in r.text
    r = client.get("/lecture/2", params={"n": "many", "lang": "es"})
    assert r.status_code == 200 and "no es un número" in r.text
    r = client.get("/lecture/2", params={"n": 99})
    assert "at most 10" in r.text
    r = client.get("/lecture/7", params={"model": "nope", "lang": "es"})
    assert r.status_code == 404 and "No existe el modelo" in r.text
    r = client.get("/lecture/3", params={"image": "0" * 32})
    assert r.status_code == 404


def test_photo_section_uses_an_upload(client) -> None:  # type: ignore[no-untyped-def]
    iid = client.post("/api/images", files={"file": ("cat.jpg", make_photo(seed=4), "image/jpeg")}).json()["id"]
    r = client.get("/lecture/3", params={"image": iid, "filter": "horizontal_edges"})
    assert r.status_code == 200 and f"image={iid}" in r.text and "cat.jpg" in r.text
    r = client.get("/lecture/8", params={"image": iid})
    assert f"/images/{iid}?model=lenet" in r.text

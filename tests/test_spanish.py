"""Spanish a teacher can project: every Spanish page renders with Spanish words and Spanish numbers.

Every page is rendered with ``?lang=es`` and its visible text (plus alt, title and aria-label texts) is
checked for English words (class names included), words the native review corrected, English-format
numbers (``19,200``, ``1.58``) and catalog keys; a few figures are checked where the lecture fixes them
(section 1 ``19.200·H``, section 7 ``62.958``, a percentage ``72,4 %``). Numbers come from one Babel-based
formatter (:mod:`app.i18n.format`); the templates must not format numbers themselves.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import torch
from fastapi.testclient import TestClient
from test_examples_resume import tiny_imagefolder

from app import i18n
from app.config import ROOT, Settings, get_settings
from app.core import nets
from app.core.zoo import Zoo
from app.i18n import format as F
from app.main import create_app
from conftest import make_photo, random_spec

NBSP = "\u00a0"
# English words that must not show on a Spanish page (whole words, any case), CIFAR-10's class names included
ENGLISH = ("the and of with from to is are not this that layer layers channel channels filter filters input output "
           "step steps flatten out home end left top right bottom gallery test train first last rows row image "
           "images upload file photo page error weights mean max min strongest back next previous play pause show "
           "compare download copy link empty pixels loading rendered render objective class classes prediction "
           "predictions activation examples data set seed epoch camera "
           "airplane automobile bird cat deer dog frog horse ship truck").split()
# Spanish wording the native review corrected
CORRECTED = ("excita", "órdenes", "Construcciones", "construcción", "crudos", "Lecturas", "desliz", "en directo",
             "en vivo", "Contando", "sobre volumen", "Parches de color", "Suelta", "Atrás", "anillos", "niveles de gris",
             "en grises", "Similitud coseno", "factor de upsampling", "sin diferencia", "posición más fuerte",
             "Exactitud en test", "Paso 1 de", "falló", "subió desde  en", "Rellenar las matrices", "Ambos bordes",
             "Sobel (intensidad)", "Sobre ", "unos 1 min", "1 números")
# a proper name that is English on purpose (a book's title in the references)
TITLES = ("Deep Learning with Python",)
SKIP_TAGS = {"script", "style", "code", "pre", "template"}
TEXT_ATTRS = ("alt", "title", "aria-label", "placeholder")


class _Visible(HTMLParser):
    """Text a reader sees or hears: data outside <code>/<pre>/scripts/styles, and alt/title/aria-label
    texts (input values and URLs are left out: they are attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIP_TAGS:
            self.skip += 1
        if self.skip:
            return
        for name, value in attrs:
            if name in TEXT_ATTRS and value:
                self.parts.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.parts.append(data.strip())


def visible(html: str) -> str:
    p = _Visible()
    p.feed(html)
    return " ¶ ".join(p.parts)


def english_numbers(text: str) -> list[str]:
    """Numbers written the English way: ``19,200`` (a comma group after a non-zero digit), ``1.58``; a
    Spanish group of thousands (``19.200``, ``2.764.800``, five digits or more) is not one, a grouped
    four-digit number (``1.000``) is (Spanish leaves those whole)."""
    bad = re.findall(r"(?<![\d.,])[1-9]\d{0,2}(?:,\d{3})+(?![\d,])", text)
    bad += re.findall(r"(?<![\d.,])\d\.\d{3}(?![\d.])", text)
    rest = re.sub(r"(?<![\d.,])\d{1,3}(?:\.\d{3})+(?![\d.])",
                  lambda m: " " if len(m.group(0).replace(".", "")) >= 5 else m.group(0), text)
    bad += re.findall(r"\d\.\d", rest)
    return bad


def check_spanish(html: str, where: str, *, identifiers: tuple[str, ...] = ()) -> str:
    """Assert the page's visible text is Spanish; return it. ``identifiers`` (layer and model names) are
    names, not words, and are left out first."""
    text = visible(html)
    for t in TITLES:
        text = text.replace(t, " ")
    # identifiers: dotted names (block1.conv1), file names, paths (/api/images), and the given layer, layer
    # type and model names
    words = re.sub(r"\b[\w-]+(?:\.[A-Za-z_]\w*)+\b|(?<![\w/])/[\w/.{}-]+", " ", text)
    for name in sorted(identifiers, key=len, reverse=True):
        words = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w])", " ", words)
    found = sorted({w for w in ENGLISH if re.search(rf"(?<![\w'-]){w}(?![\w'-])", words, re.IGNORECASE)})
    assert not found, (where, found, _around(words, found[0]))
    wrong = [w for w in CORRECTED if w in text]
    assert not wrong, (where, wrong, _around(text, wrong[0]))
    nums = english_numbers(words)
    assert not nums, (where, nums, _around(words, nums[0]))
    keys = [k for k in i18n.catalog() if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", text)]
    assert not keys, (where, keys)
    return text


def _around(text: str, needle: str) -> str:
    m = re.search(rf"(?i)(?<![\w'-]){re.escape(needle)}", text) or re.search(re.escape(needle), text)
    return text[max(0, m.start() - 80):m.end() + 80] if m else ""


# -- the app: production-like titles, one model with a test accuracy, one with ImageNet's 1000 classes --------
def _imagenet_classes() -> tuple[str, ...]:
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _zoo() -> Zoo:
    lenet = dataclasses.replace(random_spec("lenet", 1), title="LeNet · CIFAR-10", source="convscope",
                                card={"test_accuracy": 0.724})
    cifarnet = dataclasses.replace(random_spec("cifarnet", 2), title="CifarNet · CIFAR-10", source="convscope",
                                   card={"test_accuracy": 0.93})
    classes = _imagenet_classes()

    def load() -> torch.nn.Module:
        torch.manual_seed(3)
        return nets.build("lenet", len(classes))

    imagenet = dataclasses.replace(random_spec("lenet", 3), name="lenet-imagenet", title="LeNet · ImageNet",
                                   source="convscope", categories=classes, load=load, card={})
    return Zoo.load([lenet, cifarnet, imagenet])


@pytest.fixture(scope="module")
def es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A client, a photo and a built examples index (16 labelled images of cats, dogs, frogs and ships)."""
    tmp = tmp_path_factory.mktemp("es")
    data = tiny_imagefolder(tmp / "datos", n=16)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = Settings(data_dir=tmp / "data", models_dir=tmp / "no-models", torchvision_models=[],
                        default_model="cifarnet", dataset_path=str(data), torch_threads=1)
    zoo = _zoo()
    with TestClient(create_app(settings, zoo=zoo)) as c:
        photo = c.post("/api/images", files={"file": ("foto.jpg", make_photo(seed=3), "image/jpeg")}).json()["id"]
        other = c.post("/api/images", files={"file": ("otra.jpg", make_photo(seed=5), "image/jpeg")}).json()["id"]
        job = c.post("/api/indexes", json={"model": "lenet", "dataset": "default", "split": "test"}).json()
        deadline = time.time() + 120
        while c.get(f"/api/indexes/{job['id']}").json()["state"] in ("queued", "running"):
            assert time.time() < deadline
            time.sleep(0.05)
        names = tuple({x for lm in zoo.models.values() for li in lm.layers for x in (li.name, li.type)} | set(zoo.names()))
        yield c, {"photo": photo, "other": other, "job": job["id"], "names": names}  # type: ignore[dict-item]
    torch.set_num_threads(n)


def get_es(c: TestClient, path: str, status: int = 200) -> str:
    r = c.get(path + ("&" if "?" in path else "?") + "lang=es")
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    assert "<html" not in r.text or '<html lang="es">' in r.text, path
    return r.text


LECTURE = ["/lecture", *(f"/lecture/{i}" for i in range(1, 9)), "/lecture/2?step=20&p=1", "/lecture/4?step=5",
           "/lecture/5?mode=avg&step=3", "/lecture/5?fill=random", "/lecture/6?n=300&m=1&f1=5",
           "/lecture/7?model=cifarnet", "/lecture/1?preset=hd&hidden=12345",
           "/lecture/2?n=2&f=1&xn=2&kf=1&x=1,5&x=−2.25&x=0&x=0&k=2", "/lecture/2?n=99", "/lecture/2?n=2&f=5"]


@pytest.mark.parametrize("path", LECTURE)
def test_lecture_pages_are_spanish(es, path: str) -> None:  # type: ignore[no-untyped-def]
    c, _ = es
    check_spanish(get_es(c, path), path)
    part = c.get(path + ("&" if "?" in path else "?") + "lang=es", headers={"HX-Request": "true"})
    check_spanish(part.text, path + " (htmx)")


def test_lecture_figures_in_spanish(es) -> None:  # type: ignore[no-untyped-def]
    c, _ = es
    s1 = visible(get_es(c, "/lecture/1"))
    assert "19.200·H" in s1 and "H = 1000," in s1 and "19.200.000 + 1000" in s1 and "31.581 veces" in s1
    assert "2.764.800·H" in s1
    assert "19.200·H" in s1 and "19,200" not in s1
    s2 = visible(get_es(c, "/lecture/2"))
    assert "Posición 1 de 36" in s2 and "Filtro (kernel)" in s2 and "= 107" in s2
    s3 = visible(get_es(c, "/lecture/3"))
    assert re.search(r"−\d,\d\d", s3) and "Sobel (magnitud)" in s3 and "Bordes (ambas direcciones)" in s3
    s5 = visible(get_es(c, "/lecture/5"))
    assert "máx(7; 2; 6; 3)" in s5 and "errata" in s5 and "promedio" in s5
    s6 = visible(get_es(c, "/lecture/6"))
    assert "aplanado" in s6 and "salida" in s6 and "3 filtros de 3×3" in s6 and "máx. 2×2" in s6
    big = visible(get_es(c, "/lecture/6?n=300&m=1"))
    assert "112.500·1 + 1" in big and "1 neurona" in big and "1 neuronas" not in big
    s7 = visible(get_es(c, "/lecture/7"))
    assert "62.958" in s7 and "48.120" in s7 and "3216" in s7 and "Recuento de parámetros" in s7
    s8 = visible(get_es(c, "/lecture/8"))
    assert "Referencias:" in s8 and "ascenso de gradiente" in s8
    keys = visible(get_es(c, "/lecture"))
    assert "Inicio" in keys and "Fin" in keys and "en tiempo real" in keys
    # English keeps its own formats
    en = c.get("/lecture/1").text
    assert "19,200·H" in en and "H = 1,000," in en
    assert "máx(7, 2, 6, 3)" not in c.get("/lecture/5").text and "max(7, 2, 6, 3)" in c.get("/lecture/5").text


def test_lecture_inputs_take_both_decimal_marks(es) -> None:  # type: ignore[no-untyped-def]
    c, _ = es
    for lang in ("es", "en"):
        for mark in ("1,5", "1.5"):
            q = [("n", "2"), ("f", "1"), ("xn", "2"), ("kf", "1"), ("x", mark), ("x", "0"), ("x", "0"), ("x", "0"),
                 ("k", "2"), ("lang", lang)]
            page = c.get("/lecture/2", params=q).text
            assert "= <strong>3</strong>" in page, (lang, mark)
    page = visible(c.get("/lecture/2", params=[("n", "2"), ("f", "1"), ("xn", "2"), ("kf", "1"), ("x", "1.5"),
                                                ("x", "−2.25"), ("x", "0"), ("x", "0"), ("k", "2"), ("lang", "es")]).text)
    assert "1,5·2" in page and "(−2,25)·2" not in page  # step 1 shows the first cell; its value in Spanish
    html = c.get("/lecture/2", params=[("n", "2"), ("f", "1"), ("xn", "2"), ("kf", "1"), ("x", "1.5"), ("x", "0"),
                                       ("x", "0"), ("x", "0"), ("k", "2"), ("lang", "es")]).text
    assert 'value="1,5"' in html  # the editable cell, as a Spanish teacher would type it


def test_app_pages_are_spanish(es) -> None:  # type: ignore[no-untyped-def]
    c, ids = es
    photo, other, names = ids["photo"], ids["other"], ids["names"]
    pages = ["/", "/models", "/models/lenet", "/models/cifarnet", "/models/cifarnet/filters",
             *(f"/images/{photo}?model={m}" for m in ("lenet", "cifarnet")),
             f"/images/{photo}/layers/conv1?model=lenet", f"/images/{photo}/layers/fc3?model=lenet",
             f"/images/{photo}/layers/conv1/channels/2?model=lenet", f"/images/{photo}/layers/fc3/channels/5?model=lenet",
             f"/images/{photo}/attribution?model=lenet&method=saliency&target=3",
             "/indexes", f"/jobs/{ids['job']}", "/live", "/live?model=lenet",
             f"/compare?a={photo}&b={other}&model_a=lenet&model_b=cifarnet",
             f"/compare/layer?index=0&a={photo}&b={other}&model_a=lenet&model_b=lenet",
             "/models/lenet/timeline", f"/models/lenet/timeline?image={photo}",
             "/models/lenet/featvis", "/models/lenet/featvis?show=classes", "/models/lenet/featvis?layer=conv2",
             "/models/lenet/layers/conv1/channels/1/featvis?steps=4",
             "/models/lenet/layers/conv2/examples", "/models/lenet/layers/conv2/examples?mode=image",
             "/models/lenet/layers/conv2/channels/3", "/models/lenet/layers/fc3/channels/3",
             "/models/lenet/layers/conv2/channels/3/examples", "/models/cifarnet/layers/stem/channels/0",
             "/models/cifarnet/layers/stem/examples"]
    for path in pages:
        check_spanish(get_es(c, path), path, identifiers=names)


def test_spanish_numbers_and_class_names_on_app_pages(es) -> None:  # type: ignore[no-untyped-def]
    c, ids = es
    models = visible(get_es(c, "/models"))
    assert f"72,4{NBSP}%" in models and f"93,0{NBSP}%" in models and "62.958" in models and "1.979.562" in models
    assert "Exactitud (conjunto de prueba)" in models
    en = c.get("/models").text
    assert "72.40 %" in en and "93.00 %" in en and "62,958" in en  # English unchanged
    page = visible(get_es(c, f"/images/{ids['photo']}?model=lenet"))
    assert re.search(rf"\d+,\d{NBSP}%", page)
    spanish = set(F.class_names("es").values())
    assert sum(name in page for name in spanish) >= 5  # the top 5 (and the attribution's class list)
    assert "Los nombres de las clases" not in page  # CIFAR-10's are all translated
    cmp = visible(get_es(c, f"/compare?a={ids['photo']}&b={ids['other']}&model_a=lenet&model_b=cifarnet"))
    assert any(name in cmp for name in spanish) and "Diferencia relativa" in cmp and "Similitud del coseno" in cmp
    tl = visible(get_es(c, f"/models/lenet/timeline?image={ids['photo']}"))
    assert any(name in tl for name in spanish)
    gallery = visible(get_es(c, "/models/lenet/featvis?show=classes"))
    assert all(name in gallery for name in spanish) and "0 de 10 generadas" in gallery
    channel = visible(get_es(c, f"/images/{ids['photo']}/layers/conv1/channels/2?model=lenet"))
    assert re.search(r"\d,\d", channel) and "media " in channel
    ex = visible(get_es(c, "/models/lenet/layers/conv2/channels/3"))
    assert "Entre 16 imágenes de datos (prueba)" in ex and any(n in ex for n in ("gato", "perro", "rana", "barco"))
    ix = visible(get_es(c, "/indexes"))
    assert "prueba" in ix and "entrenamiento" in ix and "Construir el índice" in ix
    assert "Las fotos subidas a este servidor" in ix and "datos (prueba)" in ix


def test_imagenet_class_names_stay_english_with_a_note(es) -> None:  # type: ignore[no-untyped-def]
    c, ids = es
    page = get_es(c, f"/images/{ids['photo']}?model=lenet-imagenet")
    text = visible(page)
    assert "Los nombres de las clases de ImageNet se muestran en inglés" in text
    assert "Los nombres de las clases" not in c.get(f"/images/{ids['photo']}?model=lenet-imagenet").text
    assert re.search(rf"\d+,\d{NBSP}%", text)


def test_spanish_error_pages(es) -> None:  # type: ignore[no-untyped-def]
    c, _ = es
    for path, status, words in [("/images/nope", 404, "No existe la imagen"), ("/nope", 404, "No hay ninguna página"),
                                ("/lecture/7?model=nope", 404, "No existe el modelo")]:
        text = check_spanish(get_es(c, path, status), path)
        assert "Algo no va bien" in text and words in text
    for data, words in [(b"", "El archivo está vacío"), (b"not an image at all", "no es una imagen que podamos leer")]:
        r = c.post("/images?lang=es", files={"file": ("x.jpg", data, "image/jpeg")}, data={"model": "lenet"})
        assert r.status_code in (400, 415, 422), r.text[:300]
        text = check_spanish(r.text, f"upload {data[:8]!r}")
        assert "Algo no va bien" in text and words in text
    en = c.post("/images", files={"file": ("x.jpg", b"", "image/jpeg")}, data={"model": "lenet"}).text
    assert "The file is empty" in en  # English keeps the core's own sentence


def test_featvis_final_value_never_shows_an_empty_start(es) -> None:  # type: ignore[no-untyped-def]
    c, _ = es
    path = "/models/lenet/layers/conv1/channels/2/featvis?steps=4"
    assert c.post(path, follow_redirects=False).status_code == 303  # the render button (GETs never start work)
    deadline = time.time() + 60
    while "Objetivo en la imagen final" not in (page := visible(get_es(c, path))):
        assert time.time() < deadline
        time.sleep(0.1)
    assert "subió desde  en" not in page and not re.search(r"desde\s+en", page)
    assert i18n.translator("es")("fv.final_only", value="0,5") == "Objetivo en la imagen final: 0,5"


# -- the formatter ---------------------------------------------------------------------------------------------
def test_formatter_spanish_and_english() -> None:
    assert [F.integer(n, "es") for n in (999, 1000, 19200, 62958, 2764800)] == ["999", "1000", "19.200", "62.958",
                                                                                "2.764.800"]
    assert [F.integer(n, "en") for n in (1000, 19200)] == ["1,000", "19,200"]
    assert F.integer(31580.6, "es") == "31.581" and F.integer(31580.6, "en") == "31,581"
    assert F.percent(0.724, 2, "es") == f"72,4{NBSP}%" and F.percent(0.93, 1, "es") == f"93,0{NBSP}%"
    assert F.percent(0.724, 2, "en") == "72.40 %" and F.percent(0.93, 1, "en") == "93.0 %"
    assert F.sig(-1.5812, "es") == "−1,58" and F.sig(0.02243, "es") == "0,0224" and F.sig(-1.5812, "en") == "-1.58"
    assert F.number(12345.6, "es") == "12.346" and F.number(12345.6, "en") == "12346"
    assert F.figure(-2.25, "es") == "−2,25" and F.figure(4.0, "es") == "4" and F.figure(-2.25, "en") == "−2.25"
    assert F.term(-2, "es") == "(−2)" and F.fixed(93.0, 1, "es") == "93,0" and F.fixed(19200.0, 0, "es") == "19.200"
    assert F.numlist(["7", "2", "6", "3"], "es") == "7; 2; 6; 3" and F.numlist(["7", "2"], "en") == "7, 2"
    assert F.plural(1, "es") == "one" and F.plural(2, "es") == "other" and F.plural(1_000_000, "es") == "many"
    assert F.class_name("cat", "es") == "gato" and F.class_name("cat", "en") == "cat"
    assert F.class_name("tabby", "es") == "tabby" and F.classes_note(["tabby"], "es")
    assert not F.classes_note(["cat", "dog"], "es") and not F.classes_note(["tabby"], "en")


def test_plural_forms_in_catalog_texts() -> None:
    _ = i18n.translator("es")
    assert _("lec.s6.fc", m=F.count(1, "es")) == "totalmente conectada, 1 neurona"
    assert _("lec.s6.fc", m=F.count(12000, "es")) == "totalmente conectada, 12.000 neuronas"
    assert i18n.translator("en")("lec.s6.fc", m=F.count(12000, "en")) == "fully connected, 12000 neurons"
    err = _("lec.err.ragged", name="entrada", row=2, got=1, expected=2)
    assert "la fila 2 tiene 1 valor y la fila 1, 2" in err
    assert "tiene 3 valores" in _("lec.err.ragged", name="entrada", row=2, got=3, expected=2)


def test_spanish_region_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().locale_es == "es_ES"
    monkeypatch.setenv("CONVSCOPE_LOCALE_ES", "es_MX")
    get_settings.cache_clear()
    F.locale_of.cache_clear()
    try:
        assert F.integer(19200, "es") == "19,200" and F.sig(1.58, "es") == "1.58"
    finally:
        monkeypatch.delenv("CONVSCOPE_LOCALE_ES")
        get_settings.cache_clear()
        F.locale_of.cache_clear()
    assert F.integer(19200, "es") == "19.200"


# -- no number formats of their own in templates and page modules ----------------------------------------------
# '{:,}'.format(n), "{:,.0f}".format(x), '%.1f'|format(x); a <meter>'s value attribute is a machine number
TEMPLATE_FORMATS = re.compile(r"""['"]\{:[^}]*\}['"]\s*\.\s*format|['"]%[-+ 0#]*\d*(?:\.\d+)?[dfgeFGE]['"]\s*\|\s*format""")
PY_FORMATS = re.compile(r"""\{[^{}'"]*:[,.]\d*[,fge]?\}|%\.\d+[fge]""")


def test_templates_do_not_format_numbers_themselves() -> None:
    bad = []
    for tpl in (ROOT / "templates").rglob("*.html"):
        for i, line in enumerate(tpl.read_text(encoding="utf-8").splitlines(), 1):
            for m in TEMPLATE_FORMATS.finditer(line):
                if line[:m.start()].endswith('<meter min="0" max="1" value="{{ '):
                    continue
                bad.append(f"{tpl.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert not bad, bad


def test_page_modules_write_numbers_through_the_formatter() -> None:
    """HTML routes (pages.py) and what they draw (draw.py) leave numbers to app.i18n.format."""
    bad = []
    for p in list((ROOT / "app" / "features").rglob("pages.py")) + list((ROOT / "app" / "features").rglob("draw.py")):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if PY_FORMATS.search(line) and not line.lstrip().startswith("#"):
                bad.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, bad


def test_glossary_terms_are_on_the_pages() -> None:
    glossary = (ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    for term in ("filtro o kernel", "relleno (padding)", "paso (stride)", "mapa de activación", "ascenso de gradiente",
                 "Convolución en volumen", "Recuento de parámetros", "promedio", "en tiempo real", "línea de comandos",
                 "escala de grises", "ampliación (upsampling)"):
        assert term in glossary, term
    spanish = " ".join(es for _, es in i18n.catalog().values())
    for term in ("Filtro (kernel)", "relleno (padding)", "paso (stride)", "Mapa de activación", "ascenso de gradiente",
                 "Convolución en volumen", "Recuento de parámetros", "promedio", "en tiempo real", "línea de comandos",
                 "escala de grises", "ampliación (upsampling)"):
        assert term in spanish, term


def test_spanish_texts_use_only_the_values_they_are_given() -> None:
    """A Spanish text may leave a value out (``ds.option``), never ask for one the English is not given."""
    for key, (en, es_text) in i18n.catalog().items():
        assert set(re.findall(r"{(\w+)", es_text)) <= set(re.findall(r"{(\w+)", en)), key

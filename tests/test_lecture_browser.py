"""Lecture mode in a real browser (Playwright + Debian chromium) at a projector's 1280×720:
keyboard navigation, stepping the convolution, language switch, type size, no JS errors, and one
screenshot per section in shots/lecture-<n>.png."""

from __future__ import annotations

import re

import pytest

from app.config import ROOT

pytestmark = pytest.mark.browser
SHOTS = ROOT / "shots"


def _font_px(page) -> float:  # type: ignore[no-untyped-def]
    return float(page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)"))


def _ready(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_load_state("load")
    page.wait_for_function("() => document.fonts.status === 'loaded'")


def test_keyboard_tour_of_all_sections(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1280, "height": 720})
    SHOTS.mkdir(exist_ok=True)
    page.goto(f"{live_server}/lecture")
    _ready(page)
    for n in range(1, 9):
        page.keyboard.press("ArrowRight")
        page.wait_for_url(re.compile(rf"/lecture/{n}$"))
        _ready(page)
        assert page.locator("h1 .num").inner_text() == str(n)
        assert _font_px(page) >= 28
        over = page.evaluate("[document.documentElement.scrollWidth - innerWidth, "
                             "document.documentElement.scrollHeight - innerHeight]")
        assert over[0] <= 0 and over[1] <= 0, f"section {n} does not fit 1280×720: {over}"
        page.screenshot(path=str(SHOTS / f"lecture-{n}.png"))
    page.keyboard.press("ArrowRight")  # the last section stays put
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(re.compile(r"/lecture/7$"))
    page.keyboard.press("3")
    page.wait_for_url(re.compile(r"/lecture/3$"))
    page.keyboard.press("8")
    page.wait_for_url(re.compile(r"/lecture/8$"))
    page.keyboard.press("0")
    page.wait_for_url(re.compile(r"/lecture$"))
    assert page.js_errors == []


def test_stepping_the_convolution_with_keys(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/lecture/2")
    _ready(page)
    expr = page.locator("p.expr")
    assert expr.inner_text().endswith("= 107")
    page.keyboard.press("n")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 156')")
    assert "Step 2 of 36" in page.locator(".stepper .count").inner_text()
    assert page.locator("table.output td.cur").inner_text() == "156"
    assert re.search(r"[?&]step=2\b", page.url)  # the state is in the URL
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 121')")
    page.keyboard.press("p")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 156')")
    page.keyboard.press("Home")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 107')")
    # space plays: the steps advance on their own, space again pauses
    page.keyboard.press(" ")
    page.wait_for_function("() => document.querySelector('.stepper .count').textContent.includes('3 of 36')",
                           timeout=8000)
    page.keyboard.press(" ")
    assert page.locator('[data-action="play"]').get_attribute("aria-pressed") == "false"
    # stride 2: the second cell is 121 (edit S, the page recomputes through htmx)
    page.fill("#in-s", "2")
    page.press("#in-s", "Tab")
    page.wait_for_function("() => document.querySelector('table.output').rows.length === 3")
    page.keyboard.press("Home")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 107')")
    page.keyboard.press("n")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 121')")
    # editing a cell recomputes: 2 instead of 1 in the corner adds 3 to the first cell
    page.keyboard.press("Home")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 107')")
    page.fill("#x-0-0", "2")
    page.press("#x-0-0", "Tab")
    page.wait_for_function("() => document.querySelector('p.expr').textContent.trim().endsWith('= 110')")
    assert page.js_errors == []


def test_language_switch_help_and_fullscreen(live_server, page) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/lecture/5")
    _ready(page)
    assert "Pooling and upsampling" in page.locator("h1").inner_text()
    page.keyboard.press("l")
    page.wait_for_url(re.compile(r"lang=es"))
    _ready(page)
    assert "Pooling y ampliación (upsampling)" in page.locator("h1").inner_text()
    assert "Las diapositivas muestran 6" in page.locator("p.note").inner_text()
    assert page.evaluate("document.documentElement.lang") == "es"
    page.keyboard.press("ArrowRight")  # the language is kept while moving on
    page.wait_for_url(re.compile(r"/lecture/6\?lang=es$"))
    _ready(page)
    assert "Una CNN de principio a fin" in page.locator("h1").inner_text()
    page.screenshot(path=str(SHOTS / "lecture-6-es.png"))
    page.keyboard.press("?")
    assert page.locator("#keys-dialog").evaluate("d => d.open")
    assert "Teclado" in page.locator("#keys-dialog h2").inner_text()
    page.keyboard.press("Escape")
    assert not page.locator("#keys-dialog").evaluate("d => d.open")
    assert page.locator('[data-action="fullscreen"]').is_visible()
    page.click("text=English")
    page.wait_for_url(lambda url: "/lecture/6" in url and "lang=es" not in url)
    assert "A CNN from end to end" in page.locator("h1").inner_text()
    assert page.js_errors == []

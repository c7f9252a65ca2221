"""In a real browser (Playwright + Debian chromium): the console stays free of errors (CSP included) across a
walk that moves between lecture pages and steps with the keyboard, and on the photo page with the overview
and a unit's arithmetic; screenshots in shots/overview-<model>.png and shots/arithmetic-<model>.png."""

from __future__ import annotations

import re

import pytest

from app.config import ROOT
from tests.conftest import make_photo

pytestmark = pytest.mark.browser
SHOTS = ROOT / "shots"


def test_lecture_walk_in_spanish_with_the_keyboard_logs_no_error(live_server, page) -> None:  # type: ignore[no-untyped-def]
    failed: list[tuple[int, str]] = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/lecture/1?lang=es")
    page.wait_for_load_state("load")
    page.goto(f"{live_server}/lecture/2?lang=es")
    page.wait_for_load_state("load")
    for _ in range(2):
        page.keyboard.press("ArrowDown")
        page.wait_for_load_state("networkidle")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(re.compile(r"/lecture/3"))
    page.wait_for_load_state("networkidle")
    page.keyboard.press("ArrowDown")
    page.wait_for_load_state("networkidle")
    assert page.js_errors == [], failed


@pytest.mark.parametrize("model", ["cifarnet"])
def test_photo_page_overview_and_arithmetic(live_server, page, model: str) -> None:  # type: ignore[no-untyped-def]
    import httpx

    SHOTS.mkdir(exist_ok=True)
    iid = httpx.post(f"{live_server}/api/images", files={"file": ("p.jpg", make_photo(seed=9), "image/jpeg")}).json()["id"]
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{live_server}/images/{iid}?model={model}&lang=es")
    page.wait_for_selector("#overview .ov-node")
    page.wait_for_load_state("networkidle")
    page.locator("#overview").screenshot(path=str(SHOTS / f"overview-{model}.png"))
    first = page.locator("#overview .ov-node a").first
    first.focus()
    assert page.evaluate("document.activeElement.closest('.ov-node') !== null")
    page.goto(f"{live_server}/images/{iid}/layers/stem/channels/3?model={model}&lang=es")
    cell = page.locator("table.values td a").first
    cell.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#arith-slot .arith")
    page.wait_for_load_state("networkidle")
    assert "Antes de la activación" in page.locator("#arith-slot").inner_text()
    page.locator("#arith-slot").screenshot(path=str(SHOTS / f"arithmetic-{model}.png"))
    assert page.js_errors == []

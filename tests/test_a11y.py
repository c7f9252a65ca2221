"""Automated accessibility check (axe-core, vendored test-only under tests/vendor/) in a real browser,
plus keyboard use of the main pages. No `serious` or `critical` violations are allowed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import make_photo

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@pytest.fixture
def a11y_page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    # bypass_csp only lets the test inject axe (an inline script); the app's own scripts are all files.
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    pg = ctx.new_page()
    yield pg
    ctx.close()


def axe_violations(page) -> list[dict]:  # type: ignore[no-untyped-def]
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(content=AXE.read_text())
    res = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in res if v["impact"] in ("serious", "critical")]


@pytest.fixture(scope="module")
def photo_id(live_server: str) -> str:
    r = httpx.post(f"{live_server}/api/images", files={"file": ("cat.jpg", make_photo(seed=11), "image/jpeg")})
    return str(r.json()["id"])


def test_axe_pages(a11y_page, live_server: str, photo_id: str) -> None:  # type: ignore[no-untyped-def]
    page = a11y_page
    report = {}
    for path in ["/", f"/images/{photo_id}?model=cifarnet", "/lecture", "/live",
                 f"/compare?image={photo_id}&model_a=lenet&model_b=cifarnet", f"/models/lenet/timeline?image={photo_id}",
                 "/models/cifarnet", "/models/lenet/featvis", "/models/lenet/featvis?show=classes&lang=es"]:
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
        report[path] = axe_violations(page)
    # an analysis page with a layer opened (htmx partial loaded)
    page.goto(f"{live_server}/images/{photo_id}?model=cifarnet")
    page.locator("details.layer summary").first.click()
    page.wait_for_selector("details.layer .tiles img")
    page.locator(".tiles a.tile").first.click()
    page.wait_for_selector("#channel-view")
    report["layer opened"] = axe_violations(page)
    bad = {k: v for k, v in report.items() if v}
    assert not bad, bad


def test_keyboard_and_text_alternatives(a11y_page, live_server: str, photo_id: str) -> None:  # type: ignore[no-untyped-def]
    page = a11y_page
    page.goto(f"{live_server}/images/{photo_id}?model=cifarnet")
    # the skip link is the first stop and moves focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    # a layer opens from the keyboard (summary + Enter) and its tiles are links with alt text and values
    summary = page.locator("details.layer summary").first
    summary.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("details.layer .tiles img")
    alts = page.locator("details.layer .tiles img").evaluate_all("els => els.map(e => e.alt)")
    assert alts and all("…" in a for a in alts)
    assert page.locator(".legend .colorbar").first.is_visible()  # the colormap legend is shown
    # every image on the page has a text alternative
    missing = page.locator("img:not([alt])").count()
    assert missing == 0
    # the delete form and copy-link button are reachable buttons
    assert page.locator("form.delete button").is_enabled()
    assert page.locator("button[data-copy-link]").first.is_visible()

"""A real browser builds a gallery examples index from the build page and browses the examples."""

from __future__ import annotations

import httpx
import pytest

from conftest import make_photo

pytestmark = pytest.mark.browser


def test_build_page_then_permalink_and_tabs(live_server: str, page) -> None:
    for seed in (21, 22, 23):
        r = httpx.post(f"{live_server}/api/images", files={"file": (f"e{seed}.jpg", make_photo(seed=seed), "image/jpeg")})
        assert r.status_code in (200, 201)
    page.goto(f"{live_server}/indexes")
    page.select_option("#ix-model", "lenet")
    page.select_option("#ix-dataset", "gallery")
    page.click("form.build button[type=submit]")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector('section.job[data-state="done"]', timeout=60_000)  # htmx polls every second
    page.goto(f"{live_server}/models/lenet/layers/conv2/channels/3?dataset=gallery")
    page.wait_for_selector("section.examples[data-mode='crop'] .example-grid img")
    page.wait_for_function("() => [...document.querySelectorAll('.example-grid img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("section.examples[data-mode='image'] .example-grid li").count() >= 3
    # the partial with its tabs: htmx swaps the section in place
    page.goto(f"{live_server}/models/lenet/layers/conv2/channels/3/examples?dataset=gallery")
    page.click("section.examples nav.tabs a >> nth=1")
    page.wait_for_selector("section.examples[data-mode='image']")
    assert page.url.endswith("dataset=gallery")  # swapped, not navigated
    page.goto(f"{live_server}/models/lenet/layers/conv1/examples?dataset=gallery")
    page.wait_for_function("() => [...document.querySelectorAll('.overview-grid img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".overview-grid li").count() == 8
    assert page.js_errors == []  # no CSP violations, no script errors

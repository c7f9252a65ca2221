"""A real browser (Debian chromium via Playwright) uploads a photo and sees the analysis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.config import ROOT
from conftest import make_photo

pytestmark = pytest.mark.browser
SHOTS = ROOT / "shots"


def upload(page, live_server: str, photo: Path, data: bytes, model: str) -> None:  # type: ignore[no-untyped-def]
    """Upload ``data`` through the home page's file picker with ``model`` chosen; waits for the analysis."""
    photo.write_bytes(data)
    page.goto(f"{live_server}/?model={model}")
    page.set_input_files("#file-input", str(photo))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/images/**")


def test_upload_shows_predictions_activations_and_filters(live_server: str, page, tmp_path: Path):
    upload(page, live_server, tmp_path / "street.jpg", make_photo(320, 240, seed=11), "lenet")
    bars = page.locator(".bars li")
    assert bars.count() == 5
    assert page.locator("tfoot .total").inner_text() == "62,958"
    # filters: htmx swaps the partial in; the grid image is decoded by the browser
    page.wait_for_selector("#filters .filters-view img.filters")
    assert page.eval_on_selector("#filters img.filters", "img => img.complete && img.naturalWidth > 0")
    # open a layer: htmx loads its grid lazily
    page.click("details[data-layer='conv1'] > summary")
    page.wait_for_selector("details[data-layer='conv1'] .tiles a.tile")
    assert page.locator("details[data-layer='conv1'] a.tile").count() == 8
    assert page.eval_on_selector("details[data-layer='conv1'] a.tile img",
                                 "img => img.complete && img.naturalWidth === 28")
    # click a channel: it enlarges with its values
    page.click("details[data-layer='conv1'] a.tile >> nth=2")
    page.wait_for_selector("details[data-layer='conv1'] .channel-detail section.channel")
    assert "channel 2" in page.locator("details[data-layer='conv1'] .channel-detail h3").inner_text()
    assert page.locator("details[data-layer='conv1'] table.values td").count() == 28 * 28
    # switch to the rgb / per-channel filter view
    page.click("#filters .tabs a >> nth=1")
    page.wait_for_selector("#filters .tabs a[aria-current]:has-text('Per input channel')")
    # an attribution map: its "computing" note shows only while the request runs
    assert not page.is_visible("#attr-busy")
    page.select_option("#attr-method", "occlusion")
    page.click(".attribution button[type=submit]")
    page.wait_for_selector("#attribution img.attr-img")
    deadline = time.time() + 30
    while not page.eval_on_selector("#attribution img.attr-img", "img => img.complete && img.naturalWidth > 0"):
        assert time.time() < deadline, "the attribution picture did not load"
        time.sleep(0.05)
    assert not page.is_visible("#attr-busy") and page.is_enabled(".attribution button[type=submit]")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "analysis-lenet.png"), full_page=True)
    assert page.js_errors == []


def test_feature_visualization_finishes_in_place_under_the_analysis(live_server: str, page, tmp_path: Path):
    """A channel's view starts its feature visualization (a POST as it opens: GETs never start work); when
    the job ends, its picture appears there and the browser stays on the photo's analysis."""
    upload(page, live_server, tmp_path / "fv.jpg", make_photo(96, 96, seed=21), "lenet")
    analysis_url = page.url
    page.click("details[data-layer='conv1'] > summary")
    page.click("details[data-layer='conv1'] a.tile >> nth=5")
    slot = "details[data-layer='conv1'] .featvis-slot"
    page.wait_for_selector(f"{slot} .job progress, {slot} figure img.featvis-img", timeout=30_000)
    page.wait_for_selector(f"{slot} section.featvis figure img.featvis-img", timeout=120_000)
    assert page.url == analysis_url
    assert page.locator(f"{slot} section.featvis").count() == 1  # replaced, not nested
    assert page.locator(f"{slot} .job").count() == 0
    assert page.eval_on_selector(f"{slot} figure img.featvis-img", "img => img.complete && img.naturalWidth > 0")
    assert page.locator("details[data-layer='conv1'] .channel-detail h3").inner_text().startswith("conv1")
    assert page.js_errors == []


def test_gallery_renders_a_layer_with_progress(live_server: str, page):
    """The feature-visualization gallery's button renders a layer's missing pictures in the
    background; its progress shows, and the gallery reloads with every picture when it ends."""
    page.goto(f"{live_server}/models/lenet/featvis?layer=conv1")
    assert page.locator("#fv-gallery .pending").count() > 0
    page.click("#fv-job button[type=submit]")
    page.wait_for_selector("#fv-job .job")
    page.wait_for_selector("#fv-gallery:not(:has(.pending))", timeout=120_000)
    assert page.url.endswith("/models/lenet/featvis?layer=conv1")
    assert "8 of 8 rendered" in page.locator("#fv-gallery p").first.inner_text()
    deadline = time.time() + 30
    while not page.eval_on_selector_all("#fv-gallery img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.time() < deadline, "the pictures did not load"
        time.sleep(0.05)
    assert page.js_errors == []


def test_drag_and_drop_upload(live_server: str, page):
    page.goto(f"{live_server}/")
    data = list(make_photo(64, 64, seed=4))
    page.evaluate("""(bytes) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'}));
        const zone = document.getElementById('drop-zone');
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", data)
    page.wait_for_url("**/images/**")
    assert page.locator(".bars li").count() == 5
    assert page.js_errors == []


def test_api_reference_at_docs_works_offline(live_server: str, page):
    """/docs is Swagger UI from vendored files: every request stays on this server (no CDN; a
    classroom is offline) and nothing breaks the Content-Security-Policy; an operation runs."""
    elsewhere: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith(live_server) else None)
    page.goto(f"{live_server}/docs")
    page.wait_for_selector(".opblock")
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
    for p in ("/api/models", "/api/images", "/api/images/{image_id}/activations/{layer}", "/healthz"):
        assert p in paths
    page.locator(".opblock-summary-path[data-path='/api/models']").first.click()
    page.locator("button.try-out__btn").first.click()
    page.locator("button.execute").first.click()
    page.wait_for_selector(".live-responses-table .response .response-col_status")
    assert page.locator(".live-responses-table .response .response-col_status").first.inner_text().strip() == "200"
    assert "lenet" in page.locator(".live-responses-table .response .response-col_description").first.inner_text()
    assert elsewhere == [] and page.js_errors == []

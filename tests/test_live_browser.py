"""The live page in a real browser with a fake camera (a generated Y4M video)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import BROWSER_ARGS, CHROMIUM


def write_y4m(path: Path, w: int = 320, h: int = 240, n: int = 30, fps: int = 15) -> None:
    """A Y4M (YUV4MPEG2, 4:2:0) video: a bright disc moving over a changing background."""
    y, x = np.mgrid[0:h, 0:w]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            t = i / n * 2 * np.pi
            lum = 60 + 50 * np.sin(x / 19.0 + 3 * t) + 40 * np.cos(y / 13.0 - t)
            disc = (x - w / 2 - 90 * np.cos(t)) ** 2 + (y - h / 2 - 60 * np.sin(t)) ** 2 < 45 ** 2
            lum[disc] = 235
            u = np.full((h // 2, w // 2), 128 + 100 * np.sin(t), dtype=np.float64)
            v = np.full((h // 2, w // 2), 128 + 100 * np.cos(2 * t), dtype=np.float64)
            f.write(b"FRAME\n")
            for plane in (lum, u, v):
                f.write(np.clip(plane, 0, 255).astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory: pytest.TempPathFactory, playwright_instance: object) -> Iterator[object]:
    video = tmp_path_factory.mktemp("cam") / "cam.y4m"
    write_y4m(video)
    b = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=[  # type: ignore[attr-defined]
        *BROWSER_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}"])
    yield b
    b.close()


def _frames(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("body", "data-live-frames") or 0)


def _until(page, cond, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll from Python (the page's CSP forbids the string evaluation that wait_for_function uses)."""
    import time

    end = time.time() + timeout_s
    while not cond():
        if time.time() > end:
            raise AssertionError("timed out")
        page.wait_for_timeout(100)


def test_live_updates_and_freeze(camera_browser, live_server: str) -> None:  # type: ignore[no-untyped-def]
    ctx = camera_browser.new_context(viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    ctx.grant_permissions(["camera"], origin=live_server)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{live_server}/live?model=cifarnet")
        page.click("#live-start")
        _until(page, lambda: _frames(page) >= 3)
        first = _frames(page)
        grid1 = page.get_attribute("#live-grid", "src")
        _until(page, lambda: _frames(page) >= first + 5)
        assert page.get_attribute("#live-grid", "src") != grid1  # the grid follows the camera
        assert page.text_content("#live-fps") not in ("–", "")
        assert page.text_content("#live-latency").endswith("ms")
        assert page.text_content("#live-predictions .label")
        assert "channels" in (page.get_attribute("#live-grid", "alt") or "")
        assert page.locator("#live-top-body tr").count() > 0
        # another layer, chosen live, without reloading
        page.select_option("#live-layer", "block1.conv1")
        _until(page, lambda: page.text_content("#live-layer-name") == "block1.conv1")
        # pause: the frame freezes and becomes a normal upload
        page.click("#live-pause")
        link = page.wait_for_selector("#live-frozen-link", timeout=15000)
        href = link.get_attribute("href") or ""
        assert href.startswith("/images/")
        n = page.get_attribute("body", "data-live-frames")
        page.wait_for_timeout(400)
        assert page.get_attribute("body", "data-live-frames") == n  # paused: no more frames
        page.goto(live_server + href)
        assert page.locator("h1").first.is_visible()
        assert errors == [], errors
    finally:
        ctx.close()

"""Live camera transport (/ws/live): results, latest-frame-wins, freeze -> upload, errors."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient

from app.core.decode import decode_image
from app.features.live.service import LiveConfig, process_frame
from conftest import make_photo


def _recv(ws, kind: str, limit: int = 20) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(limit):
        m = json.loads(ws.receive_text())
        if m["type"] == kind:
            return m
    raise AssertionError(f"no {kind} message")


def test_process_frame_predicts_and_draws(zoo) -> None:  # type: ignore[no-untyped-def]
    lm = zoo.get("cifarnet")
    r = process_frame(LiveConfig(lm, lm.first_conv), decode_image(make_photo(320, 240, seed=4), max_pixels=10**7,
                                                                  max_side=4000))
    assert r["width"] == 320 and r["height"] == 240
    assert len(r["predictions"]) == 5 and abs(sum(p["probability"] for p in r["predictions"])) <= 1.0001
    assert str(r["grid"]).startswith("data:image/png;base64,")
    assert r["top_channels"] and r["shape"][0] == lm.layer(lm.first_conv).channels


def test_socket_result_config_and_freeze(client: TestClient) -> None:
    with client.websocket_connect("/ws/live?model=lenet&layer=conv2") as ws:
        cfg = _recv(ws, "config")
        assert cfg["model"] == "lenet" and cfg["layer"] == "conv2" and any(li["name"] == "conv1" for li in cfg["layers"])
        ws.send_bytes(make_photo(320, 240, seed=1))
        r = _recv(ws, "result")
        assert r["seq"] == 1 and r["layer"] == "conv2" and r["predictions"][0]["label"]
        ws.send_text(json.dumps({"type": "config", "layer": "conv1"}))
        assert _recv(ws, "config")["layer"] == "conv1"
        ws.send_bytes(make_photo(320, 240, seed=2))
        r2 = _recv(ws, "result")
        assert r2["seq"] == 2 and r2["layer"] == "conv1"
        ws.send_text(json.dumps({"type": "freeze"}))
        fr = _recv(ws, "frozen")
    # the frozen frame is a normal upload, with every view
    assert client.get(f"/api/images/{fr['id']}").status_code == 200
    page = client.get(fr["url"])
    assert page.status_code == 200 and fr["id"] in page.text
    assert client.get(fr["layer_url"]).status_code == 200


def test_latest_frame_wins(client: TestClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """While one frame is processed, older pending frames are replaced by newer ones, not queued."""
    import app.features.live.socket as live

    started = threading.Event()

    def slow(cfg, data):  # type: ignore[no-untyped-def]
        started.set()
        time.sleep(0.3)
        return process_frame(cfg, data)

    monkeypatch.setattr(live, "process_frame", slow)
    frames = [make_photo(64, 48, seed=i) for i in range(6)]
    with client.websocket_connect("/ws/live?model=lenet") as ws:
        _recv(ws, "config")
        ws.send_bytes(frames[0])
        assert started.wait(5)
        for f in frames[1:]:
            ws.send_bytes(f)
        seqs = []
        while not seqs or seqs[-1] != 6:
            r = _recv(ws, "result")
            seqs.append(r["seq"])
    assert seqs[0] == 1 and seqs[-1] == 6
    assert len(seqs) < 6, seqs  # stale frames were skipped
    assert r["dropped"] == 6 - len(seqs)


def test_socket_errors(client: TestClient) -> None:
    with client.websocket_connect("/ws/live?model=nope") as ws:
        m = json.loads(ws.receive_text())
        assert m["type"] == "error" and m["code"] == "unknown_model"
    with client.websocket_connect("/ws/live") as ws:
        _recv(ws, "config")
        ws.send_text(json.dumps({"type": "freeze"}))
        assert _recv(ws, "error")["code"] == "no_frame"
        ws.send_bytes(b"not an image")
        e = _recv(ws, "error")
        assert e["code"] == "not_an_image" and e["seq"] == 1
        ws.send_text("{bad json")
        assert _recv(ws, "error")["code"] == "bad_message"
        ws.send_text(json.dumps({"type": "config", "layer": "nope"}))
        assert _recv(ws, "error")["code"] == "unknown_layer"
        ws.send_bytes(make_photo(64, 48))  # still usable after errors
        assert _recv(ws, "result")["seq"] == 2


def test_live_page(client: TestClient) -> None:
    r = client.get("/live?model=lenet&layer=conv2")
    assert r.status_code == 200
    assert 'src="/static/js/live.js"' in r.text and 'value="conv2" selected' in r.text
    assert "<script>" not in r.text and "style=" not in r.text
    assert client.get("/live?layer=nope").status_code == 404


def test_frames_are_checked_before_a_slot_and_sockets_are_capped(client: TestClient) -> None:
    """A hostile frame is refused by the decode budget (not the model), and one client may hold only a few
    live views open at once."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from hostile_files import rle_bmp

    with client.websocket_connect("/ws/live?model=lenet") as ws:
        _recv(ws, "config")
        ws.send_bytes(rle_bmp(2000, 2000))
        err = _recv(ws, "error")
        assert err["code"] in ("too_costly", "too_many_pixels") and err["seq"] == 1
        ws.send_bytes(make_photo(64, 48, seed=1))
        assert _recv(ws, "result")["seq"] == 2  # the socket keeps serving
    per = client.app.state.services.live_sockets.per_client  # type: ignore[attr-defined]
    from contextlib import ExitStack

    with ExitStack() as stack:
        socks = [stack.enter_context(client.websocket_connect("/ws/live?model=lenet")) for _ in range(per)]
        for s in socks:
            _recv(s, "config")
        with client.websocket_connect("/ws/live?model=lenet") as extra:
            assert _recv(extra, "error")["code"] == "too_many_sockets"

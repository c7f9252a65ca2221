"""Who may talk to the server: the Host allowlist, cross-site writes and WebSockets refused, slow clients
timed out (headers and bodies), photos and results cached privately, /readyz off the event loop."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import serve
from starlette.websockets import WebSocketDisconnect

from app.config import Settings
from app.core.zoo import Zoo
from app.http.security import default_hosts
from app.main import create_app
from conftest import _free_port, make_photo


def test_unknown_host_is_refused_and_local_names_answer(settings: Settings, zoo: Zoo) -> None:
    s = settings.model_copy(update={"allowed_hosts": ["localhost", "127.0.0.1"]})
    with TestClient(create_app(s, zoo=zoo), base_url="http://localhost") as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/healthz", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and r.json()["code"] == "host_not_allowed"
        assert "CONVSCOPE_ALLOWED_HOSTS" in r.json()["detail"]
        assert c.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert {"localhost", "127.0.0.1", "::1"} <= set(default_hosts("127.0.0.1"))
    assert socket.gethostname() in default_hosts("0.0.0.0")


def test_cross_site_writes_are_refused_same_site_and_programs_pass(client: TestClient) -> None:
    photo = {"file": ("a.jpg", make_photo(), "image/jpeg")}
    r = client.post("/api/images", files=photo, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "cross_site"
    r = client.post("/images", files=photo, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post("/api/images", files=photo, headers={"Referer": "http://evil.example/page"})
    assert r.status_code == 403
    iid = client.post("/api/images", files=photo, headers={"Origin": "http://testserver",
                                                           "Sec-Fetch-Site": "same-origin"}).json()["id"]
    assert client.post("/api/images", files=photo).status_code in (200, 201)  # curl, scripts: no browser headers
    r = client.post(f"/images/{iid}/delete", headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert r.status_code == 403 and client.get(f"/api/images/{iid}").status_code == 200  # nothing deleted
    assert client.get("/", headers={"Origin": "http://evil.example"}).status_code == 200  # reads are not writes


def test_cross_site_websocket_is_closed(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws/live", headers={"Origin": "http://evil.example"}) as ws:
            ws.receive_json()
    with client.websocket_connect("/ws/live", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "config"


def test_photos_and_results_are_cached_privately(client: TestClient) -> None:
    iid = client.post("/api/images", files={"file": ("a.jpg", make_photo(), "image/jpeg")}).json()["id"]
    for url in (f"/api/images/{iid}/file", f"/api/images/{iid}/attribution?model=lenet&method=saliency&format=png"):
        cc = client.get(url).headers.get("cache-control", "")
        assert "public" not in cc and "immutable" not in cc, (url, cc)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real server (``convscope serve``) with short timeouts."""
    tmp = tmp_path_factory.mktemp("served")
    port = _free_port()
    proc = serve(tmp, port, models=(), header_timeout_s="1", body_timeout_s="1", keepalive_timeout_s="1",
                 decoder_processes="0")
    url = f"http://127.0.0.1:{port}"
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_or_idle_clients_are_cut_off(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    idle = socket.create_connection(("127.0.0.1", port))  # never sends a request
    slow_headers = socket.create_connection(("127.0.0.1", port))
    slow_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # headers never end
    assert _closed_within(idle, 4) and _closed_within(slow_headers, 4)
    slow_body = socket.create_connection(("127.0.0.1", port))
    slow_body.sendall(b"POST /api/images HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; "
                      b"boundary=zz\r\nContent-Length: 100000\r\n\r\n--zz\r\n")
    slow_body.settimeout(5)
    reply = slow_body.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert httpx.get(served + "/healthz").status_code == 200  # the server keeps serving


def test_readyz_does_not_block_the_event_loop(served: str) -> None:
    r = httpx.get(served + "/readyz")  # no model in this server: not ready, but the store answers
    assert r.json()["store_writable"] is True and r.json()["models"] == []


def test_sigterm_stops_the_server_within_seconds_and_cancels_its_jobs(tmp_path: Path) -> None:
    port = _free_port()
    proc = serve(tmp_path, port, decoder_processes="1")
    url = f"http://127.0.0.1:{port}"
    job = httpx.post(url + "/api/models/lenet/layers/conv2/channels/0/featvis", params={"steps": 2000}).json()["job"]
    deadline = time.time() + 30
    while httpx.get(url + job["url"]).json()["state"] != "running":
        assert time.time() < deadline
        time.sleep(0.1)
    held = socket.create_connection(("127.0.0.1", port))  # an open keep-alive connection does not hold it up
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    t0 = time.time()
    proc.terminate()
    proc.wait(timeout=15)
    assert time.time() - t0 < 10  # the 2000-step render was cancelled, not waited for


def test_connections_past_the_cap_get_503(tmp_path: Path) -> None:
    port = _free_port()
    proc = serve(tmp_path, port, models=(), max_connections="4", header_timeout_s="30")
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        time.sleep(0.3)
        r = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert r.status_code == 503
        for s in idle:
            s.close()
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)

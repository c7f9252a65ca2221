"""Hostile uploads and parameters: each gets a clear 4xx, nothing is stored, the server keeps serving."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.core.zoo import Zoo
from app.main import create_app
from conftest import make_photo


def enc(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    return buf.getvalue()


def huge_gif_header() -> bytes:
    """A GIF that declares 65535x65535 pixels in a few bytes."""
    data = bytearray(enc(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = (65535).to_bytes(2, "little") * 2
    # the image descriptor's size too
    i = data.index(b"\x2c")
    data[i + 5:i + 9] = (65535).to_bytes(2, "little") * 2
    return bytes(data)


def huge_webp_header() -> bytes:
    data = bytearray(enc(Image.new("RGB", (16, 16), (1, 2, 3)), "WEBP", lossless=True))
    i = data.index(b"VP8L")
    bits = int.from_bytes(data[i + 9:i + 13], "little")
    bits = (bits & ~((1 << 28) - 1)) | (16383 << 14) | 16383  # width-1 and height-1 fields: 16384x16384
    data[i + 9:i + 13] = bits.to_bytes(4, "little")
    return bytes(data)


REJECTED = [
    ("zero-byte", b"", "image/jpeg", "x.jpg", 400, "empty"),
    ("text as jpg", b"just some text\n" * 20, "image/jpeg", "x.jpg", 415, "not_an_image"),
    ("html as png", b"<!doctype html><script>alert(1)</script>", "image/png", "x.png", 415, "not_an_image"),
    ("pdf as jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "image/jpeg", "x.jpg", 415, "not_an_image"),
    ("svg", b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "image/svg+xml", "x.svg", 415,
     "not_an_image"),
    ("zip as png", zip_bytes(), "image/png", "x.png", 415, "not_an_image"),
    ("truncated jpeg", make_photo(300, 300)[:1500], "image/jpeg", "x.jpg", 400, "truncated"),
    ("truncated png", make_photo(300, 300, fmt="PNG")[:3000], "image/png", "x.png", 400, "truncated"),
    ("png bomb", enc(Image.new("1", (30000, 30000)), "PNG"), "image/png", "b.png", 413, "too_many_pixels"),
    ("gif huge declared", huge_gif_header(), "image/gif", "b.gif", 413, "too_many_pixels"),
    ("webp huge declared", huge_webp_header(), "image/webp", "b.webp", 413, "too_many_pixels"),
    ("tiff", enc(Image.new("RGB", (8, 8)), "TIFF"), "image/tiff", "x.tif", 415, "unsupported_format"),
]


@pytest.mark.parametrize("name,data,ctype,fname,status,code", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_uploads(client: TestClient, name, data, ctype, fname, status, code):
    r = client.post("/api/images", files={"file": (fname, data, ctype)})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and len(body["detail"]) > 20
    assert client.get("/api/images").json() == [], "nothing may be stored"
    assert client.get("/healthz").status_code == 200


def _frames(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 250, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    return buf.getvalue()


ACCEPTED = [
    ("animated gif: first frame", _frames("GIF"), (16, 16), (250, 0, 0)),
    ("animated webp: first frame", _frames("WEBP"), (16, 16), (250, 0, 0)),
    ("cmyk jpeg", enc(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"), (8, 8), (255, 255, 255)),
    ("16-bit grey png", enc(Image.fromarray(np.full((6, 6), 65535, np.uint16)), "PNG"), (6, 6), (255, 255, 255)),
    ("palette + transparency", enc(Image.new("P", (5, 5), 0), "PNG", transparency=0), (5, 5), (255, 255, 255)),
    ("LA", enc(Image.new("LA", (5, 5), (0, 0)), "PNG"), (5, 5), (255, 255, 255)),
    ("RGBA half", enc(Image.new("RGBA", (5, 5), (0, 0, 0, 128)), "PNG"), (5, 5), (127, 127, 127)),
    ("1-bit", enc(Image.new("1", (7, 3), 1), "PNG"), (7, 3), (255, 255, 255)),
    ("1x1", enc(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (1, 1), (9, 9, 9)),
    ("10000x1", enc(Image.new("RGB", (10000, 1), (0, 0, 200)), "PNG"), (1024, 1), (0, 0, 200)),
    ("polyglot jpeg+zip", enc(Image.new("RGB", (8, 8), (0, 200, 0)), "JPEG", quality=100) + zip_bytes(), (8, 8),
     (0, 200, 0)),
]


@pytest.mark.parametrize("name,data,size,pixel", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_odd_images_are_normalised(client: TestClient, name, data, size, pixel):
    r = client.post("/api/images", files={"file": ("odd.img", data, "application/octet-stream")})
    assert r.status_code == 201, r.text
    iid = r.json()["id"]
    stored = client.get(f"/api/images/{iid}/file").content
    assert not stored.endswith(zip_bytes()), "trailing data never reaches the store"
    img = Image.open(io.BytesIO(stored))
    assert img.format == "PNG" and img.mode == "RGB" and img.size == size
    got = np.asarray(img)[0, 0].astype(int)
    assert np.abs(got - pixel).max() <= 3, got
    for model in ("lenet", "cifarnet"):
        assert client.get(f"/api/images/{iid}/predictions", params={"model": model}).status_code == 200


def test_exif_rotated_photo_is_stored_upright(client: TestClient):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW to display: the blue left half goes to the bottom
    exif[0x010F] = "SecretCam"
    r = client.post("/api/images", files={"file": ("r.jpg", enc(img, "JPEG", exif=exif, quality=95), "image/jpeg")})
    meta = r.json()
    assert (meta["width"], meta["height"]) == (20, 40)
    stored = Image.open(io.BytesIO(client.get(meta["url"]).content))
    assert np.asarray(stored)[38, 10][2] > 200
    assert not stored.getexif(), "metadata is stripped before storage"


def test_oversized_upload_rejected_before_it_is_read(settings: Settings, zoo: Zoo):
    small = settings.model_copy(update={"max_upload_bytes": 100_000})
    with TestClient(create_app(small, zoo=zoo)) as c:
        r = c.post("/api/images", files={"file": ("big.jpg", b"x" * 1_000_000, "image/jpeg")})
        assert r.status_code == 413 and "MB" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200


def test_chunked_oversized_upload_is_cut_off_while_streaming(settings: Settings, zoo: Zoo):
    """No Content-Length: the server counts while it reads and answers 413 long before the end."""
    import socket
    import threading
    import time

    import uvicorn

    from conftest import _free_port

    small = settings.model_copy(update={"max_upload_bytes": 100_000})
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(small, zoo=zoo), host="127.0.0.1", port=port,
                                           log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.02)
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/images HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=zzz\r\n\r\n")
            head = (b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
                    b"Content-Type: image/jpeg\r\n\r\n")
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            chunk = b"x" * 65536
            try:
                for _ in range(800):  # up to 50 MB
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
            except OSError:
                pass  # the server closed the connection after answering
            sock.settimeout(10)
            reply = b""
            try:
                while b"\r\n\r\n" not in reply:
                    part = sock.recv(65536)
                    if not part:
                        break
                    reply += part
            except OSError:
                pass
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
        assert sent < 40 * 2**20, "the server stopped reading soon after the limit"
    finally:
        server.should_exit = True
        t.join(10)


def test_many_files_in_one_request(client: TestClient):
    files = [("file", (f"{i}.jpg", make_photo(seed=i), "image/jpeg")) for i in range(3)]
    r = client.post("/api/images", files=files)
    assert r.status_code == 400 and "one photo per request" in r.json()["detail"]
    assert client.get("/api/images").json() == []


def test_malformed_multipart(client: TestClient):
    r = client.post("/api/images", content=b"--zzz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
                    headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert 400 <= r.status_code < 500
    r = client.post("/api/images", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_path_like_and_html_filenames_are_escaped_and_never_paths(client: TestClient, settings: Settings):
    name = "../../etc/<img src=x onerror=alert(1)>.jpg"
    r = client.post("/api/images", files={"file": (name, make_photo(), "image/jpeg")})
    assert r.status_code == 201
    fname = r.json()["filename"]
    assert "/" not in fname and ".." not in fname.split("<")[0]
    page = client.get("/")
    assert "<img src=x onerror" not in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text
    img_page = client.get(f"/images/{r.json()['id']}")
    assert "<img src=x onerror" not in img_page.text
    stored = [p.name for p in (settings.data_dir / "blobs").rglob("*")]
    assert not any("etc" in p or "<" in p for p in stored)


@pytest.mark.parametrize("path,params", [
    ("/api/images/{id}/predictions", {"k": -1}),
    ("/api/images/{id}/predictions", {"k": 10**12}),
    ("/api/images/{id}/predictions", {"k": "abc"}),
    ("/api/images/{id}/activations/stem", {"channel": -5}),
    ("/api/images/{id}/activations/stem", {"channel": 10**9}),
    ("/api/images/{id}/activations/stem", {"format": "exe"}),
    ("/api/images/{id}/activations/stem", {"channel": 99}),
    ("/api/images/{id}/activations/..%2F..%2Fetc", {}),
    ("/api/images/{id}/predictions", {"model": "../../models/lenet"}),
    ("/api/images/{id}/predictions", {"model": "x" * 5000}),
    ("/api/models/cifarnet/filters", {"layer": "block1", "format": "json"}),
    ("/api/models/cifarnet/filters", {"view": "3d"}),
    ("/api/images", {"limit": 0}),
    ("/api/images", {"offset": -1}),
    ("/api/images/..%2F..%2Fetc%2Fpasswd", {}),
    ("/images/{id}/layers/stem/channels/-1", {}),
    ("/images/{id}/layers/stem/channels/9999", {}),
])
def test_bad_parameters_get_4xx(client: TestClient, path, params):
    iid = client.post("/api/images", files={"file": ("a.jpg", make_photo(), "image/jpeg")}).json()["id"]
    r = client.get(path.format(id=iid), params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert client.get("/healthz").status_code == 200


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_returns_to_baseline_after_bombs(client: TestClient):
    bomb = enc(Image.new("1", (30000, 30000)), "PNG")
    bad = make_photo(600, 600)[:5000]
    for _ in range(3):
        client.post("/api/images", files={"file": ("b.png", bomb, "image/png")})
    base = _rss_mb()
    for _ in range(30):
        assert client.post("/api/images", files={"file": ("b.png", bomb, "image/png")}).status_code == 413
        assert client.post("/api/images", files={"file": ("t.jpg", bad, "image/jpeg")}).status_code == 400
    assert _rss_mb() - base < 50


def test_security_headers_on_pages_and_api(client: TestClient):
    for url in ("/", "/api/models", "/docs", "/nope"):
        h = client.get(url).headers
        assert "script-src 'self'" in h["content-security-policy"] and "frame-ancestors 'none'" in h[
            "content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "same-origin"
    assert "access-control-allow-origin" not in client.get("/api/models", headers={"Origin": "http://x"}).headers


def test_cors_and_rate_limit_settings(settings: Settings, zoo: Zoo):
    s = settings.model_copy(update={"cors_origins": ["http://class.example"], "upload_rate_per_minute": 2})
    with TestClient(create_app(s, zoo=zoo)) as c:
        r = c.get("/api/models", headers={"Origin": "http://class.example"})
        assert r.headers["access-control-allow-origin"] == "http://class.example"
        codes = [c.post("/api/images", files={"file": ("a.jpg", make_photo(seed=i), "image/jpeg")}).status_code
                 for i in range(3)]
        assert codes[:2] == [201, 201] and codes[2] == 429
        r = c.post("/api/images", files={"file": ("a.jpg", make_photo(seed=9), "image/jpeg")})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1

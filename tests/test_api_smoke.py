"""First end-to-end checks of the JSON face."""

from __future__ import annotations

from conftest import make_photo


def test_upload_predict_activations(client):
    r = client.post("/api/images", files={"file": ("p.jpg", make_photo(), "image/jpeg")})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["width"] == 96 and body["height"] == 72 and len(body["sha256"]) == 64
    iid = body["id"]
    r = client.get(f"/api/images/{iid}/predictions", params={"model": "lenet"})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 5 and abs(sum(p["probability"] for p in preds)) <= 1.0 + 1e-6
    r = client.get(f"/api/images/{iid}/activations/conv1", params={"model": "lenet"})
    assert r.status_code == 200 and r.json()["shape"] == [8, 28, 28]

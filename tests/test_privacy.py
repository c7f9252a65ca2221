"""Privacy: EXIF/GPS never stored, delete from the page and the API, retention cleanup (task and CLI)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import ExifTags, Image

from app.config import Settings
from app.features.privacy.service import cleanup_engine, cleanup_store, expired
from app.main import create_app
from app.store.database import Store
from conftest import make_photo


def gps_jpeg() -> bytes:
    img = Image.open(io.BytesIO(make_photo(120, 90, seed=7)))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.Base.Model] = "X-1"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 3.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=90)
    return buf.getvalue()


def _blobs(root: Path) -> list[Path]:
    return [p for p in (root / "blobs").rglob("*") if p.is_file()]


def test_gps_exif_is_stripped(client: TestClient, settings: Settings) -> None:
    data = gps_jpeg()
    src = Image.open(io.BytesIO(data)).getexif()
    assert src.get_ifd(ExifTags.IFD.GPSInfo) and src[ExifTags.Base.Make] == "SpyCam"  # the test file carries GPS
    r = client.post("/api/images", files={"file": ("gps.jpg", data, "image/jpeg")})
    assert r.status_code == 201
    img_id = r.json()["id"]
    stored = client.get(f"/api/images/{img_id}/file").content
    for raw in [stored] + [p.read_bytes() for p in _blobs(settings.data_dir) if p.suffix == ".png"]:
        im = Image.open(io.BytesIO(raw))
        assert im.format == "PNG"
        assert len(im.getexif()) == 0 and not im.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert "exif" not in im.info and not any(k.lower().startswith(("xml", "icc")) for k in im.info)
        assert b"SpyCam" not in raw and b"Exif" not in raw
    # the export carries the same clean photo
    z = client.get(f"/api/images/{img_id}/export.zip?model=lenet&limit=1").content
    assert b"SpyCam" not in z


def test_delete_button_and_api_remove_everything(client: TestClient, settings: Settings) -> None:
    ids = [client.post("/api/images", files={"file": (f"{i}.jpg", make_photo(seed=20 + i), "image/jpeg")}).json()["id"]
           for i in range(2)]
    for i in ids:  # derived results: cached grids, analyses, predictions
        assert client.get(f"/api/images/{i}/activations/conv1?model=lenet&format=png").status_code == 200
        assert client.get(f"/api/images/{i}/predictions?model=cifarnet").status_code == 200
    store = client.app.state.services.engine.store  # type: ignore[attr-defined]
    page = client.get(f"/images/{ids[0]}?model=lenet").text
    assert f'action="/images/{ids[0]}/delete"' in page and 'method="post"' in page
    r = client.post(f"/images/{ids[0]}/delete", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.get(f"/api/images/{ids[0]}").status_code == 404
    assert client.get(f"/images/{ids[0]}").status_code == 404
    assert _cache_rows(store, ids[0]) == 0 and _cache_rows(store, ids[1]) > 0
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    assert not any(k[1] == ids[0] for k in engine._probs)
    assert client.delete(f"/api/images/{ids[1]}").status_code == 204
    assert _cache_rows(store, ids[1]) == 0 and store.count_images() == 0
    assert not [p for p in _blobs(settings.data_dir) if "images" in p.parts or "cache" in p.parts]
    assert client.post(f"/images/{ids[0]}/delete", follow_redirects=False).status_code == 404


def _cache_rows(store: Store, image_id: str) -> int:
    with store._lock:
        return int(store.db.query("SELECT COUNT(*) FROM cache WHERE image_id=?", (image_id,))[0][0])


def _age(store: Store, image_id: str, hours: float) -> None:
    with store._lock:
        store.db.execute("UPDATE images SET created=? WHERE id=?", (time.time() - hours * 3600, image_id))


def test_retention_deletes_old_uploads_only(client: TestClient) -> None:
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    ids = [client.post("/api/images", files={"file": (f"{i}.jpg", make_photo(seed=30 + i), "image/jpeg")}).json()["id"]
           for i in range(3)]
    for i in ids:
        client.get(f"/api/images/{i}/activations/conv1?model=lenet&format=png")
    _age(engine.store, ids[0], 30)
    _age(engine.store, ids[1], 25)
    _age(engine.store, ids[2], 23)
    assert cleanup_engine(engine, 0) == []  # 0 = keep forever
    assert sorted(cleanup_engine(engine, 24)) == sorted(ids[:2])
    assert client.get(f"/api/images/{ids[2]}").status_code == 200
    assert _cache_rows(engine.store, ids[2]) > 0
    assert all(_cache_rows(engine.store, i) == 0 for i in ids[:2])
    assert client.get(f"/api/images/{ids[0]}/predictions").status_code == 404
    assert cleanup_engine(engine, 24) == []


def test_retention_task_runs_at_startup(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=[],
                 default_model="cifarnet", retention_hours=1)
    with TestClient(create_app(s.model_copy(update={"retention_hours": 0}), zoo=zoo)) as c:
        old = c.post("/api/images", files={"file": ("o.jpg", make_photo(seed=40), "image/jpeg")}).json()["id"]
        new = c.post("/api/images", files={"file": ("n.jpg", make_photo(seed=41), "image/jpeg")}).json()["id"]
        _age(c.app.state.services.engine.store, old, 2)  # type: ignore[attr-defined]
    with TestClient(create_app(s, zoo=zoo)) as c:
        deadline = time.time() + 10
        while c.get(f"/api/images/{old}").status_code != 404:
            assert time.time() < deadline, "the retention task did not run"
            time.sleep(0.05)
        assert c.get(f"/api/images/{new}").status_code == 200


def test_cleanup_cli(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from app.cli.main import main

    data = tmp_path / "data"
    store = Store(data)
    recs = []
    for i in range(2):
        sha = f"{i + 1:x}" * 64
        rec, _ = store.put_image(sha256=sha, png=make_photo(fmt="PNG", seed=i), width=96, height=72,
                                 original_size=(96, 72), fmt="PNG", filename=f"{i}.png")
        store.cache_put(f"k{i}", b"derived", image_id=rec.id)
        recs.append(rec)
    _age(store, recs[0].id, 50)
    assert [r.id for r in expired(store, 48)] == [recs[0].id]
    store.close()
    monkeypatch.setenv("CONVSCOPE_DATA_DIR", str(data))
    monkeypatch.setenv("CONVSCOPE_RETENTION_HOURS", "48")
    assert main(["cleanup", "--dry-run"]) == 0
    assert "would delete 1" in capsys.readouterr().out
    assert main(["cleanup"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1" in out and recs[0].id in out
    store = Store(data)
    assert store.get_image(recs[0].id) is None and store.get_image(recs[1].id) is not None
    assert store.cache_get("k0") is None and store.cache_get("k1") == b"derived"
    assert cleanup_store(store, 0) == []
    store.close()
    monkeypatch.setenv("CONVSCOPE_RETENTION_HOURS", "0")
    assert main(["cleanup"]) == 0 and "keep forever" in capsys.readouterr().out


def test_an_upload_deleted_by_another_process_is_a_404_not_a_500(client: TestClient, settings: Settings) -> None:
    """The server answers recent image records from memory; `convscope cleanup` (another process)
    may delete one meanwhile: the next request about it says it is gone, and the server keeps serving."""
    r = client.post("/api/images", files={"file": ("a.jpg", make_photo(seed=31), "image/jpeg")})
    i = r.json()["id"]
    assert client.get(f"/api/images/{i}").status_code == 200  # the record is now remembered
    other = Store(settings.data_dir)  # a second connection, as the cleanup CLI opens
    assert other.delete_image(i)
    other.close()
    client.app.state.services.engine.forget(i)  # type: ignore[attr-defined]  # (the picture it kept from the upload)
    r = client.get(f"/api/images/{i}/predictions?model=lenet")
    assert r.status_code == 404 and i in r.json()["detail"]
    assert client.get(f"/api/images/{i}").status_code == 404
    r = client.post("/api/images", files={"file": ("b.jpg", make_photo(seed=32), "image/jpeg")})
    assert r.status_code == 201

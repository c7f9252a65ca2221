"""Live webcam: the page /live and its WebSocket /ws/live.

Transport: one WebSocket per viewer. The browser sends each camera frame as one binary message
(JPEG bytes); the server answers each processed frame with one JSON text message (predictions,
the chosen layer's grid as a PNG data URI, the strongest channels, the frame's sequence number).
Frames are numbered by arrival order on the connection, so no header is needed. Text messages
configure (``{"type": "config", "model", "layer", "snapshot"}``) or freeze
(``{"type": "freeze"}``: the last processed frame becomes a normal upload).

Latest frame wins: a reader task keeps only the newest unprocessed frame of the connection (an
older one still waiting is dropped and counted), a worker processes it when the previous one is
done. Nothing queues, so latency stays one frame's work however slow the model is.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import HTMLResponse
from starlette.websockets import WebSocketDisconnect

from app import i18n
from app.core.errors import NotFoundError
from app.core.imaging import ImageError
from app.gate import Overloaded
from app.live import MAX_FRAME_BYTES, LiveConfig, default_layer, layers_of, process_frame
from app.routes.api import pick_model
from app.services import Engine
from app.snapshots import snapshot_zoo
from app.web import render

pages = APIRouter(include_in_schema=False)

i18n.register({
    "live.title": ("Live camera", "Cámara en directo"),
    "live.lead": ("Point the camera at something: the prediction and the chosen layer's activations follow "
                  "the picture. Pause to freeze a frame; it is then stored like an upload, with every other view.",
                  "Apunta la cámara a algo: la predicción y las activaciones de la capa elegida siguen la "
                  "imagen. Pausa para congelar un fotograma; se guarda como una foto subida, con todas las demás vistas."),
    "live.model": ("Model", "Modelo"),
    "live.layer": ("Layer", "Capa"),
    "live.snapshot": ("Weights", "Pesos"),
    "live.final": ("final (trained)", "finales (entrenados)"),
    "live.start": ("Start camera", "Encender la cámara"),
    "live.pause": ("Pause and freeze", "Pausar y congelar"),
    "live.resume": ("Resume", "Reanudar"),
    "live.apply": ("Apply", "Aplicar"),
    "live.camera": ("Camera", "Cámara"),
    "live.camera_alt": ("The camera picture", "La imagen de la cámara"),
    "live.fps": ("Frames per second", "Fotogramas por segundo"),
    "live.latency": ("Latency (median)", "Latencia (mediana)"),
    "live.frames": ("Frames shown", "Fotogramas mostrados"),
    "live.dropped": ("Dropped (stale)", "Descartados (atrasados)"),
    "live.status": ("Status", "Estado"),
    "live.idle": ("Camera off. Press “Start camera”.", "Cámara apagada. Pulsa «Encender la cámara»."),
    "live.predictions": ("Prediction", "Predicción"),
    "live.grid": ("Activations of the chosen layer", "Activaciones de la capa elegida"),
    "live.grid_alt": ("No frame yet", "Todavía no hay fotograma"),
    "live.top": ("Strongest channels", "Canales más activos"),
    "live.channel": ("Channel", "Canal"),
    "live.max": ("Maximum", "Máximo"),
    "live.mean": ("Mean", "Media"),
    "live.frozen": ("Frozen frame", "Fotograma congelado"),
    "live.open": ("Open this frame in every view", "Abrir este fotograma en todas las vistas"),
    "live.scale": ("Each tile is scaled to its own range: dark is low, yellow is high.",
                   "Cada recuadro tiene su propia escala: oscuro es bajo, amarillo es alto."),
    "live.nojs": ("The live view needs JavaScript and a camera.", "La vista en directo necesita JavaScript y una cámara."),
    "copy.link": ("Copy link", "Copiar enlace"),
    "copy.done": ("Link copied", "Enlace copiado"),
})


@pages.get("/live", response_class=HTMLResponse)
async def live_page(request: Request, model: Annotated[str | None, Query(max_length=64)] = None,
                    layer: Annotated[str | None, Query(max_length=200)] = None,
                    snapshot: Annotated[str | None, Query(max_length=32)] = None) -> HTMLResponse:
    engine: Engine = request.app.state.engine
    zoo = snapshot_zoo(engine)
    base = pick_model(engine, model)
    lm = zoo.variant(base.name, snapshot)
    chosen = layer or default_layer(lm)
    lm.layer(chosen)
    snaps = zoo.snapshots(base.name)
    return render(request, "live.html", {
        "models": list(engine.zoo.models.values()), "model": base, "lm": lm, "layer": chosen,
        "snapshots": snaps, "snapshot": snapshot or "", "layers": lm.layers})


async def _configure(engine: Engine, msg: dict[str, object], current: LiveConfig | None) -> LiveConfig:
    zoo = snapshot_zoo(engine)
    model = msg.get("model") or (current.model.name.split("@")[0] if current else None)
    base = pick_model(engine, str(model) if model else None)
    snap = msg.get("snapshot")
    lm = zoo.variant(base.name, str(snap) if snap else None)
    layer = str(msg.get("layer") or "")
    if not layer or layer not in {li.name for li in lm.layers}:
        layer = default_layer(lm) if not layer else layer
    lm.layer(layer)  # raises with the valid names
    return LiveConfig(lm, layer)


@pages.websocket("/ws/live")
async def live_socket(ws: WebSocket) -> None:
    engine: Engine = ws.app.state.engine
    await ws.accept()
    send_lock = asyncio.Lock()

    async def send(obj: dict[str, object]) -> None:
        async with send_lock:
            await ws.send_text(json.dumps(obj))

    q = ws.query_params
    try:
        cfg = await _configure(engine, {"model": q.get("model"), "layer": q.get("layer"),
                                        "snapshot": q.get("snapshot")}, None)
    except NotFoundError as e:
        await send({"type": "error", "code": f"unknown_{e.kind}", "detail": str(e)})
        await ws.close(code=1008)
        return
    await send({"type": "config", "model": cfg.model.name, "layer": cfg.layer, "layers": layers_of(cfg.model)})

    state: dict[str, object] = {"received": 0, "dropped": 0, "pending": None, "closed": False, "last": None,
                                "processed": 0}
    wake = asyncio.Event()

    async def reader() -> None:
        nonlocal cfg
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is not None:
                    state["received"] = int(state["received"]) + 1  # type: ignore[call-overload]
                    if len(data) > MAX_FRAME_BYTES:
                        await send({"type": "error", "code": "too_large", "seq": state["received"],
                                    "detail": f"frames are limited to {MAX_FRAME_BYTES // 1048576} MB"})
                        continue
                    if state["pending"] is not None:
                        state["dropped"] = int(state["dropped"]) + 1  # type: ignore[call-overload]
                    state["pending"] = (state["received"], data, time.perf_counter())
                    wake.set()
                    continue
                try:
                    m = json.loads(msg.get("text") or "{}")
                except ValueError:
                    await send({"type": "error", "code": "bad_message", "detail": "text messages are JSON objects"})
                    continue
                kind = m.get("type") if isinstance(m, dict) else None
                if kind == "config":
                    try:
                        cfg = await _configure(engine, m, cfg)
                    except NotFoundError as e:
                        await send({"type": "error", "code": f"unknown_{e.kind}", "detail": str(e)})
                        continue
                    await send({"type": "config", "model": cfg.model.name, "layer": cfg.layer,
                                "layers": layers_of(cfg.model)})
                elif kind == "freeze":
                    await _freeze(engine, state, cfg, send)
                elif kind == "ping":
                    await send({"type": "pong", "t": m.get("t")})
                else:
                    await send({"type": "error", "code": "bad_message", "detail": "unknown message type"})
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            state["closed"] = True
            wake.set()

    async def worker() -> None:
        while True:
            await wake.wait()
            wake.clear()
            if state["closed"]:
                return
            item = state["pending"]
            if item is None:
                continue
            state["pending"] = None
            seq, data, t_in = item  # type: ignore[misc]
            current = cfg
            try:
                body = await engine.gate.run(process_frame, current, data)
            except ImageError as e:
                await _safe_send(send, {"type": "error", "code": e.code, "seq": seq, "detail": str(e)})
                continue
            except Overloaded as e:
                await _safe_send(send, {"type": "error", "code": "overloaded", "seq": seq, "detail": str(e)})
                continue
            state["last"] = (data, current)
            state["processed"] = int(state["processed"]) + 1  # type: ignore[call-overload]
            body.update(seq=seq, received=state["received"], dropped=state["dropped"],
                        processed=state["processed"], queue_ms=round((time.perf_counter() - t_in) * 1000, 2))
            if not await _safe_send(send, body):
                return

    rt, wt = asyncio.create_task(reader()), asyncio.create_task(worker())
    try:
        await asyncio.wait({rt, wt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (rt, wt):
            t.cancel()
        for t in (rt, wt):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass


async def _safe_send(send, obj: dict[str, object]) -> bool:  # type: ignore[no-untyped-def]
    try:
        await send(obj)
        return True
    except (WebSocketDisconnect, RuntimeError, OSError):
        return False


async def _freeze(engine: Engine, state: dict[str, object], cfg: LiveConfig, send) -> None:  # type: ignore[no-untyped-def]
    last = state.get("last")
    if last is None:
        await send({"type": "error", "code": "no_frame", "detail": "no frame was processed yet"})
        return
    data, used = last  # type: ignore[misc]
    try:
        up = await engine.upload_gate.run(engine.ingest, data, f"live-{time.strftime('%Y%m%d-%H%M%S')}.jpg")
    except (ImageError, Overloaded) as e:
        await send({"type": "error", "code": "freeze_failed", "detail": str(e)})
        return
    from urllib.parse import urlencode

    q = {"model": used.model.name}
    await send({"type": "frozen", "id": up.record.id, "created": up.created, "model": used.model.name,
                "layer": used.layer, "url": f"/images/{up.record.id}?{urlencode(q)}",
                "layer_url": f"/images/{up.record.id}/layers/{used.layer}?{urlencode(q)}",
                "api": f"/api/images/{up.record.id}"})

"""Live webcam: the WebSocket /ws/live that the page /live (:mod:`app.features.live.pages`) talks to.

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
import functools
import json
import time
from urllib.parse import urlencode

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from app.core.decode import ImageError
from app.core.errors import NotFoundError
from app.deps import EngineDep, ServicesDep
from app.features.analysis.service import Engine
from app.features.live.service import (
    FRAME_DECODE_SIDE,
    MAX_FRAME_BYTES,
    MAX_FRAME_SIDE,
    LiveConfig,
    default_layer,
    layers_of,
    process_frame,
)
from app.runtime.gate import Overloaded

router = APIRouter(include_in_schema=False)


async def _configure(engine: Engine, msg: dict[str, object], current: LiveConfig | None) -> LiveConfig:
    zoo = engine.zoo
    model = msg.get("model") or (current.model.name.split("@")[0] if current else None)
    base = engine.pick(str(model) if model else None)
    snap = msg.get("snapshot")
    lm = zoo.variant(base.name, str(snap) if snap else None)
    layer = str(msg.get("layer") or "")
    if not layer or layer not in {li.name for li in lm.layers}:
        layer = default_layer(lm) if not layer else layer
    lm.layer(layer)  # raises with the valid names
    return LiveConfig(lm, layer)


@router.websocket("/ws/live")
async def live_socket(ws: WebSocket, engine: EngineDep, services: ServicesDep) -> None:
    client = ws.client.host if ws.client else "?"
    if not services.live_sockets.acquire(client):
        await ws.accept()
        await ws.send_text(json.dumps({"type": "error", "code": "too_many_sockets", "detail": (
            f"this client already has {services.live_sockets.per_client} live views open; close one first")}))
        await ws.close(code=1008)
        return
    try:
        await _serve_socket(ws, engine, services.settings.live_max_fps)
    finally:
        services.live_sockets.release(client)


async def _serve_socket(ws: WebSocket, engine: Engine, max_fps: float) -> None:
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
            started = time.perf_counter()
            try:
                # decoded within the decode budget, in the upload slots, before taking an inference slot
                dec = await engine.upload_gate.run(functools.partial(
                    engine.decode, data, max_pixels=MAX_FRAME_SIDE * MAX_FRAME_SIDE, max_side=MAX_FRAME_SIDE,
                    target_side=FRAME_DECODE_SIDE))
                body = await engine.gate.run(process_frame, current, dec)
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
            rest = 1.0 / max_fps - (time.perf_counter() - started)  # at most max_fps frames a second
            if rest > 0:
                await asyncio.sleep(rest)

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
    q = {"model": used.model.name}
    await send({"type": "frozen", "id": up.record.id, "created": up.created, "model": used.model.name,
                "layer": used.layer, "url": f"/images/{up.record.id}?{urlencode(q)}",
                "layer_url": f"/images/{up.record.id}/layers/{used.layer}?{urlencode(q)}",
                "api": f"/api/images/{up.record.id}"})

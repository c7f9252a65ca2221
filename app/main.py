"""create_app(settings): loads the zoo and the store in the lifespan, mounts static, includes routers."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__, compute
from app.blocking import install_executor
from app.config import ROOT, Settings, get_settings
from app.core.errors import NotFoundError
from app.core.imaging import ImageError
from app.core.zoo import Zoo, discover
from app.gate import Overloaded
from app.gcwatch import GcWatch
from app.limits import BodyLimit, SecurityHeaders, UploadRateLimit
from app.services import BadParameterError, Engine
from app.store import Store
from app.web import is_api, render_error

log = logging.getLogger("convscope")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def _release_free_heap() -> None:
    """Hand the heap memory that loading left free back to the system (glibc's malloc_trim).

    Loading and checking the traced passes runs each model on a few batches; with the 32 MB mmap
    threshold of ``convscope serve`` that memory stays in the heap once freed. Measured with the
    three bundled models: 414 -> 350 MB over the interpreter. Elsewhere (musl, macOS) it does nothing."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _freeze_loaded_objects() -> None:
    """Move every object alive after start-up out of the garbage collector's generations (gc.freeze).

    The models, their traced graphs and their metadata are ~450,000 objects that live as long as the
    process; the collector's occasional full collection walks them all while every thread waits for
    the GIL: 160-170 ms with the three bundled models loaded, ~0 ms once frozen. Collecting first
    frees what loading left in reference cycles, which freezing would keep forever."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, zoo: Zoo | None = None) -> FastAPI:
    """Build the application. ``zoo`` may be given (tests); otherwise it is loaded at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One thread (the lead) runs torch on several intra-op threads, the others on one each:
        # a second OpenMP team in the process made every pass ~3x slower (see app.compute).
        compute.setup(settings.torch_threads)
        # The forward passes and encoders run in worker threads that give up the GIL inside each C
        # call and must take it back after: with the default 5 ms switch interval a busy event loop
        # keeps them waiting (a convoy). Measured under the load bench: 393-410 -> 434-477 req/s.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        pool = install_executor(settings.worker_threads)
        the_zoo = zoo or await compute.run_async(  # on the lead: loading checks each traced pass
            lambda: Zoo.load(discover(settings.models_dir, settings.torchvision_models, effnet=settings.serve_efficientnet),
                             strict=[p.name for p in settings.models_dir.iterdir() if (p / "card.json").exists()]
                             if settings.models_dir.is_dir() else []),
            threads=settings.torch_threads)
        store = Store(settings.data_dir)
        app.state.engine = Engine(settings, the_zoo, store)
        _release_free_heap()
        if settings.gc_freeze:
            _freeze_loaded_objects()
        log.info("convscope %s serving %s", __version__, ", ".join(the_zoo.names()))
        try:
            with GcWatch() as app.state.engine.gc_watch:
                yield
        finally:
            await app.state.engine.close()
            store.close()
            sys.setswitchinterval(switch)
            pool.shutdown(wait=False)
            if settings.gc_freeze:
                gc.unfreeze()  # collectable again (a test process starts many apps)

    limits = (f"Uploads: at most {settings.max_upload_bytes:,} bytes, {settings.max_side:,} pixels a side and "
              f"{settings.max_pixels:,} pixels in all; JPEG, PNG, WebP, BMP or GIF (first frame).")
    app = FastAPI(
        title="convscope", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # /docs below: FastAPI's pages load Swagger UI from a CDN
        description="Look inside convolutional neural networks: predictions, every layer's activations, "
                    "first-layer filters. Layers are named by their `named_modules()` path.\n\n" + limits,
    )
    app.state.settings = settings

    app.add_middleware(UploadRateLimit, per_minute=settings.upload_rate_per_minute)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"])

    app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)

    def _err(request: Request, status: int, code: str, message: str, extra: dict[str, object] | None = None,
             headers: dict[str, str] | None = None) -> Response:
        if is_api(request):
            return JSONResponse({"detail": message, "code": code, **(extra or {})}, status_code=status,
                                headers=headers)
        return render_error(request, status, message, headers=headers)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, e: NotFoundError) -> Response:
        return _err(request, 404, f"unknown_{e.kind}", str(e), {"valid": e.valid} if e.valid else None)

    @app.exception_handler(ImageError)
    async def _bad_image(request: Request, e: ImageError) -> Response:
        return _err(request, e.status, e.code, str(e))

    @app.exception_handler(BadParameterError)
    async def _bad_param(request: Request, e: BadParameterError) -> Response:
        return _err(request, 422, "bad_parameter", str(e))

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, e: Overloaded) -> Response:
        return _err(request, 503, "overloaded", str(e), headers={"Retry-After": str(e.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> Response:
        msgs = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or err['loc'][0]}: {err['msg']}"
                         for err in e.errors())
        return _err(request, 422, "invalid_request", f"Invalid request: {msgs}",
                    {"errors": [{"loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        msg = e.detail if isinstance(e.detail, str) else "error"
        if e.status_code == 404 and msg == "Not Found":
            msg = f"No page at {request.url.path}. The API is documented at /docs."
        elif e.status_code == 400 and "parsing the body" in msg:
            msg = ("The request body is not valid multipart/form-data. Send the photo as the form field "
                   "`file` (e.g. curl -F file=@photo.jpg).")
        return _err(request, e.status_code, "http_error", msg, headers=getattr(e, "headers", None))

    def custom_openapi() -> dict[str, object]:
        """The schema, with FastAPI's validation-error body replaced by what the API really sends."""
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["HTTPValidationError"] = {
            "title": "Problem", "type": "object", "required": ["detail", "code"],
            "properties": {"detail": {"type": "string", "description": "what went wrong and what to do"},
                           "code": {"type": "string"},
                           "errors": {"type": "array", "items": {"type": "object"}},
                           "valid": {"type": "array", "items": {"type": "string"}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]

    from app.routes import api, health, pages

    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    from app import routes_ext

    routes_ext.include(app)
    app.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        """The OpenAPI reference (Swagger UI), from vendored files: it works offline and under the CSP."""
        return HTMLResponse(_DOCS_HTML)

    return app


_SWAGGER = "/static/vendor/swagger-ui-5.35.0"
_DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>convscope API · Swagger UI</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{_SWAGGER}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="{_SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/static/js/docs.js"></script>
</body>
</html>
"""

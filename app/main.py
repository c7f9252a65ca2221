"""create_app(settings): middleware, error handlers, static files and the routers of ROUTERS."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from app import __version__
from app.config import Settings, get_settings, package_path
from app.core.zoo import Zoo
from app.errors import add_error_handlers
from app.http.docs import add_docs
from app.http.limits import SECURITY_HEADERS, BodyLimit, SecurityHeaders, UploadRateLimit
from app.http.representation import add_conditional
from app.http.security import HostAllowlist, SameOrigin, default_hosts
from app.http.timeouts import BodyTimeout
from app.lifespan import make_lifespan
from app.routers import ROUTERS
from app.web.assets import FingerprintedStatic


def create_app(settings: Settings | None = None, *, zoo: Zoo | None = None) -> FastAPI:
    """Build the application. ``zoo`` may be given (tests); otherwise the lifespan loads it."""
    settings = settings or get_settings()
    limits = (f"Uploads: at most {settings.max_upload_bytes:,} bytes, {settings.max_side:,} pixels a side and "
              f"{settings.max_pixels:,} pixels in all; JPEG, PNG, WebP, BMP, GIF (first frame), HEIC or AVIF.")
    app = FastAPI(
        title="convscope", version=__version__, lifespan=make_lifespan(settings, zoo),
        docs_url=None, redoc_url=None,  # /docs from app.http.docs: FastAPI's pages load Swagger UI from a CDN
        description="Look inside convolutional neural networks: predictions, every layer's activations, "
                    "first-layer filters. Layers are named by their `named_modules()` path.\n\n" + limits,
    )
    app.state.settings = settings

    # text (pages, CSS, scripts, JSON) compressed for the classroom's wifi; pictures, zips and event streams not
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.add_middleware(UploadRateLimit, per_minute=settings.upload_rate_per_minute)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"])
    app.add_middleware(BodyTimeout, seconds=settings.body_timeout_s)
    app.add_middleware(SameOrigin, trusted_origins=settings.cors_origins)
    app.add_middleware(HostAllowlist, allowed=settings.allowed_hosts or default_hosts("127.0.0.1"))
    app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)
    add_error_handlers(app)
    add_conditional(app)  # ETag, Cache-Control and 304 for deterministic answers (app.http.representation)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", FingerprintedStatic(package_path("static")), name="static")
    add_docs(app)
    return app

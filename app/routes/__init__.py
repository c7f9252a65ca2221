"""Thin FastAPI routers: JSON faces under /api, HTML faces (pages and htmx partials) elsewhere."""

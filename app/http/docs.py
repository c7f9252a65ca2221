"""The OpenAPI schema as the API really answers, and /docs (Swagger UI from vendored files)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse


def add_docs(app: FastAPI) -> None:
    """Replace FastAPI's validation-error body in the schema and serve /docs."""

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
        _edge_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        """The OpenAPI reference (Swagger UI), from vendored files: it works offline and under the CSP."""
        return HTMLResponse(_DOCS_HTML)


def _edge_errors(schema: dict[str, object]) -> None:
    """Every operation's error table gets the answers of the edge (app.http.security, limits), which any
    request can meet before it reaches its route: 400 for a Host this server does not answer to."""
    for ops in schema.get("paths", {}).values():  # type: ignore[union-attr]
        for op in ops.values():
            op["responses"].setdefault("400", {
                "description": "Host not allowed (host_not_allowed) or a malformed request",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})


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

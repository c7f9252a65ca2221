"""The OpenAPI as a contract: every operation documents a response schema for its success status (binary
answers as binary content), an example, and an error table answered with the Problem schema."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

BINARY_TYPES = ("application/x-npy", "application/zip")


def _binary(media_type: str) -> bool:
    return media_type.startswith("image/") or media_type in BINARY_TYPES


@pytest.fixture(scope="module")
def spec(client_module: TestClient) -> dict[str, Any]:
    return client_module.get("/openapi.json").json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def client_module(tmp_path_factory, zoo):  # type: ignore[no-untyped-def]
    from app.config import Settings
    from app.main import create_app

    d = tmp_path_factory.mktemp("contract")
    app = create_app(Settings(data_dir=d / "data", models_dir=d / "none", torchvision_models=[],
                              default_model="cifarnet"), zoo=zoo)
    with TestClient(app) as c:
        yield c


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _has_example(spec: dict[str, Any], media: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = _resolve(spec, media.get("schema", {}))
    if schema.get("type") == "array":
        schema = _resolve(spec, schema.get("items", {}))
    return bool(schema.get("examples") or "example" in schema)


def _operations(spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_every_operation_has_a_success_schema_and_an_example(spec: dict[str, Any]) -> None:
    missing: list[str] = []
    for name, op in _operations(spec):
        ok = {c: r for c, r in op["responses"].items() if c.startswith("2")}
        assert ok, f"{name}: no success status"
        examples = 0
        for code, r in ok.items():
            content = r.get("content", {})
            if code == "204":
                assert not content, f"{name}: a 204 has no body"
                examples += 1
                continue
            assert content, f"{name} {code}: no content"
            for mt, media in content.items():
                schema = media.get("schema")
                if not schema:
                    missing.append(f"{name} {code} {mt}: no schema")
                elif _binary(mt):
                    if schema != {"type": "string", "format": "binary"}:
                        missing.append(f"{name} {code} {mt}: binary content not declared as binary")
                elif mt == "application/json":
                    if _resolve(spec, schema) == {}:
                        missing.append(f"{name} {code}: an empty schema")
                    examples += _has_example(spec, media)
        if not examples and not all(_binary(mt) for r in ok.values() for mt in r.get("content", {})):
            missing.append(f"{name}: no example")
    assert not missing, "\n".join(missing)


def test_every_operation_has_an_error_table_with_problem_bodies(spec: dict[str, Any]) -> None:
    missing: list[str] = []
    for name, op in _operations(spec):
        errors = {c: r for c, r in op["responses"].items() if c[0] in "45"}
        if not errors:
            missing.append(f"{name}: no error responses")
        params = op.get("parameters", [])
        if (params or "requestBody" in op) and "422" not in errors:
            missing.append(f"{name}: takes parameters but documents no 422")
        if any(p["in"] == "path" for p in params) and "404" not in errors:
            missing.append(f"{name}: has path parameters but documents no 404")
        for code, r in errors.items():
            schema = r.get("content", {}).get("application/json", {}).get("schema", {})
            title = _resolve(spec, schema).get("title", "")
            if name != "GET /readyz" and "Problem" not in title:
                missing.append(f"{name} {code}: not a Problem body ({title or 'none'})")
    assert not missing, "\n".join(missing)


def test_problem_schema_is_what_errors_answer(client_module: TestClient, spec: dict[str, Any]) -> None:
    problem = _resolve(spec, {"$ref": "#/components/schemas/Problem"})
    assert {"detail", "code"} <= set(problem["required"])
    body = client_module.get("/api/models/nope").json()
    assert set(body) <= set(problem["properties"]) and body["code"] == "unknown_model"

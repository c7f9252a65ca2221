"""Fuzzing: schemathesis over every operation of the OpenAPI schema; hypothesis over image decoding.

Bounded here (CI); `make fuzz` runs many more examples.
"""

from __future__ import annotations

import io
import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from app.config import Settings
from app.core.decode import ImageError, decode_image
from app.core.zoo import Zoo
from app.main import create_app
from conftest import make_photo

EXAMPLES = int(os.environ.get("CONVSCOPE_FUZZ_EXAMPLES", "15"))
# Conformance, named rather than left to schemathesis's defaults: the status is documented, the
# Content-Type is one the operation declares, the body matches its schema (the Problem schema for errors),
# declared headers are sent, and no 5xx.
CONFORMANCE = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
               checks.response_schema_conformance, checks.response_headers_conformance]


@pytest.fixture
def api_schema(tmp_path, zoo: Zoo):
    s = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "none", torchvision_models=[],
                 default_model="cifarnet")
    app = create_app(s, zoo=zoo)
    with TestClient(app) as c:  # runs the lifespan: the engine exists
        c.post("/api/images", files={"file": ("seed.jpg", make_photo(), "image/jpeg")})
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def _fuzz_operation(op, name: str, tried: dict[str, int]) -> None:
    """Run EXAMPLES generated cases of one operation (schemathesis strategies driven by hypothesis)."""

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        response = case.call()
        assert response.status_code < 500, (name, response.status_code, response.text[:300])
        case.validate_response(response, checks=CONFORMANCE)
        tried[name] = tried.get(name, 0) + 1

    run()


def test_api_never_fails_and_matches_its_schema(api_schema):
    """Every operation of the OpenAPI schema: no 5xx, and every response matches the schema."""
    tried: dict[str, int] = {}
    for result in api_schema.get_all_operations():
        op = result.ok()
        _fuzz_operation(op, f"{op.method.upper()} {op.path}", tried)
    assert len(tried) >= 10 and {"POST /api/images", "GET /api/images/{image_id}/activations/{layer}"} <= set(tried)
    print(f"schemathesis: {sum(tried.values())} cases over {len(tried)} operations, no 5xx")


SEEDS = [make_photo(48, 40, seed=1, fmt=f) for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP")]


@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                   max_size=20),
       cut=st.one_of(st.none(), st.integers(0, 10_000)), junk=st.binary(max_size=64))
@settings(max_examples=EXAMPLES * 20, deadline=None)
def test_mutated_images_never_raise_unhandled(seed, edits, cut, junk):
    data = bytearray(seed)
    for pos, val in edits:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    data += junk
    try:
        d = decode_image(bytes(data), max_pixels=4_000_000, max_side=4000)
    except ImageError as e:
        assert e.status in (400, 413, 415) and str(e)
    else:
        assert d.image.mode == "RGB" and d.image.width * d.image.height <= 4_000_000
        d.image.save(io.BytesIO(), "PNG")



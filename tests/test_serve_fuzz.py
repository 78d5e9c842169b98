"""A bounded property-based fuzz of `her2dlr serve`'s API from its own OpenAPI schema (schemathesis): never a 5xx.

Every operation of the schema gets a few dozen generated requests, valid and invalid by the schema
(odd path parameters, random multipart files and fields); each answer must be below 500, and every
refusal must be the JSON body ``{"detail", "field"}``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

EXAMPLES = 20  # per operation and generation mode


def test_no_generated_request_gets_a_server_error(serve_models: Path):
    from schemathesis.generation import GenerationMode

    from her2dlr.serve import ServeSettings, create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(ServeSettings(serve_models)))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "GET /api/health", "GET /api/models", "GET /api/models/{model}", "POST /api/models/{model}/predict",
        "POST /api/models/{model}/segment", "POST /api/preview", "POST /api/predict/video"}
    seen: dict[str, set[int]] = {}

    def fuzz(op, mode) -> None:
        name = f"{op.method.upper()} {op.path} ({mode.value})"

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call()
            seen.setdefault(name, set()).add(response.status_code)
            assert response.status_code < 500, (name, case.formatted_path, response.status_code, response.text[:300])
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"detail", "field"} and body["detail"], (name, body)

        try:
            check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, name  # an operation without inputs has no invalid request

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op, mode)
    # the fuzz reached the checks, not only the router: refusals of several kinds
    codes = set().union(*seen.values())
    assert 200 in codes and len(codes & {400, 404, 415, 422}) >= 3, seen

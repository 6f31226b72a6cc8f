"""schemathesis against the app's own OpenAPI schema: generated requests (valid and not) to every operation
find no 500 and no response that breaks the schema's status codes (slow: `make test-slow`)."""
from __future__ import annotations

import pytest

from conftest import serve_runs

schemathesis = pytest.importorskip("schemathesis")
pytestmark = pytest.mark.slow

from hypothesis import HealthCheck, settings  # noqa: E402

from ganforge.serve import create_app, load_models  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    runs = serve_runs(tmp_path_factory, ["dcgan", "stylegan2", "pix2pix"])
    return create_app(load_models([f"{k}={v}" for k, v in runs.items()]))


def test_no_request_makes_a_server_error(app):
    """Every operation of the schema, through schemathesis' strategies (pytest-plugin free: it drives hypothesis
    itself, so it runs on any pytest)."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/generate", "/api/translate", "/api/models", "/health"}
    seen = []
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:300])
            if response.status_code >= 400:
                assert isinstance(response.json()["detail"], str)  # every refusal says why, in one string
        check()
    assert any(c == 200 for c in seen) and any(400 <= c < 500 for c in seen)  # it reached both kinds

"""Property-based fuzzing of the API from its own OpenAPI document: no input gives a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from signup.testing.processes import ServiceProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    env = {
        "SIGNUP_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/signup.db",
        "SIGNUP_EXCHANGE": f"test-fuzz-{uuid.uuid4().hex[:8]}",
        "SIGNUP_RATE_LIMIT_PER_IP": "",
        "SIGNUP_RATE_LIMIT_PER_EMAIL": "",
        "SIGNUP_ARGON2_MEMORY_KIB": "1024",
        "SIGNUP_ARGON2_TIME_COST": "1",
    }
    process = ServiceProcess(env, folder / "serve.log").start()
    yield process
    process.stop()
    assert "Traceback" not in process.logs(), process.logs()[-3000:]


def test_no_input_gives_a_server_error(service: ServiceProcess) -> None:
    # Driven through Hypothesis directly: schemathesis' pytest plugin predates pytest 9.
    # The schema is on the operations port; the fuzzing goes to the public one.
    schema = schemathesis.openapi.from_url(f"{service.ops_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/user/signup" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=service.url, timeout=30)
            assert response.status_code < 500, response.text
            if response.status_code >= 400:
                assert response.headers["content-type"][0].startswith("application/problem+json")
                body = response.json()
                assert body["status"] == response.status_code and body["title"] and body["type"]

        no_server_error()

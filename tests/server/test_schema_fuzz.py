"""Schemathesis against the server's OpenAPI document, on a live server: no 500s, and every
response fits the documented schema (status, content type, headers, body). The rounds endpoint is
left out (it writes state files at the paths it is given), and so is the "schema-valid data is
accepted" check: a UFC document can fit the schema and still be refused, with a documented 400 that
names its bad field."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from tests.server.conftest import LiveServer, prepare  # noqa: E402


def test_api_fits_its_schema_and_never_fails(tmp_path):
    location = str(tmp_path / "fuzz.duckdb")
    keys = prepare(location)
    server = LiveServer(location).start()
    headers = {"Authorization": f"Bearer {keys.admin}"}
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json").exclude(path="/api/v1/rounds")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=12,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )
            def check(case):
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            check()
    finally:
        server.kill()

"""Schemathesis over our own /openapi.json: generated requests never get a 5xx."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.backends import backend_changes_sync
from tests.conftest import ADMIN
from tests.live import live_server

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 12


def test_no_server_errors(tmp_path: Path, backend: str) -> None:
    with backend_changes_sync(backend) as changes, live_server(tmp_path / "data", **changes) as (base_url, _settings):
        token = httpx.post(f"{base_url}/auth/login", json=ADMIN).json()["token"]
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        failures: list[str] = []
        statuses: list[int] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def exercise(case: schemathesis.Case) -> None:
                case.query = {**(case.query or {}), "token": token}
                response = case.call(base_url=base_url, timeout=30)
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

            exercise()

    assert failures == []
    # The run really exercised the API: successes and refusals both, many of each.
    assert sum(200 <= s < 300 for s in statuses) > 50
    assert sum(400 <= s < 500 for s in statuses) > 50

"""Schemathesis over the whole OpenAPI schema: generated requests (as an operator) get no
5xx and every response matches the schema, on SQLite and PostgreSQL, with the run's
InfluxDB behind the API. Bounded: a few
derandomized examples per operation."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from api.app import create_app
from tests.api.conftest import World

pytestmark = pytest.mark.integration

EXAMPLES = 4
SKIPPED = {"GET /stream/incidents"}  # never ends; tested in test_stream_reports


def test_every_operation_conforms_to_the_schema(full_world: World) -> None:
    headers = full_world.headers("ops")
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(full_world.ctx))
    seen = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        seen.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            # A well-formed request may still be refused by a rule the schema cannot state
            # (an unknown crew id, a point outside the city): 422 there is correct.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
    assert len(seen) >= 20 and "POST /incidents/{incident_id}/resolve" in seen

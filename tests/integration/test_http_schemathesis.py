"""Schemathesis over the HTTP intake's OpenAPI schema, with a real ingest (broker, spool,
InfluxDB) behind it: generated bodies of every documented content type, for a device
with its token and for generated device ids, get no 5xx and answers the schema states."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok

from ingest.http import HttpIntake
from pantau.city import City, load_city
from pantau.settings import Settings
from tests.integration.test_http_ingest import STATION, Intake, start_intake

pytestmark = pytest.mark.integration

EXAMPLES = 25


@pytest.fixture
def intake(settings: Settings, tmp_path: Path) -> Iterator[Intake]:
    city: City = load_city()
    settings.ingest.http_tokens = tmp_path / "tokens.json"
    settings.ingest.rate_limit_factor = 0  # the budget has its own test; here, the schema
    yield from start_intake(settings, city)


def test_the_intake_conforms_to_its_schema(intake: Intake) -> None:
    http: HttpIntake = intake.http
    token = http.tokens.rotate(STATION)
    schema = schemathesis.openapi.from_asgi("/openapi.json", http.app)
    statuses: set[int] = set()
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            # Half the cases for the device whose token we hold, so bodies reach decoding.
            if zlib.crc32(repr(case.body).encode()) % 2:
                case.path_parameters = {"device": STATION}
            # Generated bodies are mostly refused (400 with reasons): correct for them.
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"},
                excluded_checks=[positive_data_acceptance],
            )
            statuses.add(response.status_code)

        check()
    assert operations == ["POST /ingest/{device}"]
    assert 400 in statuses and 401 in statuses, statuses  # decoding and auth both reached

"""Unit-test fixtures: the real city config, loaded once."""

from __future__ import annotations

import pytest

from pantau.city import City, load_city


@pytest.fixture(scope="session")
def city() -> City:
    return load_city()

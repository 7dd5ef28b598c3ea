"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import pytest

from tests.factories import MeterFactory


@pytest.fixture
def meter_factory() -> type[MeterFactory]:
    return MeterFactory

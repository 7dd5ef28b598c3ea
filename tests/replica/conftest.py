"""Fixtures for the replica router tests: the vending API's and the dashboard's, and a replica alias
switched on (in the ordinary suite it is a TEST mirror of the test database: kplc_sts/settings/test.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kplc_sts.replica import replica_health_reset
from tests.dashboard.conftest import campaign, manager  # noqa: F401
from tests.vending.conftest import _clear_caches, api, in_campaign, partner, partner_and_key, vend, vending_keys  # noqa: F401


@pytest.fixture
def replica_on(settings: Any) -> Iterator[None]:
    settings.REPLICA_READS = True
    settings.REPLICA_CHECK_SECONDS = 0  # every read asks: the tests change the replica's health at will
    replica_health_reset()
    yield
    replica_health_reset()

"""Fixtures for the vending partner API tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.vending.factories import load_vending_keys, make_partner
from tokens.keys import vending_key_cache_clear

NAIROBI = ZoneInfo("Africa/Nairobi")
# Inside KPLC's 2024 campaign, before the 1993 base date's TID rollover (24 Nov 2024 20:15).
IN_CAMPAIGN = dt.datetime(2024, 8, 1, 10, 0, tzinfo=NAIROBI)


@pytest.fixture(autouse=True)
def _clear_caches() -> None:
    cache.clear()  # throttle counters
    vending_key_cache_clear()  # unwrapped vending keys kept by tokens.keys


@pytest.fixture
def vending_keys(db: Any) -> None:
    load_vending_keys()


@pytest.fixture
def partner_and_key(db: Any) -> tuple[Any, str]:
    return make_partner()


@pytest.fixture
def api(partner_and_key: tuple[Any, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {partner_and_key[1]}")
    return client


@pytest.fixture
def partner(partner_and_key: tuple[Any, str]) -> Any:
    return partner_and_key[0]


@pytest.fixture
def in_campaign() -> Any:
    """Freeze the clock inside the 2024 campaign (ticking, so TIDs still move on)."""
    with time_machine.travel(IN_CAMPAIGN, tick=True) as traveller:
        yield traveller


@pytest.fixture
def vend(api: APIClient) -> Callable[..., Any]:
    """vend(meter, reference=..., amount="100.00", **extra) -> response of POST /api/v1/vends/."""
    counter = iter(range(1, 1_000_000))

    def do(meter: Any, reference: str | None = None, amount: str = "100.00", **extra: Any) -> Any:
        body = {"meter_number": meter.meter_number, "amount": amount, "reference": reference or f"REF-{next(counter)}"}
        body.update(extra)
        return api.post("/api/v1/vends/", body, format="json")

    return do

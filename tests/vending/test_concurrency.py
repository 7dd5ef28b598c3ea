"""Races on PostgreSQL: threads with their own connections hitting the API at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from tests.vending.factories import enroll, make_campaign, make_partner, virtual_meter
from tokens.models import IssuedToken, KeyChangeSet, Vend

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.skipif(
        not settings.DATABASES["default"]["ENGINE"].endswith((".postgresql", ".pgbackend")),
        reason="row locks and blocking unique-index inserts need PostgreSQL (set DATABASE_URL; CI does)",
    ),
]

N = 20


def race(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run call(i) in n threads released together; each thread has its own DB connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(isinstance(r, Exception) for r in results), results
    return results


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_parallel_identical_requests_make_one_vend(vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    enroll(meter, make_campaign())
    _partner, key = make_partner()
    body = {"meter_number": meter.meter_number, "amount": "250.00", "reference": "SAME-REF"}

    responses = race(N, lambda i: client_for(key).post("/api/v1/vends/", body, format="json"))

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1  # every caller got the first response, byte for byte
    assert sum(not r.has_header("Idempotent-Replayed") for r in responses) == 1
    assert Vend.objects.count() == 1
    assert IssuedToken.objects.count() == 1
    assert KeyChangeSet.objects.count() == 1


def test_parallel_different_vends_for_one_meter_get_distinct_increasing_tids(vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    enroll(meter, make_campaign())
    _partner, key = make_partner()

    def sell(i: int) -> Any:
        body = {"meter_number": meter.meter_number, "amount": f"{100 + i}.00", "reference": f"PAR-{i}"}
        return client_for(key).post("/api/v1/vends/", body, format="json")

    responses = race(N, sell)
    assert [r.status_code for r in responses] == [201] * N, [r.content for r in responses if r.status_code != 201]

    # One key change set, the same codes in every response.
    assert KeyChangeSet.objects.filter(meter=meter).count() == 1
    codes = {tuple(t["digits"] for t in r.json()["tokens"] if t["kind"] != "credit") for r in responses}
    assert len(codes) == 1

    tokens = list(IssuedToken.objects.filter(meter=meter).order_by("id"))
    tids = [t.tid for t in tokens]
    assert len(set(tids)) == N
    assert tids == sorted(tids), "TIDs must increase in the order tokens were issued"
    assert all(tid % 1440 != 1 for tid in tids)

    physical = virtual_meter(meter)
    for code in next(iter(codes)):
        assert physical.enter(code).accepted
    for token in tokens:
        result = physical.enter(token.digits)
        assert result.accepted, (token.tid, result.reason)
    assert physical.credit == sum((t.units for t in tokens), Decimal(0))


def test_parallel_vends_cannot_overrun_the_daily_limit(vending_keys, in_campaign, meter_factory):
    meters = [meter_factory() for _ in range(4)]
    _partner, key = make_partner("Agent", daily_limit=Decimal("1000.00"))

    def sell(i: int) -> Any:
        body = {"meter_number": meters[i % 4].meter_number, "amount": "100.00", "reference": f"LIM-{i}"}
        return client_for(key).post("/api/v1/vends/", body, format="json")

    responses = race(N, sell)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [422] * 10
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 422} == {"DAILY_LIMIT_EXCEEDED"}
    assert Vend.objects.count() == 10

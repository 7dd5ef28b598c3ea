"""The vend's PostgreSQL statements and its portable ones (SQLite: the demo and `make test`) agree.

The same scenario runs through the service twice on the same data, once with the statements the
database would choose and once forced onto the portable statements, each rolled back afterwards:
responses, tokens, TIDs, codes, states, daily totals and queued SMS must match exactly. The
comparison runs on PostgreSQL (CI) only: on SQLite both runs would be the portable one.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction

from campaigns.models import Enrollment
from kplc_sts.db import portable_forced
from meters.models import Meter
from partners.models import PartnerDailyTotal
from sms.models import Message
from tests.vending.conftest import IN_CAMPAIGN, NAIROBI
from tests.vending.factories import enroll, make_campaign, make_partner, virtual_meter
from tokens import errors
from tokens.models import IssuedToken, KeyChangeSet, TidCounter
from tokens.services import vend_create

pytestmark = pytest.mark.django_db

PAST_ROLLOVER = dt.datetime(2025, 3, 3, 9, 30, tzinfo=NAIROBI)


def _sale(partner: Any, meter: Meter, reference: str, amount: str, phone: str = "") -> tuple[Any, ...]:
    try:
        outcome = vend_create(
            partner=partner,
            meter_number=meter.meter_number,
            amount=Decimal(amount),
            reference=reference,
            customer_phone=phone,
        )
    except errors.VendError as exc:
        return ("refused", exc.code)
    body = json.loads(outcome.body)
    tokens = [(t["position"], t["kind"], t["digits"]) for t in body["tokens"]]
    text = outcome.body.replace(body["vend_id"], "<vend id>")  # a fresh UUID each run; the rest must match
    return (outcome.status, outcome.replayed, text, body["units"], tokens)


def _scenario(partner: Any, enrolled: Meter, plain: Meter, late: Meter) -> list[Any]:
    """A day of sales, then one past the rollover. Asserts the rules as it goes; returns all it saw."""
    seen: list[Any] = []
    with time_machine.travel(IN_CAMPAIGN, tick=False):
        first = _sale(partner, enrolled, "R1", "500.10", phone="+254700000001")
        again = _sale(partner, enrolled, "R1", "500.10", phone="+254700000001")
        assert again[:1] == (201,) and again[1] is True and again[2] == first[2]  # byte for byte
        assert _sale(partner, enrolled, "R1", "999.00") == ("refused", "DUPLICATE_REFERENCE")
        second = _sale(partner, plain, "R2", "20.20")  # 520.30: 520.3000000000001 in floating point
        third = _sale(partner, enrolled, "R3", "500.00")  # exactly up to the daily limit of 1020.30
        assert _sale(partner, plain, "R4", "10.00") == ("refused", "DAILY_LIMIT_EXCEEDED")
        assert [k for _p, k, _d in first[4]] == ["reset_code", "update_code", "credit"]
        assert third[4][:2] == first[4][:2]  # the same codes on every vend until confirmed
        assert [k for _p, k, _d in second[4]] == ["credit"]
        seen += [first, again, second, third]
    with time_machine.travel(PAST_ROLLOVER, tick=False):
        # Not enrolled, on a 1993 key past the rollover: the campaign covering its group sends the codes.
        fourth = _sale(partner, late, "R5", "100.00")
        assert [k for _p, k, _d in fourth[4]] == ["reset_code", "update_code", "credit"]
        seen.append(fourth)

    tokens = list(
        IssuedToken.objects.order_by("meter_id", "sgc", "krn", "tid").values_list(
            "meter__meter_number", "vend__reference", "sgc", "krn", "base_date", "tid", "units", "digits"
        )
    )
    for meter in (enrolled, plain):
        tids = [t[5] for t in tokens if t[0] == meter.meter_number]
        assert tids == sorted(set(tids)) and all(tid % 1440 != 1 for tid in tids)
    seen.append(tokens)
    seen.append(list(KeyChangeSet.objects.order_by("meter_id").values_list("meter__meter_number", "codes")))
    seen.append(list(TidCounter.objects.order_by("meter_id", "krn").values_list("meter_id", "krn", "last_tid")))
    seen.append(sorted(Meter.objects.filter(pk__in=[enrolled.pk, plain.pk, late.pk]).values_list("pk", "key_state")))
    seen.append(list(Enrollment.objects.values_list("meter_id", "state")))
    seen.append(list(PartnerDailyTotal.objects.order_by("day").values_list("day", "amount", "vend_count")))
    assert seen[-1][0][1:] == (Decimal("1020.30"), 3)
    seen.append(list(Message.objects.order_by("id").values_list("recipient", "purpose", "body")))
    return seen


def _run(partner: Any, meters: tuple[Meter, ...], monkeypatch: Any) -> list[Any]:
    # STS tokens carry a 4-bit random field: fix it so both runs make the same digits.
    monkeypatch.setattr("secrets.randbelow", lambda _n: 7)
    with transaction.atomic():
        seen = _scenario(partner, *meters)
        transaction.set_rollback(True)
    return seen


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="on other databases both runs are the portable one: a tautology"
)
def test_native_and_portable_statements_make_the_same_sales(vending_keys, monkeypatch):
    with time_machine.travel(IN_CAMPAIGN, tick=False):
        partner, _key = make_partner(daily_limit=Decimal("1020.30"))
        from tests.factories import MeterFactory

        enrolled, plain, late = MeterFactory(), MeterFactory(phone=""), MeterFactory()
        enroll(enrolled, make_campaign())

    native = _run(partner, (enrolled, plain, late), monkeypatch)
    with portable_forced():
        portable = _run(partner, (enrolled, plain, late), monkeypatch)

    assert portable == native


def test_portable_statements_sell_tokens_the_meter_accepts(vending_keys, monkeypatch):
    """The portable path's codes and TIDs work in the meter (on PostgreSQL too, where it is forced)."""
    with portable_forced(), time_machine.travel(IN_CAMPAIGN, tick=False):
        partner, _key = make_partner()
        from tests.factories import MeterFactory

        meter = MeterFactory()
        enroll(meter, make_campaign())
        sales = [_sale(partner, meter, f"P{i}", "100.00") for i in range(3)]
    device = virtual_meter(meter)
    for position, _kind, digits in sales[0][4]:
        assert device.enter(digits).accepted, position
    for sale in sales[1:]:
        assert device.enter(sale[4][-1][2]).accepted  # later credit tokens, same minute, increasing TIDs
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CODES_ISSUED

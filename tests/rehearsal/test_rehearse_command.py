"""The rehearsal's guard rails and its population, without starting the stack."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from meters.models import Meter
from rehearsal.checks import expected_state
from rehearsal.population import REGIONS, Behaviour, customers_draw, gateway_numbers

pytestmark = pytest.mark.django_db


def test_it_refuses_sqlite_and_a_database_holding_a_real_register(meter_factory, tmp_path):
    meter = meter_factory.create()  # account "ACC...": not a rehearsal's
    if connection.vendor != "postgresql":
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("rehearse", "--meters", "10", "--days", "1", "--out", str(tmp_path))
        return
    with pytest.raises(CommandError, match="holds meters no rehearsal made"):
        call_command("rehearse", "--meters", "10", "--days", "1", "--out", str(tmp_path))
    assert Meter.objects.filter(pk=meter.pk).exists()  # nothing was emptied


def test_the_population_follows_its_seed_and_shares():
    behaviour = Behaviour()
    first = customers_draw(20_000, seed=3, behaviour=behaviour)
    again = customers_draw(20_000, seed=3, behaviour=behaviour)
    assert [(c.region, c.channel, c.interval_days, c.phone_fate) for c in first] == [
        (c.region, c.channel, c.interval_days, c.phone_fate) for c in again
    ]
    nairobi = sum(c.region == "Nairobi" for c in first) / len(first)
    assert abs(nairobi - dict((r, s) for r, s, _ in REGIONS)["Nairobi"]) < 0.02
    never = sum(c.interval_days is None for c in first) / len(first)
    assert abs(never - 0.12) < 0.02
    # Without SMS the receipt is the only way to the tokens: no mobile money for those phones.
    assert not [c for c in first if c.phone_fate in ("invalid", "blacklisted") and c.channel == "mobile_money"]
    numbers = gateway_numbers(first)
    assert set(numbers["number_status"].values()) == {403, 406}
    assert len(numbers["dlr_failures"]) == sum(c.phone_fate == "undelivered" for c in first)
    assert len({c.meter_number for c in first}) == len(first) == len({c.phone for c in first})


def test_the_expected_enrollment_state_is_the_furthest_the_customer_got():
    customer = customers_draw(1, seed=1, behaviour=Behaviour())[0]
    assert expected_state(customer) == "scheduled"
    customer.notices = 1
    assert expected_state(customer) == "notified"
    customer.got_codes = True
    assert expected_state(customer) == "codes_issued"
    customer.reported_rejection = True
    assert expected_state(customer) == "failed"
    customer.flagged = True
    assert expected_state(customer) == "non_compliant"


def test_the_credit_token_check_counts_only_tokens_no_meter_took_and_names_them(meter_factory):
    from campaigns.services import campaign_create
    from rehearsal.checks import _credit_tokens_check
    from tokens.models import IssuedToken

    campaign = campaign_create(
        name="Check", sgcs=["600675"], from_krn=1, to_krn=2, deadline=dt.date(2030, 8, 31), daily_capacity=100
    )
    customers = customers_draw(4, seed=3, behaviour=Behaviour())
    meters = [meter_factory.create() for _ in customers]
    by_meter_id = {meter.pk: customer for meter, customer in zip(meters, customers, strict=True)}

    def issued(meter, digits: str, krn: int, tid: int) -> None:
        IssuedToken.objects.create(
            meter=meter, kind="credit", token_class=0, subclass=0, sgc="600675", krn=krn, base_date=1993,
            tid=tid, digits=digits, issued_by="test",
        )  # fmt: skip

    typed, refused_by_design, stranded, lost = customers
    issued(meters[0], "11110000000000000001", 1, 10)
    typed.typed.add("11110000000000000001")
    issued(meters[1], "22220000000000000002", 2, 10)
    refused_by_design.non_compliant = True
    issued(meters[2], "33330000000000000003", 1, 10)
    stranded.stranded.add("33330000000000000003")
    issued(meters[3], "44440000000000000004", 2, 10)
    lost.note("06-17 12:00 bought: ['credit:0004']")

    not_accepted, stranded_count, examples = _credit_tokens_check(campaign, by_meter_id)
    assert (not_accepted, stranded_count) == (1, 1)
    assert list(examples) == [lost.meter_number]
    assert examples[lost.meter_number]["token"] == "0004" and examples[lost.meter_number]["krn"] == 2
    assert examples[lost.meter_number]["trace"] == ["06-17 12:00 bought: ['credit:0004']"]

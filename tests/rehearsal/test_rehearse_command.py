"""The rehearsal's guard rails and its population, without starting the stack."""

from __future__ import annotations

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

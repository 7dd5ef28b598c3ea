"""The demo register that seed_demo loads."""

from __future__ import annotations

import io

import pytest

from audit.models import AuditEvent
from meters import demo
from meters.models import Meter
from tokens.sts import is_valid_meter_number

pytestmark = pytest.mark.django_db


def test_seed_loads_a_few_thousand_luhn_valid_meters_across_regions() -> None:
    stdout = io.StringIO()
    demo.seed(stdout)

    assert Meter.objects.count() == demo.DEMO_METERS
    numbers = list(Meter.objects.values_list("meter_number", flat=True))
    assert all(len(number) == 11 and number.startswith("54") and is_valid_meter_number(number) for number in numbers)
    assert set(Meter.objects.values_list("region", flat=True)) == set(demo.REGIONS)
    assert not Meter.objects.exclude(phone__regex=r"^\+2547[0-9]{8}$").exists()
    assert set(Meter.objects.values_list("sgc", "krn", "kt", "ea", "dkga", "base_date", "ti").distinct()) == {
        ("600675", 1, 2, "07", "02", 1993, 1)
    }
    assert "3000 inserted" in stdout.getvalue()
    assert AuditEvent.objects.filter(action="meters.imported", actor_label="seed_demo").count() == 1


def test_seeding_twice_does_not_duplicate() -> None:
    demo.seed(io.StringIO())
    demo.seed(io.StringIO())
    assert Meter.objects.count() == demo.DEMO_METERS

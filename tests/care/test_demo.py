from __future__ import annotations

import io

import pytest

from campaigns.demo import seed as seed_campaign
from care.demo import seed as seed_care
from care.models import CareCase
from meters.models import Meter


@pytest.mark.django_db
def test_demo_seed_fills_the_case_queue_and_the_field_visit_queue(meter_factory):
    meter_factory.create_batch(40)
    seed_campaign(io.StringIO())
    out = io.StringIO()
    seed_care(out)
    assert CareCase.objects.filter(status=CareCase.Status.OPEN).count() == 2
    assert set(CareCase.objects.values_list("source", flat=True)) == {CareCase.Source.USSD, CareCase.Source.AGENT}
    flagged = Meter.objects.get(key_state=Meter.KeyState.NON_COMPLIANT)
    assert flagged.meter_number in out.getvalue()


@pytest.mark.django_db
def test_demo_seed_without_a_notified_batch_does_nothing(meter_factory):
    meter_factory.create_batch(5)
    seed_care(io.StringIO())
    assert not CareCase.objects.exists()

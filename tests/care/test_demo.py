from __future__ import annotations

import io

import pytest

from care.demo import seed as seed_care
from care.models import CareCase


@pytest.mark.django_db
def test_demo_seed_without_a_batch_or_partner_does_nothing(meter_factory):
    meter_factory.create_batch(5)
    out = io.StringIO()
    seed_care(out)
    assert not CareCase.objects.exists()
    assert "no demo care work" in out.getvalue()

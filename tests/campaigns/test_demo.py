from __future__ import annotations

import io

import pytest

from campaigns.demo import seed
from campaigns.models import Batch, Campaign


@pytest.mark.django_db
def test_demo_seed_makes_a_campaign_with_batches(meter_factory):
    meter_factory.create_batch(40)
    seed(io.StringIO())
    campaign = Campaign.objects.get()
    statuses = sorted(Batch.objects.values_list("status", flat=True))
    assert statuses == ["notifying", "scheduled", "scheduled"] or statuses == ["open", "scheduled", "scheduled"]
    assert campaign.notified == Batch.objects.get(number=1).enrolled > 0

from __future__ import annotations

import io

import pytest

from campaigns.demo import seed
from campaigns.models import Batch, Campaign


@pytest.mark.django_db
def test_demo_seed_makes_a_campaign_with_batches(meter_factory, django_capture_on_commit_callbacks):
    meter_factory.create_batch(40)
    with django_capture_on_commit_callbacks(execute=True) as started:
        seed(io.StringIO())
    # The first batch starts once the seed is committed, not inside it (the other callbacks are each
    # scheduled batch's statistics refresh).
    assert [callback.__qualname__ for callback in started].count("seed.<locals>.<lambda>") == 1
    campaign = Campaign.objects.get()
    statuses = sorted(Batch.objects.values_list("status", flat=True))
    assert statuses == ["notifying", "scheduled", "scheduled"] or statuses == ["open", "scheduled", "scheduled"]
    assert campaign.notified == Batch.objects.get(number=1).enrolled > 0

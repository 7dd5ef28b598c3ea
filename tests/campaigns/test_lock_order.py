"""The outbox's report of sent notices locks only the enrollments, in primary-key order.

With the model's default ordering (batch, then the batch's campaign) the SELECT ... FOR UPDATE
joined and locked the batch and campaign rows first, against the order every other state change
keeps (enrollment, batch, campaign): concurrent vends deadlocked with it (the rehearsal's 503s).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Enrollment
from campaigns.services import batch_schedule, notices_sent

pytestmark = pytest.mark.django_db


def test_notices_sent_locks_no_batch_or_campaign_row(campaign, meter_factory):
    meters = meter_factory.create_batch(3)
    batch = batch_schedule(campaign=campaign, regions=[], sgcs=[], limit=3, scheduled_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert notices_sent(batch_id=batch.pk, meter_ids=[m.pk for m in meters]) == 3
    locking = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    if connection.vendor != "postgresql":
        assert locking == []  # SQLite has no row locks: the IMMEDIATE transaction serialises writers
        return
    assert len(locking) == 1
    assert "campaigns_batch" not in locking[0] and "campaigns_campaign" not in locking[0]
    assert locking[0].rstrip().endswith("ORDER BY 1 ASC FOR UPDATE")  # by id: one lock order for all
    assert Enrollment.objects.filter(batch=batch, state="notified").count() == 3

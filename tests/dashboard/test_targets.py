"""The campaign target snapshot has callers: beat (hourly), campaign_tick, and the meter import."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from campaigns.models import CampaignTarget
from campaigns.services import campaign_target_refresh, campaign_targets_refresh
from campaigns.tasks import refresh_targets_task as refresh_targets

pytestmark = pytest.mark.django_db


def test_beat_runs_the_refresh_hourly():
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == refresh_targets.name)
    assert entry["schedule"] == 3600.0


def test_the_task_recounts_every_open_campaign(campaign, meter_factory):
    campaign_target_refresh(campaign=campaign)
    meter_factory.create_batch(3)
    assert CampaignTarget.objects.get(campaign=campaign).meters == 0
    assert refresh_targets() == 1
    assert CampaignTarget.objects.get(campaign=campaign).meters == 3


def test_campaign_tick_recounts_only_snapshots_older_than_an_hour(campaign, meter_factory):
    campaign_target_refresh(campaign=campaign)
    meter_factory.create_batch(2)
    out = StringIO()
    call_command("campaign_tick", stdout=out)
    assert "targets recounted: 0" in out.getvalue()
    assert CampaignTarget.objects.get(campaign=campaign).meters == 0  # fresh: left alone
    CampaignTarget.objects.update(computed_at=timezone.now() - dt.timedelta(hours=2))
    call_command("campaign_tick", stdout=out)
    assert "targets recounted: 1" in out.getvalue()
    assert CampaignTarget.objects.get(campaign=campaign).meters == 2
    assert campaign_targets_refresh(older_than=dt.timedelta(hours=1)) == 0

"""The vend's PostgreSQL facts statement agrees with the ORM selectors it stands in for (both are
built from campaigns.rules.OPEN_ENROLLMENT), and the dashboard counters, the API key cache and the
throttle behave."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Batch, Campaign, Enrollment
from campaigns.selectors import enrollment_for_meter
from partners import services as partner_services
from partners.models import PartnerApiKey
from tests.vending.factories import enroll, make_campaign
from tokens import _pg, _portable
from tokens.models import ApiErrorStat, KeyChangeSet, Vend, VendMinuteStat
from tokens.services import key_change_set_issue

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="compares the PostgreSQL statement with the ORM; elsewhere only the ORM runs, so it would be a tautology",
)


def _facts(meter_number: str):
    """The PostgreSQL statement's facts, checked against the portable selectors' on the spot."""
    now = timezone.now()
    native, portable = (
        _pg.vend_facts_load(meter_number=meter_number, now=now),
        _portable.vend_facts_load(meter_number=meter_number, now=now),
    )
    if native is None:
        assert portable is None
        return None
    for name in ("enrollment", "latest_set", "covering"):
        a, b = getattr(native, name), getattr(portable, name)
        assert (a.pk if a else None) == (b.pk if b else None), name
    return native.meter, native.enrollment, native.latest_set


def _batch(campaign: Campaign, *, status: str, hours: float = -1) -> Batch:
    return Batch.objects.create(
        campaign=campaign,
        number=campaign.batches.count() + 1,
        selection_limit=100,
        scheduled_at=timezone.now() + dt.timedelta(hours=hours),
        status=status,
    )


def _enroll(meter, campaign, batch, state, minutes_ago: int = 0) -> Enrollment:
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return Enrollment.objects.create(
        campaign=campaign, meter=meter, batch=batch, state=state, enrolled_at=at, state_changed_at=at
    )


CASES = [
    # (campaign status, batch status, hours to the batch's time, enrollment state)
    (Campaign.Status.ACTIVE, Batch.Status.OPEN, -1, Enrollment.State.NOTIFIED),
    (Campaign.Status.ACTIVE, Batch.Status.OPEN, +2, Enrollment.State.NOTIFIED),  # batch not due yet
    (Campaign.Status.ACTIVE, Batch.Status.DRAFT, -1, Enrollment.State.SCHEDULED),
    (Campaign.Status.ACTIVE, Batch.Status.CANCELLED, -1, Enrollment.State.SCHEDULED),
    (Campaign.Status.ACTIVE, Batch.Status.CANCELLED, -1, Enrollment.State.CODES_ISSUED),
    (Campaign.Status.ACTIVE, Batch.Status.PAUSED, -1, Enrollment.State.FAILED),
    (Campaign.Status.ACTIVE, Batch.Status.CLOSED, -1, Enrollment.State.CONFIRMED),
    (Campaign.Status.DRAFT, Batch.Status.OPEN, -1, Enrollment.State.NOTIFIED),
    # Recorded outside any batch (codes at the till, USSD or care): open at once.
    (Campaign.Status.ACTIVE, None, 0, Enrollment.State.CODES_ISSUED),
    (Campaign.Status.ACTIVE, None, 0, Enrollment.State.CONFIRMED),
    (Campaign.Status.PAUSED, None, 0, Enrollment.State.CODES_ISSUED),
]


@postgresql_only
@pytest.mark.parametrize(("campaign_status", "batch_status", "hours", "state"), CASES)
def test_meter_statement_finds_the_campaign_services_enrollment(
    meter_factory, campaign_status, batch_status, hours, state
):
    meter = meter_factory()
    campaign = make_campaign(status=campaign_status)
    batch = _batch(campaign, status=batch_status, hours=hours) if batch_status else None
    _enroll(meter, campaign, batch, state)
    _meter, found, _latest = _facts(meter.meter_number)
    expected = enrollment_for_meter(meter)
    assert (found.pk if found else None) == (expected.pk if expected else None)
    if expected is not None:
        assert found.state == expected.state and found.campaign.pk == expected.campaign.pk
        assert found.campaign.sgcs == expected.campaign.sgcs  # JSON converted like the ORM does


@postgresql_only
def test_meter_statement_takes_the_newest_of_several_enrollments(meter_factory):
    meter = meter_factory()
    old, new = make_campaign(), make_campaign()
    _enroll(meter, old, _batch(old, status=Batch.Status.OPEN), Enrollment.State.NOTIFIED, minutes_ago=60)
    _enroll(meter, new, _batch(new, status=Batch.Status.OPEN), Enrollment.State.SCHEDULED, minutes_ago=5)
    _meter, found, _latest = _facts(meter.meter_number)
    assert found.pk == enrollment_for_meter(meter).pk
    assert found.campaign.pk == new.pk


@postgresql_only
def test_meter_statement_loads_the_meter_and_its_latest_codes(vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    assert _facts("00000000000") is None
    loaded, enrollment, latest = _facts(meter.meter_number)
    assert loaded.pk == meter.pk and loaded.meter_number == meter.meter_number and loaded.phone == meter.phone
    assert enrollment is None and latest is None
    campaign = make_campaign()
    enroll(meter, campaign)
    made = key_change_set_issue(meter=meter, campaign=campaign, actor_label="test", origin=Enrollment.Origin.USSD)
    _loaded, enrollment, latest = _facts(meter.meter_number)
    assert latest.pk == made.pk and latest.codes == made.codes  # a list, as the ORM returns it
    assert enrollment.campaign.pk == campaign.pk


# --- Dashboard counters ------------------------------------------------------------------------------


def test_new_vends_are_counted_after_commit_and_replays_are_not(
    vend, vending_keys, in_campaign, meter_factory, django_capture_on_commit_callbacks
):
    plain, due = meter_factory(), meter_factory()
    enroll(due, make_campaign())
    with django_capture_on_commit_callbacks(execute=True):
        assert vend(plain, reference="A").status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        assert vend(due, reference="B").status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        assert vend(plain, reference="A").status_code == 201  # replay
    rows = VendMinuteStat.objects.all()
    assert sum(r.vends for r in rows) == 2
    assert sum(r.vends_with_codes for r in rows) == 1


def test_a_failing_counter_never_fails_the_vend(
    vend, vending_keys, in_campaign, meter_factory, monkeypatch, django_capture_on_commit_callbacks
):
    import tokens.api.exceptions
    import tokens.services.vend

    def broken(**_kwargs):
        raise RuntimeError("dashboard table missing")

    monkeypatch.setattr(tokens.services.vend, "vend_minute_record", broken)
    monkeypatch.setattr(tokens.api.exceptions, "api_error_record", lambda *a, **k: broken())
    with django_capture_on_commit_callbacks(execute=True):
        assert vend(meter_factory(), reference="C").status_code == 201
    assert vend(meter_factory(), reference="D", amount="1.00").json()["error"]["code"] == "AMOUNT_TOO_LOW"


def test_every_error_code_returned_is_counted(api, vend, vending_keys, in_campaign, meter_factory):
    assert vend(meter_factory(), amount="1.00").status_code == 422
    assert api.get("/api/v1/nothing/").status_code == 404
    assert APIClient().get("/api/v1/vends/X/").status_code == 401
    counts = dict(ApiErrorStat.objects.values_list("code", "count"))
    assert counts == {"AMOUNT_TOO_LOW": 1, "NOT_FOUND": 1, "UNAUTHENTICATED": 1}


# --- API key cache and throttle ----------------------------------------------------------------------


def test_revocation_in_another_process_takes_effect_within_the_cache_time(api, partner, meter_factory, monkeypatch):
    url = f"/api/v1/meters/{meter_factory().meter_number}/"
    assert api.get(url).status_code == 200
    # Another process revokes: a plain UPDATE, no signal reaches this one.
    PartnerApiKey.objects.filter(partner=partner).update(revoked_at=timezone.now())
    assert api.get(url).status_code == 200  # still cached here, for at most API_KEY_CACHE_SECONDS
    clock = partner_services.time.monotonic() + partner_services.API_KEY_CACHE_SECONDS + 1
    monkeypatch.setattr(partner_services.time, "monotonic", lambda: clock)
    assert api.get(url).status_code == 401


def test_replay_of_a_stored_vend_wins_over_a_refusal(api, vend, partner, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    first = vend(meter, reference="R", amount="500.00")
    assert first.status_code == 201
    partner.max_vend_amount = "200.00"
    partner.save()
    again = vend(meter, reference="R", amount="500.00")
    assert again.status_code == 201 and again.content == first.content
    assert Vend.objects.count() == 1 and KeyChangeSet.objects.count() == 0


def test_throttle_counts_in_redis_and_fails_open_when_redis_is_down(api, partner, meter_factory, settings, monkeypatch):
    import os

    from kplc_sts import ratelimit
    from partners import authentication

    url = f"/api/v1/meters/{meter_factory().meter_number}/"
    partner.throttle_rate = "2/min"
    partner.save()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    monkeypatch.setattr(ratelimit, "_down_until", {})
    window_start = authentication.time.time() // 60 * 60
    monkeypatch.setattr(authentication.time, "time", lambda: window_start + 1)
    # Redis is shared between runs: start from an empty window.
    ratelimit.redis_client(redis_url).delete(f"partner-throttle:{partner.pk}:60:{int(window_start // 60)}")
    assert [api.get(url).status_code for _ in range(3)] == [200, 200, 429]
    # Redis unreachable: requests pass (the money limits are in the database), and quickly.
    dead = "redis://127.0.0.1:1/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    assert api.get(url).status_code == 200
    assert ratelimit._down_until[dead] > 0

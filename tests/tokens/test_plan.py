"""The vend's rules, state by state, without a database: vend_plan is a pure function of its facts."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from campaigns.models import Campaign, Enrollment
from meters.models import Meter
from tokens import errors
from tokens.keys import MeterKey
from tokens.models import KeyChangeSet
from tokens.plan import VendFacts, meter_current_key, vend_plan

NAIROBI = ZoneInfo("Africa/Nairobi")
BEFORE_ROLLOVER = dt.datetime(2024, 8, 1, 10, 0, tzinfo=NAIROBI)
AFTER_ROLLOVER = dt.datetime(2025, 3, 3, 10, 0, tzinfo=NAIROBI)
SGC = "600675"


def _meter(**fields: object) -> Meter:
    values = {"pk": 1, "meter_number": "54000000018", "sgc": SGC, "krn": 1, "base_date": 1993, "ken": 255}
    return Meter(**{**values, **fields})


def _campaign(pk: int = 7, **fields: object) -> Campaign:
    values = {"pk": pk, "sgcs": [SGC], "from_krn": 1, "to_krn": 2, "new_base_date": 2014, "new_ken": 255}
    return Campaign(**{**values, **fields})


def _enrollment(campaign: Campaign, state: str) -> Enrollment:
    enrollment = Enrollment(pk=3, campaign_id=campaign.pk, meter_id=1, batch_id=None, state=state)
    enrollment.campaign = campaign
    return enrollment


def _set(campaign: Campaign) -> KeyChangeSet:
    return KeyChangeSet(
        pk=9, campaign_id=campaign.pk, from_sgc=SGC, from_krn=1, from_base_date=1993, to_sgc=SGC, to_krn=2,
        to_base_date=2014, to_ken=255, rollover=True, codes=["1" * 20, "2" * 20],
    )  # fmt: skip


def facts(meter: Meter, *, enrollment=None, latest_set=None, covering=None) -> VendFacts:
    return VendFacts(meter=meter, enrollment=enrollment, latest_set=latest_set, covering=covering)


NEW_KEY = MeterKey(sgc=SGC, krn=2, base_date=2014, ken=255)
OLD_KEY = MeterKey(sgc=SGC, krn=1, base_date=1993, ken=255)


@pytest.mark.parametrize("state", [Enrollment.State.SCHEDULED, Enrollment.State.NOTIFIED, Enrollment.State.FAILED])
def test_an_open_enrollment_whose_codes_are_due_gets_them_under_the_new_key(state):
    campaign = _campaign()
    plan = vend_plan(facts(_meter(), enrollment=_enrollment(campaign, state), covering=campaign), now=BEFORE_ROLLOVER)
    assert (plan.campaign, plan.key, plan.resend) == (campaign, NEW_KEY, None)


def test_a_meter_in_no_batch_before_the_rollover_gets_a_plain_token():
    plan = vend_plan(facts(_meter(), covering=_campaign()), now=BEFORE_ROLLOVER)
    assert (plan.campaign, plan.key, plan.carries_codes) == (None, OLD_KEY, False)


def test_past_the_rollover_the_covering_campaign_sends_the_codes():
    campaign = _campaign()
    plan = vend_plan(facts(_meter(), covering=campaign), now=AFTER_ROLLOVER)
    assert (plan.campaign, plan.key) == (campaign, NEW_KEY)


def test_past_the_rollover_without_a_campaign_the_sale_is_refused_with_the_reason():
    with pytest.raises(errors.KeyChangeRequired, match="no update campaign covers supply group 600675"):
        vend_plan(facts(_meter()), now=AFTER_ROLLOVER)


def test_codes_already_out_are_sent_again_from_the_stored_set():
    campaign = _campaign()
    stored = _set(campaign)
    meter = _meter(key_state=Meter.KeyState.CODES_ISSUED)
    plan = vend_plan(facts(meter, latest_set=stored), now=AFTER_ROLLOVER)
    assert (plan.resend, plan.campaign, plan.key) == (stored, None, NEW_KEY)


def test_a_confirmed_meter_buys_under_the_key_its_last_set_moved_it_to():
    stored = _set(_campaign())
    meter = _meter(key_state=Meter.KeyState.CONFIRMED)
    assert meter_current_key(meter, stored) == NEW_KEY
    plan = vend_plan(facts(meter, latest_set=stored), now=AFTER_ROLLOVER)
    assert (plan.key, plan.carries_codes) == (NEW_KEY, False)


def test_a_meter_confirmed_without_codes_still_on_the_dead_key_gets_the_codes():
    campaign = _campaign()
    meter = _meter(key_state=Meter.KeyState.CONFIRMED)
    plan = vend_plan(facts(meter, covering=campaign), now=AFTER_ROLLOVER)
    assert (plan.campaign, plan.key) == (campaign, NEW_KEY)


@pytest.mark.parametrize(
    ("status", "error"),
    [(Meter.Status.BLOCKED, errors.MeterBlocked), (Meter.Status.RETIRED, errors.MeterBlocked)],
)
def test_blocked_and_retired_meters_are_refused(status, error):
    with pytest.raises(error):
        vend_plan(facts(_meter(status=status), covering=_campaign()), now=BEFORE_ROLLOVER)


def test_a_non_compliant_meter_buys_on_its_key_until_it_dies_then_waits_for_the_visit():
    meter = _meter(key_state=Meter.KeyState.NON_COMPLIANT, status=Meter.Status.NON_COMPLIANT)
    assert vend_plan(facts(meter, covering=_campaign()), now=BEFORE_ROLLOVER).key == OLD_KEY
    with pytest.raises(errors.MeterNonCompliant):
        vend_plan(facts(meter, covering=_campaign()), now=AFTER_ROLLOVER)


def test_a_confirmed_enrollment_does_not_bring_the_codes_again():
    campaign = _campaign()
    meter = _meter(key_state=Meter.KeyState.CONFIRMED)
    stored = _set(campaign)
    plan = vend_plan(
        facts(meter, enrollment=_enrollment(campaign, Enrollment.State.CONFIRMED), latest_set=stored),
        now=AFTER_ROLLOVER,
    )
    assert (plan.carries_codes, plan.key) == (False, NEW_KEY)

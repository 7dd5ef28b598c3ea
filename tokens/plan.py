"""What a vend carries, decided from facts alone: no database, no clock but the one passed in.

`vend_facts_load` (tokens.selectors) reads the facts in one statement on PostgreSQL; `vend_plan`
turns them into a plan or the refusal a partner should see. Being pure, the rules here can be
tested like the USSD menu, state by state, without a database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from campaigns import rules
from campaigns.models import Campaign, Enrollment
from meters.models import Meter

from . import errors
from .keys import MeterKey, key_usable
from .models import KeyChangeSet

BLOCKED_STATUSES = (Meter.Status.BLOCKED, Meter.Status.RETIRED)


@dataclass(frozen=True)
class VendFacts:
    """Everything the plan needs about one meter, loaded together.

    - `enrollment`: the meter's open enrollment (campaigns.rules.OPEN_ENROLLMENT), campaign loaded;
    - `latest_set`: its newest key change set from the register key (what moved it, or is moving
      it, off that key);
    - `covering`: the active campaign that moves its supply group off its key revision, if any.
    """

    meter: Meter
    enrollment: Enrollment | None
    latest_set: KeyChangeSet | None
    covering: Campaign | None


@dataclass(frozen=True)
class VendPlan:
    """The key the credit token is made under, and the codes that go first, if any: either a
    campaign's set (made once, then stored) or, for codes already out, the stored set to resend."""

    key: MeterKey
    campaign: Campaign | None = None
    enrollment: Enrollment | None = None
    resend: KeyChangeSet | None = None

    @property
    def carries_codes(self) -> bool:
        return self.campaign is not None or self.resend is not None


def meter_current_key(meter: Meter, latest_set: KeyChangeSet | None) -> MeterKey:
    """The key the meter holds.

    A meter confirmed on a campaign's new key whose register row still shows the old key (the
    campaign leaves the register as loaded) holds the key its last key change set moved it to. A
    register row that already shows the new key has no key change set from that key, so it is
    taken as it is.
    """
    if meter.key_state == Meter.KeyState.CONFIRMED and latest_set is not None:
        return MeterKey.set_target(latest_set)
    return MeterKey.register(meter)


def _codes_plan(facts: VendFacts, campaign: Campaign, enrollment: Enrollment | None = None) -> VendPlan:
    return VendPlan(key=MeterKey.campaign_target(facts.meter, campaign), campaign=campaign, enrollment=enrollment)


def _plan_confirmed(facts: VendFacts, current: MeterKey, now: dt.datetime) -> VendPlan:
    meter = facts.meter
    if key_usable(current, now):
        return VendPlan(key=current)
    if current == MeterKey.register(meter) and facts.covering is not None:
        # Confirmed although no codes ever moved it off the register's (dead) key: care or the
        # customer confirmed an enrollment whose codes we never issued. The meter can only be on
        # that key, so it gets the codes; were it somehow on the new key, it would reject them
        # and still take the credit token.
        return _codes_plan(facts, facts.covering)
    raise errors.KeyChangeRequired(
        f"Meter {meter.meter_number} is confirmed on key revision {current.krn}, which can no longer carry "
        "tokens, and no update campaign moves it on. Care must arrange a key change for it."
    )


def vend_plan(facts: VendFacts, *, now: dt.datetime) -> VendPlan:
    """Decide what a vend for the meter carries at `now`, or raise the VendError a partner should see."""
    meter = facts.meter
    if meter.status in BLOCKED_STATUSES:
        raise errors.MeterBlocked(f"Meter {meter.meter_number} is {meter.get_status_display().lower()}.")
    current = meter_current_key(meter, facts.latest_set)
    if meter.key_state == Meter.KeyState.CONFIRMED:
        return _plan_confirmed(facts, current, now)
    if meter.key_state == Meter.KeyState.NON_COMPLIANT:
        if key_usable(current, now):
            return VendPlan(key=current)
        raise errors.MeterNonCompliant(
            f"Meter {meter.meter_number} cannot take the update codes and is waiting for a field visit."
        )
    enrollment = facts.enrollment
    if enrollment is not None and enrollment.state in rules.CODES_DUE:
        return _codes_plan(facts, enrollment.campaign, enrollment)
    if meter.key_state == Meter.KeyState.CODES_ISSUED and facts.latest_set is not None:
        # Codes already went out (e.g. after the rollover, outside any batch): keep sending the same ones.
        return VendPlan(key=MeterKey.set_target(facts.latest_set), resend=facts.latest_set)
    if key_usable(current, now):
        return VendPlan(key=current)
    # Past the rollover the old key cannot carry a credit token: only the codes can save this sale.
    if facts.covering is None:
        raise errors.KeyChangeRequired(
            f"Meter {meter.meter_number} is on key revision {current.krn}, which can no longer carry tokens, "
            f"and no update campaign covers supply group {meter.sgc}."
        )
    return _codes_plan(facts, facts.covering)

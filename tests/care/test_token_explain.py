"""Decode what a customer typed and explain, in plain words, why the meter would refuse it."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from care.services import Verdict, token_explain
from meters.models import Meter
from tests.care.factories import BEFORE_ROLLOVER, enroll, make_meter, vend
from tokens.services import meter_current_key, meter_update_codes

pytestmark = pytest.mark.django_db


@pytest.fixture
def updated_meter(campaign, partner):
    """A meter with an old-key token (bought before the rollover), then codes + two new-key tokens."""
    meter = make_meter()
    old = vend(partner, meter, now=BEFORE_ROLLOVER)
    enroll(campaign, meter)
    first = vend(partner, meter, amount="300")
    second = vend(partner, meter, amount="200")
    return meter, old, first, second


def explain(meter: Meter, digits: str):
    return token_explain(meter=meter, typed=digits)


def test_made_under_the_old_key(updated_meter):
    meter, old, *_ = updated_meter
    Meter.objects.filter(pk=meter.pk).update(key_state=Meter.KeyState.CONFIRMED)
    meter.refresh_from_db()
    assert meter_current_key(meter, meter_update_codes(meter=meter)).krn == 2
    result = explain(meter, old.credit_token.digits)
    assert result.verdict == Verdict.OLD_KEY
    assert "Made under the old key (revision 1)" in result.headline
    assert "refuses tokens made under the old one" in result.headline
    assert any("loaded BEFORE update codes 1 and 2" in line for line in result.details)


def test_new_key_token_before_the_codes(updated_meter):
    meter, _, first, _ = updated_meter
    assert meter.key_state != Meter.KeyState.CONFIRMED
    result = explain(meter, first.credit_token.digits)
    assert result.verdict == Verdict.NEEDS_CODES
    assert "Type update code 1, then update code 2, then this token" in result.headline


def test_older_than_the_last_token(updated_meter):
    meter, _, first, _ = updated_meter
    Meter.objects.filter(pk=meter.pk).update(key_state=Meter.KeyState.CONFIRMED)
    meter.refresh_from_db()
    result = explain(meter, first.credit_token.digits)
    assert result.verdict == Verdict.OLDER_THAN_LAST
    assert result.headline.startswith("Older than the last token: a newer token was bought on")
    assert any("kWh" in line and "key revision 2" in line for line in result.details)


def test_already_used(updated_meter):
    meter, _, _, second = updated_meter
    Meter.objects.filter(pk=meter.pk).update(key_state=Meter.KeyState.CONFIRMED)
    meter.refresh_from_db()
    result = explain(meter, "  " + "-".join(second.credit_token.digits[i : i + 4] for i in range(0, 20, 4)))
    assert result.verdict == Verdict.ALREADY_USED
    assert "it was already used: each token is accepted only once" in result.headline
    assert any(second.reference in line for line in result.details)


def test_wrong_meter(updated_meter, partner):
    meter, *_ = updated_meter
    neighbour = make_meter()
    theirs = vend(partner, neighbour, now=BEFORE_ROLLOVER)
    result = explain(meter, theirs.credit_token.digits)
    assert result.verdict == Verdict.WRONG_METER
    assert f"made for meter {neighbour.meter_number}" in result.headline
    assert f"not for meter {meter.meter_number}" in result.headline


@pytest.mark.parametrize("mistake", ["digit", "swap"])
def test_typo(updated_meter, mistake):
    meter, _, _, second = updated_meter
    digits = second.credit_token.digits
    if mistake == "digit":
        typed = digits[:6] + str((int(digits[6]) + 5) % 10) + digits[7:]
        expected = f"digit 7 was typed as {typed[6]} instead of {digits[6]}"
    else:
        i = next(i for i in range(19) if digits[i] != digits[i + 1])
        typed = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
        expected = f"digits {i + 1} and {i + 2} were swapped"
    result = explain(meter, typed)
    assert result.verdict == Verdict.TYPO
    assert expected in result.headline


def test_too_few_digits_is_a_typo_too(updated_meter):
    meter, *_ = updated_meter
    result = explain(meter, "1234 5678 9012 3456 789")
    assert result.verdict == Verdict.FORMAT
    assert "exactly 20 digits and the customer typed 19" in result.headline


def test_update_codes_are_recognised(updated_meter):
    meter, _, first, _ = updated_meter
    result = explain(meter, first.key_change_set.codes[1])
    assert result.verdict == Verdict.KEY_CHANGE_CODE
    assert result.headline.startswith("Update code 2 of this meter")


def test_decoding_is_audited_without_the_digits(updated_meter):
    meter, _, _, second = updated_meter
    explain(meter, second.credit_token.digits)
    event = AuditEvent.objects.filter(action="token.decoded").latest("id")
    assert event.object_id == str(meter.pk)
    assert second.credit_token.digits not in str(event.details)

"""Vend through the API and type the returned tokens into a virtual STS meter on the meter's old key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from campaigns.models import Enrollment
from campaigns.services import enrollment_confirm
from meters.models import Meter
from sms.models import Message
from tests.vending.factories import enroll, make_campaign, virtual_meter
from tokens.models import IssuedToken, KeyChangeSet, Vend
from tokens.sts import RejectReason, decode_token

pytestmark = pytest.mark.django_db


def digits_of(response, kind: str) -> list[str]:
    return [t["digits"] for t in response.json()["tokens"] if t["kind"] == kind]


def test_campaign_vend_codes_then_credit_in_order(api, vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    physical = virtual_meter(meter)

    # Before the meter's batch: a plain credit token under the old key, accepted as usual.
    before = vend(meter, reference="before-1")
    assert before.status_code == 201, before.content
    assert [t["kind"] for t in before.json()["tokens"]] == ["credit"]
    assert physical.enter(digits_of(before, "credit")[0]).accepted
    # A second old-key token bought but not typed in before the update.
    unused_old = digits_of(vend(meter, reference="before-2"), "credit")[0]

    campaign = make_campaign()
    enrollment = enroll(meter, campaign)
    response = vend(meter, reference="with-codes", amount="500.00")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["key_change"] is True
    assert [(t["position"], t["kind"], t["label"]) for t in body["tokens"]] == [
        (1, "reset_code", "Update code 1"),
        (2, "update_code", "Update code 2"),
        (3, "credit", "Token"),
    ]
    for token in body["tokens"]:
        assert len(token["digits"]) == 20 and token["digits"].isdigit()
        assert token["display"] == "-".join(token["digits"][i : i + 4] for i in range(0, 20, 4))
    reset, update, credit = (t["digits"] for t in body["tokens"])

    # The credit token typed first is refused: it is made under the new key.
    first_try = physical.enter(credit)
    assert not first_try.accepted and first_try.reason == RejectReason.CRC_MISMATCH
    assert physical.enter(reset).accepted
    changed = physical.enter(update)
    assert changed.accepted and changed.key_changed
    assert physical.krn == 2 and int(physical.base_date) == 2014
    loaded = physical.enter(credit)
    assert loaded.accepted, loaded.message
    assert loaded.credit_added == Decimal(body["units"])

    # Tokens made under the old key before the update no longer work.
    assert physical.enter(unused_old).reason == RejectReason.CRC_MISMATCH

    meter.refresh_from_db()
    enrollment.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CODES_ISSUED
    assert enrollment.state == Enrollment.State.CODES_ISSUED
    token = IssuedToken.objects.get(vend__reference="with-codes")
    assert (token.krn, token.base_date) == (2, 2014)
    # A 2014-based TID: about 5.5 million minutes in August 2024, not 16.5 million.
    assert 5_000_000 < token.tid < 6_000_000
    assert Message.objects.filter(vend_id=Vend.objects.get(reference="with-codes").pk, purpose="codes").count() == 1

    # Until confirmed, every vend repeats the identical codes, with a fresh credit token.
    again = vend(meter, reference="with-codes-2")
    assert digits_of(again, "reset_code") == [reset] and digits_of(again, "update_code") == [update]
    assert digits_of(again, "credit") != [credit]
    assert KeyChangeSet.objects.filter(meter=meter).count() == 1
    assert physical.enter(digits_of(again, "credit")[0]).accepted

    # Once confirmed, a vend is just the credit token under the new key.
    assert enrollment_confirm(enrollment=enrollment, actor_label="test")
    after = vend(meter, reference="after-confirm")
    assert [t["kind"] for t in after.json()["tokens"]] == ["credit"]
    assert after.json()["key_change"] is False
    assert physical.enter(digits_of(after, "credit")[0]).accepted


def test_past_rollover_meter_on_1993_key_gets_codes_even_unscheduled(api, vend, vending_keys, meter_factory):
    """Today is past 24 Nov 2024 20:15: no credit token under a 1993 key can be made any more."""
    meter = meter_factory()
    physical = virtual_meter(meter)
    make_campaign()  # covers the supply group, but the meter is in no batch

    response = vend(meter)
    assert response.status_code == 201, response.content
    kinds = [t["kind"] for t in response.json()["tokens"]]
    assert kinds == ["reset_code", "update_code", "credit"]
    for token in response.json()["tokens"]:
        assert physical.enter(token["digits"]).accepted
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CODES_ISSUED


def test_past_rollover_enrolled_meter_gets_codes(api, vend, vending_keys, meter_factory):
    meter = meter_factory()
    enrollment = enroll(meter, make_campaign())
    physical = virtual_meter(meter)
    response = vend(meter)
    assert [t["kind"] for t in response.json()["tokens"]] == ["reset_code", "update_code", "credit"]
    assert all(physical.enter(t["digits"]).accepted for t in response.json()["tokens"])
    enrollment.refresh_from_db()
    assert enrollment.state == Enrollment.State.CODES_ISSUED


def test_past_rollover_without_campaign_is_key_change_required(api, vend, vending_keys, meter_factory):
    meter = meter_factory()
    response = vend(meter)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "KEY_CHANGE_REQUIRED"
    assert not Vend.objects.exists() and not IssuedToken.objects.exists()


def test_meter_already_on_2014_key_gets_credit_only(api, vend, vending_keys, meter_factory):
    meter = meter_factory(krn=2, base_date=2014, key_state=Meter.KeyState.CONFIRMED)
    make_campaign()
    physical = virtual_meter(meter)
    response = vend(meter)
    assert [t["kind"] for t in response.json()["tokens"]] == ["credit"]
    assert physical.enter(response.json()["tokens"][0]["digits"]).accepted


def test_units_never_under_credit(api, vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory()
    response = vend(meter, amount="123.45")
    body = response.json()
    rate = Decimal(body["tariff"]["rate_per_kwh"])
    assert Decimal(body["units"]) * rate >= Decimal("123.45") - Decimal("0.01")
    token = decode_token(body["tokens"][0]["digits"], ea=meter.ea, decoder_key=virtual_meter(meter).decoder_key)
    assert token.units == Decimal(body["units"])
    tariff = body["tariff"]
    levies = sum(Decimal(x["amount"]) for x in tariff["levies"])
    parts = Decimal(tariff["energy_charge"]) + Decimal(tariff["vat"]) + levies
    assert parts == Decimal("123.45")


def test_management_token_for_care_is_accepted(vending_keys, in_campaign, meter_factory):
    from tokens.services import management_token_issue

    meter = meter_factory()
    physical = virtual_meter(meter)
    physical.tampered = True
    token = management_token_issue(meter=meter, subclass=5, value=0, actor_label="test")
    result = physical.enter(token.digits)
    assert result.accepted, result.message
    assert physical.tampered is False


# --- After the campaign service confirms (the register still shows the old key) -------------------------


def _confirmed_meter(vend, meter, *, with_codes: bool = True):
    from tests.vending.factories import make_campaign as _make_campaign

    enrollment = enroll(meter, _make_campaign())
    codes = vend(meter, reference="codes") if with_codes else None
    assert enrollment_confirm(enrollment=enrollment, actor_label="test")
    meter.refresh_from_db()
    assert (meter.krn, meter.base_date, meter.key_state) == (1, 1993, Meter.KeyState.CONFIRMED)
    return codes


def test_after_confirm_vends_and_care_decode_use_the_new_key(api, vend, vending_keys, meter_factory):
    from care.services import token_explain

    meter = meter_factory()
    physical = virtual_meter(meter)
    codes = _confirmed_meter(vend, meter)
    assert all(physical.enter(t["digits"]).accepted for t in codes.json()["tokens"])
    after = vend(meter, reference="after")
    assert [t["kind"] for t in after.json()["tokens"]] == ["credit"]
    credit = digits_of(after, "credit")[0]
    assert physical.enter(credit).accepted
    explained = token_explain(meter=meter, typed=credit)  # care's (and USSD's) decoder
    assert "key revision 2" in explained.details[0], explained
    old_token = IssuedToken.objects.filter(meter=meter, krn=1).first()
    assert old_token is None  # every token since the codes was made under the new key


def test_after_confirm_and_a_reimport_showing_the_new_key_tids_continue(api, vend, vending_keys, meter_factory):
    meter = meter_factory()
    physical = virtual_meter(meter)
    codes = _confirmed_meter(vend, meter)
    assert all(physical.enter(t["digits"]).accepted for t in codes.json()["tokens"])
    first = vend(meter, reference="after-1")
    # The utility's CSV now carries the new key: the import rewrites the register columns, not key_state.
    Meter.objects.filter(pk=meter.pk).update(krn=2, base_date=2014)
    meter.refresh_from_db()
    second = vend(meter, reference="after-2")
    assert [t["kind"] for t in second.json()["tokens"]] == ["credit"]
    tids = list(IssuedToken.objects.filter(meter=meter, krn=2).order_by("id").values_list("tid", flat=True))
    assert tids == sorted(set(tids)) and len(tids) == 3  # codes vend, after-1, after-2: one counter
    assert physical.enter(digits_of(first, "credit")[0]).accepted
    assert physical.enter(digits_of(second, "credit")[0]).accepted


def test_confirmed_without_codes_past_the_rollover_still_sells_with_codes(api, vend, vending_keys, meter_factory):
    meter = meter_factory()
    physical = virtual_meter(meter)
    _confirmed_meter(vend, meter, with_codes=False)
    response = vend(meter, reference="late")
    assert response.status_code == 201, response.content
    assert [t["kind"] for t in response.json()["tokens"]] == ["reset_code", "update_code", "credit"]
    assert all(physical.enter(t["digits"]).accepted for t in response.json()["tokens"])
    later = vend(meter, reference="later")  # now the key change set moves it: credit under the new key only
    assert [t["kind"] for t in later.json()["tokens"]] == ["credit"]
    assert physical.enter(digits_of(later, "credit")[0]).accepted

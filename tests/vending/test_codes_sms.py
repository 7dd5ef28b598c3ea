"""The codes SMS of a vend is the campaign's own template; a rollover onto the same key is refused."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from campaigns.services import campaign_create
from campaigns.texts import codes_render
from sms.models import Message
from tests.vending.factories import OLD_VK, SGC, enroll
from tokens.custody import vending_key_load
from tokens.models import KeyChangeSet, Vend
from tokens.services import vend_sms_resend
from tokens.sts import format_token

pytestmark = pytest.mark.django_db

TEMPLATE = "KPLC {meter} {name}: 1) {code1} 2) {code2} 3) {token} ({units}). Lost? *977#"


def _campaign(**overrides):
    fields = {
        "name": "Templates",
        "sgcs": [SGC],
        "from_krn": 1,
        "to_krn": 2,
        "deadline": "2024-08-31",
        "daily_capacity": 1000,
        "actor_label": "test",
    }
    return campaign_create(**{**fields, **overrides})


def test_the_codes_sms_uses_the_campaigns_template_name_included(vend, vending_keys, in_campaign, meter_factory):
    meter = meter_factory(customer_name="Jane Wanjiru")
    enroll(meter, _campaign(codes_template=TEMPLATE))
    response = vend(meter, reference="T-1")
    assert response.status_code == 201
    codes = [t["digits"] for t in response.json()["tokens"]]
    sms = Message.objects.get(vend_id=Vend.objects.get(reference="T-1").pk)
    expected = codes_render(
        template=TEMPLATE,
        meter_number=meter.meter_number,
        name="Jane Wanjiru",
        code1=format_token(codes[0]),
        code2=format_token(codes[1]),
        token=format_token(codes[2]),
        units=f"{response.json()['units']} kWh",
    )
    assert sms.body == expected and "Jane Wanjiru" in sms.body
    # A resend by care or USSD says the same, word for word.
    assert vend_sms_resend(vend=Vend.objects.get(reference="T-1"), actor_label="test")
    again = Message.objects.filter(vend_id=sms.vend_id).exclude(pk=sms.pk).get()
    assert again.body == expected


def test_a_rollover_onto_the_key_the_meter_holds_is_refused(vend, in_campaign, meter_factory):
    # A campaign row edited outside its service to move KRN 1 "to" KRN 1 on the same base date:
    # clearing the meter's TID memory onto the key it holds would let every used token work again.
    vending_key_load(sgc=SGC, krn=1, dkga="02", base_date=1993, key=OLD_VK, actor_label="test")
    campaign = _campaign()
    Campaign.objects.filter(pk=campaign.pk).update(to_krn=1, new_base_date=1993)
    campaign.refresh_from_db()
    meter = meter_factory()
    enroll(meter, campaign)
    response = vend(meter, reference="SAME-1")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "KEY_CHANGE_UNSAFE"
    assert KeyChangeSet.objects.count() == 0 and Vend.objects.count() == 0

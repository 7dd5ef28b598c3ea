"""Finding 1: /ussd/ believed whoever posted to it. Now the callback needs its secret path segment
(and, when configured, a source address in AT's networks), and USSD SMS go only to the registered phone."""

from __future__ import annotations

import pytest
from django.test import Client

from sms.models import Message
from tests.care.factories import enroll, make_meter, vend
from tokens.models import IssuedToken

pytestmark = pytest.mark.django_db

SECRET = "ussd-test-secret-0123456789"
OWNER = "+254711222333"


@pytest.fixture
def secret(settings) -> str:
    settings.USSD_CALLBACK_SECRET = SECRET
    return SECRET


def _post(path: str, phone: str, text: str, session: str = "s1", **extra: str):
    form = {"sessionId": session, "serviceCode": "*977#", "phoneNumber": phone, "text": text}
    return Client().post(path, form, **extra)


def test_last_tokens_are_not_shown_to_a_forged_post_of_the_owners_number(secret, campaign, partner) -> None:
    meter = make_meter(phone=OWNER)
    vend(partner, meter)
    tokens = list(IssuedToken.objects.filter(meter=meter).values_list("digits", flat=True))
    assert tokens
    response = _post("/ussd/", OWNER, f"2*{meter.meter_number}")
    assert response.status_code == 404
    assert response.content == b""
    # The same request to the real URL (as AT would send it) does show them: the secret is the guard.
    real = _post(f"/ussd/{SECRET}/", OWNER, f"2*{meter.meter_number}").content.decode().replace(" ", "")
    assert any(digits in real for digits in tokens)


@pytest.mark.parametrize("path", ["/ussd/", "/ussd/wrong-secret/", f"/ussd/{SECRET[:-1]}/"])
def test_the_callback_refuses_without_the_secret(secret, path) -> None:
    assert _post(path, OWNER, "").status_code == 404


def test_the_secret_url_answers(secret) -> None:
    response = _post(f"/ussd/{SECRET}/", OWNER, "")
    assert response.status_code == 200
    assert response.content.startswith(b"CON ")
    assert response["Cache-Control"] == "no-store"


def test_without_a_configured_secret_the_bare_path_is_the_demo_callback(settings) -> None:
    settings.USSD_CALLBACK_SECRET = ""
    assert _post("/ussd/", OWNER, "").status_code == 200
    assert _post("/ussd/anything/", OWNER, "").status_code == 404


def test_the_network_allowlist_holds_even_with_the_secret(secret, settings) -> None:
    settings.USSD_ALLOWED_NETWORKS = ["196.201.214.0/24"]
    assert _post(f"/ussd/{SECRET}/", OWNER, "").status_code == 404  # from 127.0.0.1
    assert _post(f"/ussd/{SECRET}/", OWNER, "", REMOTE_ADDR="196.201.214.10").status_code == 200
    # A forged X-Forwarded-For from a client that is not our proxy changes nothing.
    forged = _post(f"/ussd/{SECRET}/", OWNER, "", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="196.201.214.10")
    assert forged.status_code == 404
    # Through our proxy, the address it reports is the one judged.
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxied = _post(f"/ussd/{SECRET}/", OWNER, "", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="196.201.214.10")
    assert proxied.status_code == 200


def test_codes_sms_go_only_to_the_registered_phone_whoever_dials(secret, campaign) -> None:
    meter = make_meter(phone=OWNER)
    enroll(campaign, meter)
    dialers = [f"+2547{index:08d}" for index in range(40)]
    for index, phone in enumerate(dialers):
        response = _post(f"/ussd/{SECRET}/", phone, f"1*{meter.meter_number}", session=f"attack-{index}")
        assert response.status_code == 200
    assert not Message.objects.filter(recipient__in=dialers).exists()
    copies = Message.objects.filter(purpose="codes", meter=meter)
    assert copies.exists() and set(copies.values_list("recipient", flat=True)) == {OWNER}
    assert copies.count() <= 3  # and capped per meter per hour


def test_delivery_reports_honour_their_network_allowlist(client, settings) -> None:
    settings.SMS_DLR_ALLOWED_NETWORKS = ["196.201.214.0/24"]
    url = f"/sms/delivery-reports/{settings.SMS_DELIVERY_REPORT_SECRET}/"
    form = {"id": "ATXid_unknown", "status": "Success"}
    assert client.post(url, form).status_code == 404
    assert client.post(url, form, REMOTE_ADDR="196.201.214.7").status_code == 200

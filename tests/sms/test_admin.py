"""SMS admin: read-only, searchable by phone / meter / provider id, token digits masked and audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accounts.roles import AUDITOR, CARE_SUPERVISOR
from audit.models import AuditEvent
from sms.models import DeliveryReport, Message

pytestmark = pytest.mark.django_db

TOKEN = "1234-5678-9012-3456-7890"
CODES_BODY = f"KPLC 54000000001 type in order: 1) {TOKEN} 2) 2222 3333 4444 5555 6666 3) 77778888999900001111"


@pytest.fixture
def login(client, staff):
    """login(role) -> a staff user in that role, logged in on `client`."""

    def log_in(role: str) -> User:
        user = staff(role)
        client.force_login(user)
        return user

    return log_in


@pytest.fixture
def messages(meter_factory):
    meter = meter_factory(phone="+254712345678")
    codes = Message.objects.create(
        recipient="+254712345678", body=CODES_BODY, purpose="codes", status="sent", provider_message_id="ATXid_c1"
    )
    notice = Message.objects.create(
        recipient="+254799000111", body="KPLC: notice", purpose="notice", status="delivered", meter=meter
    )
    return codes, notice, meter


def test_auditors_see_lists_but_can_change_nothing(client, login, messages):
    login(AUDITOR)
    codes, notice, _ = messages
    assert client.get("/admin/sms/message/").status_code == 200
    assert client.get("/admin/sms/deliveryreport/").status_code == 200
    assert client.get("/admin/sms/message/add/").status_code == 403
    assert client.get(f"/admin/sms/message/{codes.pk}/delete/").status_code == 403
    page = client.get(f"/admin/sms/message/{codes.pk}/change/").content.decode()
    assert 'name="_save"' not in page  # a view page, no form to submit


def test_token_digits_are_masked_without_the_permission(client, login, messages):
    login(AUDITOR)
    codes, _, _ = messages
    page = client.get(f"/admin/sms/message/{codes.pk}/change/").content.decode()
    assert "••••-••••-••••-••••-••••" in page and "54000000001" in page  # the meter number stays
    for digits in ("1234-5678", "2222 3333", "7777888899990000"):
        assert digits not in page
    assert "7777888899990000" not in client.get("/admin/sms/message/").content.decode()
    assert not AuditEvent.objects.filter(action="sms.message_digits_viewed").exists()


def test_supervisors_see_digits_and_each_view_is_audited(client, login, messages):
    user = login(CARE_SUPERVISOR)
    codes, notice, _ = messages
    page = client.get(f"/admin/sms/message/{codes.pk}/change/").content.decode()
    assert TOKEN in page
    event = AuditEvent.objects.get(action="sms.message_digits_viewed")
    assert event.actor_id == user.pk and event.object_id == str(codes.pk)
    assert "1234" not in str(event.details)
    # A notice carries no digits: nothing to audit.
    client.get(f"/admin/sms/message/{notice.pk}/change/")
    assert AuditEvent.objects.filter(action="sms.message_digits_viewed").count() == 1
    # The list never shows digits, whoever looks.
    assert "7777888899990000" not in client.get("/admin/sms/message/").content.decode()


@pytest.mark.parametrize("term", ["0712 345 678", "ATXid_c1"])
def test_search_by_phone_or_provider_id(client, login, messages, term):
    login(AUDITOR)
    codes, notice, _ = messages
    page = client.get("/admin/sms/message/", {"q": term}).content.decode()
    assert f"/admin/sms/message/{codes.pk}/change/" in page
    assert f"/admin/sms/message/{notice.pk}/change/" not in page


def test_search_by_meter_number_and_filters(client, login, messages):
    login(AUDITOR)
    codes, notice, meter = messages
    page = client.get("/admin/sms/message/", {"q": meter.meter_number}).content.decode()
    assert f"/admin/sms/message/{notice.pk}/change/" in page
    assert f"/admin/sms/message/{codes.pk}/change/" not in page
    page = client.get("/admin/sms/message/", {"purpose__exact": "codes"}).content.decode()
    assert f"/admin/sms/message/{codes.pk}/change/" in page
    assert f"/admin/sms/message/{notice.pk}/change/" not in page


def test_delivery_reports_search_by_phone(client, login):
    login(AUDITOR)
    DeliveryReport.objects.create(provider_message_id="ATXid_r1", status="Success", phone_number="+254712345678")
    DeliveryReport.objects.create(provider_message_id="ATXid_r2", status="Failed", phone_number="+254799000111")
    page = client.get("/admin/sms/deliveryreport/", {"q": "0712345678"}).content.decode()
    assert "ATXid_r1" in page and "ATXid_r2" not in page

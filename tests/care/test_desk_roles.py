"""The care desk per role: who sees what, who may do what, and what lands in the audit log."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from accounts.roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT, CARE_SUPERVISOR
from audit.models import AuditEvent
from care.models import CareCase
from meters.models import Meter
from sms.models import Message
from tests.care.factories import enroll, make_meter, vend
from tokens.models import IssuedToken
from tokens.sts import format_token as token_display

pytestmark = pytest.mark.django_db


def login(role: str) -> tuple[Client, User]:
    user = User.objects.create_user(role.lower().replace(" ", "_"), password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def story(campaign, partner):
    meter = make_meter()
    enroll(campaign, meter)
    sale = vend(partner, meter)
    return meter, sale


def action(client: Client, meter: Meter, name: str, **data: str):
    return client.post(reverse("admin:meters_meter_care", args=[meter.pk, name]), data)


def page(client: Client, meter: Meter) -> str:
    response = client.get(reverse("admin:meters_meter_change", args=[meter.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("role", [CAMPAIGN_MANAGER, CARE_AGENT, CARE_SUPERVISOR, AUDITOR])
def test_every_role_sees_the_whole_story_but_never_digits_on_the_page(story, role):
    meter, sale = story
    client, _ = login(role)
    html = page(client, meter)
    for section in ("Key state", "Campaign enrollment", "SMS messages", "Vends and tokens issued", "Care cases"):
        assert section in html
    assert sale.reference in html and "codes_issued" in html or "Codes issued" in html
    digits = sale.credit_token.digits
    assert digits not in html and token_display(digits) not in html
    assert "****-****-****-****-" + digits[-4:] in html


def test_care_agent_can_resend_confirm_flag_and_open_cases_but_not_digits_or_management(story):
    meter, sale = story
    client, _ = login(CARE_AGENT)
    html = page(client, meter)
    assert "Resend update codes" in html and "Decode and explain" in html
    assert "Issue a management token" not in html and "Show token digits" not in html

    before = Message.objects.count()
    assert action(client, meter, "resend-codes").status_code == 302
    assert action(client, meter, "resend-token").status_code == 302
    assert Message.objects.count() == before + 2
    assert action(client, meter, "open-case", kind="other", summary="Customer called").status_code == 302
    assert CareCase.objects.filter(meter=meter, source="agent").exists()

    assert action(client, meter, "management-token", kind="clear_tamper").status_code == 403
    assert action(client, meter, "reveal").status_code == 403
    assert not IssuedToken.objects.filter(meter=meter, kind="management").exists()

    assert action(client, meter, "confirm").status_code == 302
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CONFIRMED
    actions = set(AuditEvent.objects.filter(actor__username="care_agent").values_list("action", flat=True))
    assert {"care.codes_sent", "vend.sms_resent", "care_case.opened", "meter.confirmed"} <= actions


def test_care_agent_flags_a_meter_for_a_field_visit(story):
    meter, _ = story
    client, _ = login(CARE_AGENT)
    assert action(client, meter, "flag", reason="meter too old for KCT").status_code == 302
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.NON_COMPLIANT
    queue = client.get(reverse("admin:care_fieldvisitmeter_changelist")).content.decode()
    assert meter.meter_number in queue


def test_supervisor_issues_a_management_token_and_sees_digits_each_view_audited(story):
    meter, sale = story
    client, _ = login(CARE_SUPERVISOR)
    # On the old key, past the rollover, no token can be made: the desk says so instead of failing.
    refused = action(client, meter, "management-token", kind="clear_tamper")
    assert refused.status_code == 302
    shown = client.get(refused.url).content.decode()
    assert "still on key revision 1, which the TID rollover retired" in shown
    assert "Have the customer type update code 1, then update code 2" in shown
    Meter.objects.filter(pk=meter.pk).update(key_state=Meter.KeyState.CONFIRMED)
    response = action(client, meter, "management-token", kind="clear_tamper")
    assert response.status_code == 200
    token = IssuedToken.objects.get(meter=meter, kind="management")
    assert token.subclass == 5
    assert token_display(token.digits) in response.content.decode()
    assert AuditEvent.objects.filter(action="token.management_issued", actor__username="care_supervisor").exists()

    revealed = action(client, meter, "reveal")
    assert token_display(sale.credit_token.digits) in revealed.content.decode()
    action(client, meter, "reveal")
    views = AuditEvent.objects.filter(action="token.digits_viewed", object_id=str(meter.pk))
    assert views.count() == 2
    assert all(sale.credit_token.digits not in str(v.details) for v in views)


def test_auditor_cannot_change_anything(story):
    meter, _ = story
    client, _ = login(AUDITOR)
    html = page(client, meter)
    assert "Care actions" in html and '<form method="post" action="/admin/meters' not in html
    for name, data in [
        ("resend-codes", {}),
        ("resend-token", {}),
        ("confirm", {}),
        ("flag", {"reason": "x"}),
        ("open-case", {"kind": "other", "summary": "x"}),
        ("decode", {"digits": "1" * 20}),
        ("reveal", {}),
        ("management-token", {"kind": "clear_tamper"}),
    ]:
        assert action(client, meter, name, **data).status_code == 403, name
    # The admin's own change/add/delete views refuse too.
    assert (
        client.post(reverse("admin:meters_meter_change", args=[meter.pk]), {"phone": "+254700000000"}).status_code
        == 403
    )
    assert client.get(reverse("admin:care_carecase_add")).status_code == 403
    event = AuditEvent.objects.first()
    assert client.get(reverse("admin:audit_auditevent_change", args=[event.pk])).status_code == 200
    assert client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    meter.refresh_from_db()
    assert meter.key_state == Meter.KeyState.CODES_ISSUED
    assert not AuditEvent.objects.filter(actor__username="auditor").exists()


def test_audit_log_is_not_editable_even_by_a_supervisor(story):
    client, _ = login(CARE_SUPERVISOR)
    event = AuditEvent.objects.first()
    assert client.post(reverse("admin:audit_auditevent_change", args=[event.pk]), {"action": "x"}).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403


def test_find_a_customer_by_meter_phone_account_or_token_digits(story):
    meter, sale = story
    client, _ = login(CARE_AGENT)
    changelist = reverse("admin:meters_meter_changelist")
    local_phone = "0" + meter.phone[4:7] + " " + meter.phone[7:]
    spaced = " ".join(sale.credit_token.digits[i : i + 4] for i in range(0, 20, 4))
    for term in (meter.meter_number, local_phone, meter.account_number, spaced, sale.key_change_set.codes[0]):
        html = client.get(changelist, {"q": term}).content.decode()
        assert f"/admin/meters/meter/{meter.pk}/change/" in html, term
    html = client.get(changelist, {"q": "9" * 20}).content.decode()
    assert f"/admin/meters/meter/{meter.pk}/change/" not in html


def test_case_queue_assign_comment_close(story):
    meter, _ = story
    client, user = login(CARE_AGENT)
    case = CareCase.objects.create(meter=meter, kind="other", source="ussd", opened_by="ussd:+254700000001")
    queue = client.get(reverse("admin:care_carecase_changelist"), follow=True)
    assert case.reference in queue.content.decode()
    url = reverse("admin:care_carecase_change", args=[case.pk])
    inline = {"comments-TOTAL_FORMS": "0", "comments-INITIAL_FORMS": "0"}
    response = client.post(
        url, {"assigned_to": user.pk, "add_comment": "Called back", "close_with_resolution": "", **inline}
    )
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.assigned_to == user and case.comments.get().body == "Called back"
    client.post(
        url, {"assigned_to": user.pk, "add_comment": "", "close_with_resolution": "Codes retyped, OK", **inline}
    )
    case.refresh_from_db()
    assert case.status == "closed" and case.resolution == "Codes retyped, OK"
    actions = list(AuditEvent.objects.filter(object_type="care.carecase").values_list("action", flat=True))
    assert {"care_case.assigned", "care_case.commented", "care_case.closed"} <= set(actions)


def test_meters_whose_sms_keep_failing_are_queued(story):
    meter, _ = story
    Message.objects.filter(meter=meter).update(status="failed", failure_reason="UserInBlacklist")
    Message.objects.create(
        meter=meter,
        recipient=meter.phone,
        body="x",
        purpose="care",
        status="rejected",
        failure_reason="UserInBlacklist",
    )
    client, _ = login(CARE_AGENT)
    html = client.get(reverse("admin:care_failingsmsmeter_changelist")).content.decode()
    assert meter.meter_number in html and "UserInBlacklist" in html

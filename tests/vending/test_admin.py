"""The vend list and the reversal queue in the admin: care sees them, only supervisors decide."""

from __future__ import annotations

import pytest

from accounts.roles import CARE_AGENT, CARE_SUPERVISOR
from audit.models import AuditEvent
from tokens.models import ReversalRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def reversal(api, vend, vending_keys, in_campaign, meter_factory) -> ReversalRequest:
    assert vend(meter_factory.create(), reference="ADM-1").status_code == 201
    response = api.post("/api/v1/vends/ADM-1/reversal/", {"reason": "wrong meter"}, format="json")
    assert response.status_code == 201
    return ReversalRequest.objects.select_related("vend").get(vend__reference="ADM-1")


def test_the_vend_list_never_shows_token_digits(client, staff, reversal):
    client.force_login(staff(CARE_AGENT, "agent1"))
    vend = reversal.vend
    listing = client.get("/admin/tokens/vend/", {"q": "ADM-1"})
    page = client.get(f"/admin/tokens/vend/{vend.pk}/change/")
    assert listing.status_code == 200 and "ADM-1" in listing.content.decode()
    assert page.status_code == 200
    digits = [vend.credit_token.digits, *(vend.key_change_set.codes if vend.key_change_set else [])]
    for content in (listing.content.decode(), page.content.decode()):
        assert all(token not in content for token in digits)


def test_a_care_agent_sees_the_reversal_queue_but_cannot_decide(client, staff, reversal):
    client.force_login(staff(CARE_AGENT, "agent2"))
    response = client.get("/admin/tokens/reversalrequest/")
    assert response.status_code == 200 and "wrong meter" in response.content.decode()
    action_form = response.context.get("action_form")
    choices = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "approve" not in choices
    client.post("/admin/tokens/reversalrequest/", {"action": "approve", "_selected_action": [reversal.pk]})
    reversal.refresh_from_db()
    assert reversal.status == ReversalRequest.Status.OPEN


def test_a_supervisor_approves_a_reversal_and_it_is_audited(client, staff, reversal):
    client.force_login(staff(CARE_SUPERVISOR, "super1"))
    response = client.get("/admin/tokens/reversalrequest/")
    assert "approve" in [name for name, _ in response.context["action_form"].fields["action"].choices]
    response = client.post("/admin/tokens/reversalrequest/", {"action": "approve", "_selected_action": [reversal.pk]})
    assert response.status_code == 302
    reversal.refresh_from_db()
    assert reversal.status == ReversalRequest.Status.APPROVED and reversal.resolved_by == "user:super1"
    assert AuditEvent.objects.filter(action="vend.reversal_approved", actor_label="user:super1").exists()

"""After the sale: fetch it again, reprint it, resend its SMS, and record a reversal request.

An STS token cannot be revoked once issued: a reversal is a request for care, never an undo.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db import transaction

from audit.services import audit_record
from campaigns.models import Campaign
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from partners.models import Partner
from sms.services import message_queue

from .. import errors
from ..models import ReversalRequest, Vend
from ..receipts import vend_sms_text
from ..selectors import vend_by_reference
from .vend import vend_response_body


def vend_get(*, partner: Partner, reference: str) -> Vend:
    vend = vend_by_reference(partner_id=partner.pk, reference=reference)
    if vend is None:
        raise errors.VendNotFound(f"No vend with reference {reference!r} for this partner.")
    return vend


def vend_reprint(*, partner: Partner, reference: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The original receipt marked as a reprint (same tokens); each reprint is audited."""
    vend = vend_get(partner=partner, reference=reference)
    body = json.loads(vend_response_body(vend))
    body["reprint"] = True
    body["reprinted_at"] = clock.api_timestamp(now or clock.now())
    audit_record(action="vend.reprinted", actor_label=f"partner:{partner.pk}", target=vend, reference=reference)
    return body


def _vend_digits(vend: Vend) -> tuple[list[str], str]:
    """The update codes and the credit token the vend gave: from its stored response while the
    replay window keeps it, then from the rows (the key change set and the issued token)."""
    if vend.response_body:
        items = json.loads(vend.response_body)["tokens"]
        return [t["digits"] for t in items if t["kind"] != "credit"], next(
            t["digits"] for t in items if t["kind"] == "credit"
        )
    codes = list(vend.key_change_set.codes) if vend.key_change_set is not None else []
    return codes, vend.credit_token.digits


def vend_sms_resend(*, vend: Vend, actor: Any = None, actor_label: str = "", recipient: str = "") -> bool:
    """Queue the vend's SMS again (same digits, same wording). Audited; False when there is no phone."""
    meter = vend.meter
    codes, credit = _vend_digits(vend)
    campaign = (
        Campaign.objects.filter(key_change_sets__pk=vend.key_change_set_id).first() if vend.key_change_set_id else None
    )
    phone = recipient or vend.customer_phone or meter.phone
    if not phone:
        return False
    text = vend_sms_text(
        meter=meter, campaign=campaign, codes=codes, token=credit, units=vend.units, amount=vend.amount
    )
    with transaction.atomic():
        message_queue(recipient=phone, body=text, purpose="codes" if codes else "token", meter=meter, vend_id=vend.pk)
        audit_record(action="vend.sms_resent", actor=actor, actor_label=label_for(actor, actor_label), target=vend)
    return True


def reversal_request_create(*, partner: Partner, reference: str, reason: str) -> tuple[ReversalRequest, bool]:
    """Record a reversal request for care. Returns (request, created); a repeat returns the first one."""
    vend = vend_get(partner=partner, reference=reference)
    with transaction.atomic():
        request, created = ReversalRequest.objects.get_or_create(
            vend=vend, defaults={"reason": reason, "requested_by": f"partner:{partner.pk}"}
        )
        if created:
            audit_record(
                action="vend.reversal_requested",
                actor_label=f"partner:{partner.pk}",
                target=vend,
                reference=reference,
                reason=reason,
            )
    return request, created


def reversal_request_resolve(
    *, reversal: ReversalRequest, approve: bool, note: str, actor: Any = None, actor_label: str = ""
) -> bool:
    """Care closes a reversal request. Tokens stay issued either way; a refund happens outside STS."""
    status = ReversalRequest.Status.APPROVED if approve else ReversalRequest.Status.REJECTED
    label = label_for(actor, actor_label)
    with transaction.atomic():
        updated = ReversalRequest.objects.filter(pk=reversal.pk, status=ReversalRequest.Status.OPEN).update(
            status=status, resolved_at=clock.now(), resolved_by=label, resolution_note=note
        )
        if updated:
            audit_record(action=f"vend.reversal_{status}", actor=actor, actor_label=label, target=reversal.vend)
    return bool(updated)

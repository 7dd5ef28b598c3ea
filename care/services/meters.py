"""The desk's actions on a meter: resend codes or the last token, confirm, flag for a field
visit, reveal token digits. State changes go through campaigns, which owns them."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import audit_record
from campaigns import services as campaigns
from campaigns.models import Enrollment
from campaigns.texts import codes_only_render
from kplc_sts.actors import actor_label as label_for
from meters.models import Meter
from sms.services import message_queue
from tokens.models import IssuedToken
from tokens.services import meter_last_tokens, meter_update_codes, vend_sms_resend

from .cases import CareError


def meter_codes_send(*, meter: Meter, recipient: str = "", actor: Any = None, actor_label: str = "") -> bool:
    """Queue the meter's update codes by SMS (the same digits every time). False: no phone."""
    key_change_set = meter_update_codes(meter=meter)
    if key_change_set is None:
        raise CareError(f"Meter {meter.meter_number} has no update codes issued.")
    phone = recipient or meter.phone
    if not phone:
        return False
    label = label_for(actor, actor_label)
    with transaction.atomic():
        message_queue(
            recipient=phone,
            body=codes_only_render(meter_number=meter.meter_number, codes=list(key_change_set.codes)),
            purpose="codes",
            meter=meter,
        )
        audit_record(
            action="care.codes_sent", actor=actor, actor_label=label, target=meter, to_registered=phone == meter.phone
        )
    return True


def meter_last_token_send(*, meter: Meter, actor: Any = None, actor_label: str = "") -> bool:
    """Queue the SMS of the meter's last vend again, to the meter's registered phone (same digits)."""
    last = meter_last_tokens(meter=meter, limit=1)
    if not last or last[0].vend is None:
        raise CareError(f"No token has been sold for meter {meter.meter_number}.")
    if not meter.phone:
        return False
    return vend_sms_resend(
        vend=last[0].vend, actor=actor, actor_label=label_for(actor, actor_label), recipient=meter.phone
    )


def meter_confirm(
    *, meter: Meter, actor: Any = None, actor_label: str = "", reason: str = "", origin: str = Enrollment.Origin.CARE
) -> bool:
    """The meter took the codes: its enrollment (or one recorded now) becomes confirmed."""
    label = label_for(actor, actor_label)
    with transaction.atomic():
        changed = campaigns.meter_mark_confirmed(meter=meter, origin=origin, actor_label=label, reason=reason)
        if changed:
            audit_record(action="meter.confirmed", actor=actor, actor_label=label, target=meter, reason=reason[:200])
    meter.refresh_from_db()
    return changed


def meter_flag_non_compliant(*, meter: Meter, reason: str, actor: Any = None, actor_label: str = "") -> bool:
    """The meter cannot take the codes: it joins the field-visit queue and leaves the to-do count."""
    label = label_for(actor, actor_label)
    with transaction.atomic():
        changed = campaigns.meter_mark_non_compliant(
            meter=meter, origin=Enrollment.Origin.CARE, actor_label=label, reason=reason
        )
        if changed:
            audit_record(
                action="meter.flagged_non_compliant", actor=actor, actor_label=label, target=meter, reason=reason[:200]
            )
    meter.refresh_from_db()
    return changed


def token_digits_reveal(*, meter: Meter, actor: Any, limit: int = 20) -> list[IssuedToken]:
    """The meter's issued tokens with digits, for staff holding tokens.view_token_digits. Audited.

    The caller checks the permission; this records that digits were shown, never the digits.
    """
    tokens = list(IssuedToken.objects.filter(meter=meter).select_related("vend").order_by("-issued_at", "-id")[:limit])
    audit_record(
        action="token.digits_viewed", actor=actor, target=meter, token_ids=[t.pk for t in tokens], count=len(tokens)
    )
    return tokens

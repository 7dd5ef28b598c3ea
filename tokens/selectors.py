"""Reads about a meter's tokens and keys, for the vend, the partner API, USSD and care."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kplc_sts import clock
from kplc_sts.db import by_vendor
from meters.models import Meter

from . import _pg, _portable, errors
from .models import IssuedToken, KeyChangeSet, Vend, VendReference
from .plan import VendFacts, vend_plan

statements = by_vendor(pg=_pg, portable=_portable)


def vend_facts_load(*, meter_number: str, now: dt.datetime | None = None) -> VendFacts | None:
    """The meter and what its vend plan needs (open enrollment, newest key change set from the
    register key, covering campaign): one statement on PostgreSQL. None if there is no such meter."""
    return statements.vend_facts_load(meter_number=meter_number, now=now or clock.now())


def vend_by_reference(*, partner_id: int, reference: str) -> Vend | None:
    """The partner's vend with this reference, through VendReference: its id and created_at name
    the one partition to read, whichever month it was sold in."""
    found = VendReference.objects.filter(partner_id=partner_id, reference=reference).values_list(
        "vend_id", "created_at"
    )
    row = found.first()
    if row is None:
        return None
    return Vend.objects.filter(pk=row[0], created_at=row[1]).first()


def meter_update_codes(*, meter: Meter) -> KeyChangeSet | None:
    """The key change set the meter should type (latest one from its current register key), or None.

    Read-only: USSD and care show and resend these; they are made by a vend or `key_change_set_issue`.
    """
    return (
        KeyChangeSet.objects.filter(meter=meter, from_sgc=meter.sgc, from_krn=meter.krn)
        .order_by("-created_at", "-id")
        .first()
    )


def meter_last_tokens(*, meter: Meter, limit: int = 3) -> list[IssuedToken]:
    """The meter's most recent credit tokens, newest first (with .vend loaded)."""
    return list(
        IssuedToken.objects.filter(meter=meter, kind=IssuedToken.Kind.CREDIT)
        .select_related("vend")
        .order_by("-issued_at", "-id")[:limit]
    )


def mask_name(name: str) -> str:
    """'Jane Wanjiru' -> 'J*** W******': enough for a cashier to confirm, not to harvest."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())


def meter_summary(*, meter: Meter, now: dt.datetime | None = None) -> dict[str, Any]:
    """What a partner may see before selling: masked name, region, can-vend, pending update."""
    now = now or clock.now()
    reason = None
    pending = False
    facts = vend_facts_load(meter_number=meter.meter_number, now=now)
    try:
        if facts is None:
            raise errors.UnknownMeter(f"No meter {meter.meter_number} in the register.")
        pending = vend_plan(facts, now=now).carries_codes
    except errors.VendError as exc:
        reason = exc.code
    return {
        "meter_number": meter.meter_number,
        "customer_name": mask_name(meter.customer_name),
        "region": meter.region,
        "can_vend": reason is None,
        "reason": reason,
        "pending_update": pending,
        "key_state": meter.key_state,
    }

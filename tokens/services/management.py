"""Management tokens (clear tamper, clear credit, power limit) issued by care supervisors."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.actors import actor_label as label_for
from meters.models import Meter

from ..digests import token_digest_index_issued
from ..keys import meter_decoder_key
from ..models import IssuedToken
from ..plan import meter_current_key
from ..selectors import meter_update_codes
from ..sts import management_token, pan_from_meter_number
from ..tids import tid_allocate, tid_counter_lock


def management_token_issue(
    *,
    meter: Meter,
    subclass: int,
    value: int = 0,
    actor: Any = None,
    actor_label: str = "",
    now: dt.datetime | None = None,
) -> IssuedToken:
    """Issue a class 2 management token under the meter's current key, with a fresh TID. Audited.

    Subclasses (tokens.sts.management_token): 0 set maximum power limit (value: watts field),
    1 clear credit (0xFFFF all registers), 5 clear tamper (value 0), 6 set phase unbalance limit.

    The caller checks the `tokens.issue_management_token` permission.
    """
    now = now or clock.now()
    key = meter_current_key(meter, meter_update_codes(meter=meter))
    pan = pan_from_meter_number(meter.meter_number)
    label = label_for(actor, actor_label)
    with transaction.atomic():
        counter = tid_counter_lock(meter=meter, key=key)
        tid = tid_allocate(counter=counter, key=key, now=now)
        decoder_key = meter_decoder_key(meter=meter, key=key, pan=pan)
        try:
            digits = management_token(
                ea=meter.ea, decoder_key=decoder_key, subclass=subclass, tid=tid, value=value, ken=key.ken
            )
        finally:
            del decoder_key
        token = IssuedToken.objects.create(
            meter=meter,
            kind=IssuedToken.Kind.MANAGEMENT,
            token_class=2,
            subclass=subclass,
            sgc=key.sgc,
            krn=key.krn,
            base_date=key.base_date,
            tid=tid,
            value=value,
            digits=digits,
            issued_by=label,
        )
        token_digest_index_issued(token=token)
        audit_record(
            action="token.management_issued",
            actor=actor,
            actor_label=label,
            target=token,
            subclass=subclass,
            value=value,
        )
    return token

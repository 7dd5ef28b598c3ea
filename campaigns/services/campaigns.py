"""Creating a campaign: what meters move from and to, the deadline and the daily capacity."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from audit.services import audit_record
from kplc_sts.actors import actor_label as label_for

from ..errors import CampaignError
from ..models import Campaign
from ..texts import validate_codes_template, validate_notice_template


def campaign_create(
    *,
    name: str,
    sgcs: Sequence[str],
    from_krn: int,
    to_krn: int,
    deadline: dt.date,
    daily_capacity: int,
    new_base_date: int = 2014,
    rollover: bool = True,
    new_ken: int = 255,
    notice_template: str | None = None,
    codes_template: str | None = None,
    actor: Any = None,
    actor_label: str = "",
) -> Campaign:
    sgcs = sorted({str(sgc).strip() for sgc in sgcs})
    if not sgcs or not all(len(sgc) == 6 and sgc.isdigit() for sgc in sgcs):
        raise CampaignError("every supply group code must be 6 digits")
    if not (1 <= from_krn <= 9 and 1 <= to_krn <= 9) or from_krn == to_krn:
        raise CampaignError("KRNs must be 1..9 and differ")
    if daily_capacity <= 0:
        raise CampaignError("daily capacity must be positive")
    templates: dict[str, str] = {}
    if notice_template is not None:
        validate_notice_template(notice_template)
        templates["notice_template"] = notice_template
    if codes_template is not None:
        validate_codes_template(codes_template)
        templates["codes_template"] = codes_template
    label = label_for(actor, actor_label)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=name,
            sgcs=sgcs,
            from_krn=from_krn,
            to_krn=to_krn,
            deadline=deadline,
            daily_capacity=daily_capacity,
            new_base_date=new_base_date,
            rollover=rollover,
            new_ken=new_ken,
            created_by=label[:100],
            **templates,
        )
        audit_record(
            action="campaign.created",
            actor=actor,
            actor_label=label,
            target=campaign,
            sgcs=sgcs,
            from_krn=from_krn,
            to_krn=to_krn,
            daily_capacity=daily_capacity,
        )
    return campaign

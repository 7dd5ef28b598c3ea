"""Key change sets: a meter's update codes (1 and 2) for a campaign, made once and stored.

A key change token has no TID, so the same digits stay valid until the meter takes them: every
vend, USSD request and resend shows the identical set. It is made under the new key's TID counter
lock, so a vend racing a USSD request gets the same codes.
"""

from __future__ import annotations

import logging

from django.db import transaction

from campaigns import services as campaigns
from campaigns.models import Campaign
from meters.models import Meter

from .. import errors
from ..digests import token_digest_index_key_change_set
from ..keys import MeterKey, meter_decoder_key, vending_key_cached
from ..models import KeyChangeSet
from ..sts import SameKeyRollover, check_rollover_key_revision, key_change_tokens, pan_from_meter_number
from ..tids import tid_counter_lock

logger = logging.getLogger(__name__)


def key_change_set_under_lock(*, meter: Meter, campaign: Campaign, pan: str) -> KeyChangeSet:
    """The meter's codes for `campaign`, made once. Call with the new key's counter locked."""
    existing = KeyChangeSet.objects.filter(meter=meter, campaign=campaign).first()
    if existing is not None:
        return existing
    old, new = MeterKey.register(meter), MeterKey.campaign_target(meter, campaign)
    try:
        if campaign.rollover:
            _rollover_check(meter=meter, old=old, new=new)
        codes = key_change_tokens(
            ea=meter.ea,
            old_key=meter_decoder_key(meter=meter, key=old, pan=pan),
            new_key=meter_decoder_key(meter=meter, key=new, pan=pan),
            new_krn=new.krn,
            new_kt=meter.kt,
            new_ti=meter.ti,
            new_ken=new.ken,
            rollover=campaign.rollover,
            # 128-bit key sets always carry the SGC; a 64-bit set only when the group changes (3 codes).
            new_sgc=new.sgc if meter.ea == "11" or new.sgc != old.sgc else None,
        )
    except SameKeyRollover:
        logger.error("campaign %s would roll meter %s over onto the key it holds: refused", campaign.pk, meter.pk)
        raise errors.KeyChangeUnsafe(
            f"The update for meter {meter.meter_number} would keep its key while clearing its token memory, "
            "which would let used tokens work again. Vending for it is held until the campaign's keys are fixed."
        ) from None
    key_change_set = KeyChangeSet.objects.create(
        meter=meter,
        campaign=campaign,
        from_sgc=old.sgc,
        from_krn=old.krn,
        from_base_date=old.base_date,
        to_sgc=new.sgc,
        to_krn=new.krn,
        to_base_date=new.base_date,
        to_ken=new.ken,
        rollover=campaign.rollover,
        codes=list(codes),
    )
    token_digest_index_key_change_set(key_change_set=key_change_set)
    return key_change_set


def _rollover_check(*, meter: Meter, old: MeterKey, new: MeterKey) -> None:
    """Refuse (SameKeyRollover) a rollover whose key revision, vending key and base date are all
    unchanged: clearing the TID memory onto the same key would replay used tokens."""
    check_rollover_key_revision(
        old_krn=old.krn,
        new_krn=new.krn,
        old_vending_key=vending_key_cached(old.sgc, old.krn),
        new_vending_key=vending_key_cached(new.sgc, new.krn),
        old_base_date=old.base_date,
        new_base_date=new.base_date,
    )


def key_change_set_issue(
    *, meter: Meter, campaign: Campaign, actor_label: str, origin: str, reason: str = ""
) -> KeyChangeSet:
    """Make (once) and return the meter's codes for `campaign` without a sale, e.g. for USSD *977#.

    Records the codes as issued (the meter's enrollment, or one outside any batch). Same lock as a
    vend, so a vend racing it gets the same codes.
    """
    pan = pan_from_meter_number(meter.meter_number)
    with transaction.atomic():
        tid_counter_lock(meter=meter, key=MeterKey.campaign_target(meter, campaign))
        key_change_set = key_change_set_under_lock(meter=meter, campaign=campaign, pan=pan)
        campaigns.meter_mark_codes_issued(
            meter=meter, campaign=campaign, origin=origin, actor_label=actor_label, reason=reason
        )
    return key_change_set

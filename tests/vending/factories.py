"""Vending test data: vending keys, partners with API keys, campaigns with an open batch."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.utils import timezone

from campaigns.models import Batch, Campaign, Enrollment
from meters.models import Meter
from partners.models import Partner
from partners.services import partner_api_key_create, partner_create
from tokens.custody import vending_key_load
from tokens.sts import VirtualMeter, derive_decoder_key, pan_from_meter_number

SGC = "600675"
# Odd-parity DES vending keys for the supply group's old (KRN 1, 1993) and new (KRN 2, 2014) revisions.
OLD_VK = bytes.fromhex("0123456789ABCDEF")
NEW_VK = bytes.fromhex("FEDCBA9876543210")


def load_vending_keys(sgc: str = SGC) -> None:
    vending_key_load(sgc=sgc, krn=1, dkga="02", base_date=1993, key=OLD_VK, actor_label="test")
    vending_key_load(sgc=sgc, krn=2, dkga="02", base_date=2014, key=NEW_VK, actor_label="test")


def make_partner(name: str = "Test Bank", **limits: Any) -> tuple[Partner, str]:
    partner = partner_create(name=name, **limits)
    _api_key, raw_key = partner_api_key_create(partner=partner, name="test")
    return partner, raw_key


def make_campaign(*, sgcs: tuple[str, ...] = (SGC,), status: str = Campaign.Status.ACTIVE) -> Campaign:
    return Campaign.objects.create(
        name="Update Token Meter Yako",
        sgcs=list(sgcs),
        from_krn=1,
        to_krn=2,
        new_base_date=2014,
        rollover=True,
        new_ken=255,
        deadline=dt.date(2024, 8, 31),
        daily_capacity=100_000,
        status=status,
    )


def enroll(meter: Meter, campaign: Campaign, *, state: str = Enrollment.State.NOTIFIED) -> Enrollment:
    now = timezone.now()
    batch = campaign.batches.filter(status=Batch.Status.OPEN).first() or Batch.objects.create(
        campaign=campaign,
        number=campaign.batches.count() + 1,
        selection_limit=1000,
        scheduled_at=now - dt.timedelta(hours=1),
        status=Batch.Status.OPEN,
    )
    return Enrollment.objects.create(
        campaign=campaign, meter=meter, batch=batch, state=state, enrolled_at=now, state_changed_at=now
    )


def decoder_key(meter: Meter, *, krn: int) -> bytes:
    return derive_decoder_key(
        dkga=meter.dkga,
        vending_key=OLD_VK if krn == 1 else NEW_VK,
        pan=pan_from_meter_number(meter.meter_number),
        sgc=meter.sgc,
        ti=meter.ti,
        krn=krn,
        kt=meter.kt,
        base_date=1993 if krn == 1 else 2014,
        ea=meter.ea,
    )


def virtual_meter(meter: Meter) -> VirtualMeter:
    """The physical meter as it leaves the factory: on the register's (old) key."""
    return VirtualMeter(
        decoder_key=decoder_key(meter, krn=meter.krn),
        ea=meter.ea,
        krn=meter.krn,
        kt=meter.kt,
        ti=meter.ti,
        ken=meter.ken,
        base_date=meter.base_date,
    )


AMOUNT = Decimal("100.00")

"""Shared model factories. Each area may add its own in tests/<area>/factories.py."""

from __future__ import annotations

from typing import Any

import factory

from meters.models import Meter
from tokens.sts import luhn_check_digit


def luhn_complete(partial: str) -> str:
    """`partial` with its Luhn check digit appended (a valid meter number from 10 or 12 digits)."""
    return partial + str(luhn_check_digit(partial))


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meter

    meter_number = factory.Sequence(lambda n: luhn_complete(f"54{n:08d}"))
    sgc = "600675"
    ti = 1
    krn = 1
    kt = 2
    ea = "07"
    dkga = "02"
    base_date = 1993
    ken = 255
    account_number = factory.Sequence(lambda n: f"ACC{n:07d}")
    customer_name = factory.Sequence(lambda n: f"Customer {n}")
    phone = factory.Sequence(lambda n: f"+2547{n:08d}")
    region = "Nairobi"


def sms_tally(batch: Any) -> tuple[int, int, int]:
    """(sent, delivered, failed) of a batch's SMS, from the outbox's tally."""
    from sms.tallies import batch_tallies

    tally = batch_tallies(batch_ids=[batch.pk])[batch.pk]
    return (tally.sent, tally.delivered, tally.failed)


def campaign_sms_tally(campaign: Any) -> tuple[int, int, int]:
    """The same summed over a campaign's batches."""
    rows = [sms_tally(batch) for batch in campaign.batches.all()]
    return tuple(sum(column) for column in zip(*rows, strict=True)) if rows else (0, 0, 0)  # type: ignore[return-value]

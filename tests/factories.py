"""Shared model factories. Each area may add its own in tests/<area>/factories.py."""

from __future__ import annotations

import factory

from meters.models import Meter


def luhn_complete(partial: str) -> str:
    """Append the Luhn check digit (doubling from the rightmost digit of `partial`)."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return partial + str((10 - total % 10) % 10)


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

"""Turn a payment in KES into kWh with a simple tariff from settings.TARIFF.

All arithmetic is Decimal. Units are rounded UP to the 0.1 kWh the token carries (and the STS
amount encoding rounds up again), so a customer is never credited less than they paid for.
The breakdown splits the payment into energy, levies and VAT, to the cent, summing exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from functools import lru_cache

from django.conf import settings

CENT = Decimal("0.01")
TENTH = Decimal("0.1")
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Tariff:
    energy_rate: Decimal
    per_kwh_levies: tuple[tuple[str, Decimal], ...]
    energy_percent_levies: tuple[tuple[str, Decimal], ...]
    vat_percent: Decimal

    @property
    def rate_before_vat(self) -> Decimal:
        percent = sum((p for _, p in self.energy_percent_levies), Decimal(0))
        per_kwh = sum((r for _, r in self.per_kwh_levies), Decimal(0))
        return self.energy_rate + per_kwh + self.energy_rate * percent / HUNDRED

    @property
    def rate_per_kwh(self) -> Decimal:
        """What one kWh costs the customer, VAT included."""
        return self.rate_before_vat * (1 + self.vat_percent / HUNDRED)


@dataclass(frozen=True)
class Quote:
    amount: Decimal
    units: Decimal
    rate_per_kwh: Decimal
    energy_charge: Decimal
    levies: tuple[tuple[str, Decimal], ...]
    vat: Decimal

    def as_dict(self) -> dict[str, object]:
        return {
            "currency": "KES",
            "amount": str(self.amount),
            "rate_per_kwh": str(self.rate_per_kwh.quantize(Decimal("0.0001"), ROUND_HALF_UP)),
            "energy_charge": str(self.energy_charge),
            "levies": [{"name": name, "amount": str(value)} for name, value in self.levies],
            "vat": str(self.vat),
        }


@lru_cache(maxsize=4)
def _tariff_from(config_items: tuple) -> Tariff:
    config = dict(config_items)
    return Tariff(
        energy_rate=Decimal(config["energy_rate"]),
        per_kwh_levies=tuple((k, Decimal(v)) for k, v in config.get("per_kwh_levies", ())),
        energy_percent_levies=tuple((k, Decimal(v)) for k, v in config.get("energy_percent_levies", ())),
        vat_percent=Decimal(config.get("vat_percent", "0")),
    )


def tariff_current() -> Tariff:
    config = settings.TARIFF
    items = tuple(
        (key, tuple(value.items()) if isinstance(value, dict) else value) for key, value in sorted(config.items())
    )
    return _tariff_from(items)


def tariff_quote(*, amount: Decimal, tariff: Tariff | None = None) -> Quote:
    """Units and breakdown for a payment of `amount` KES (2 decimal places)."""
    tariff = tariff or tariff_current()
    amount = amount.quantize(CENT)
    units = (amount / tariff.rate_per_kwh).quantize(TENTH, rounding=ROUND_CEILING)
    vat = (amount - amount / (1 + tariff.vat_percent / HUNDRED)).quantize(CENT, ROUND_HALF_UP)
    before_vat = amount - vat
    share = before_vat / tariff.rate_before_vat  # kWh bought, unrounded, for splitting the money
    levies = [(name, (share * rate).quantize(CENT, ROUND_HALF_UP)) for name, rate in tariff.per_kwh_levies]
    levies += [
        (name, (share * tariff.energy_rate * percent / HUNDRED).quantize(CENT, ROUND_HALF_UP))
        for name, percent in tariff.energy_percent_levies
    ]
    # The energy charge takes the rounding remainder so the parts add up to the payment exactly.
    energy_charge = before_vat - sum((value for _, value in levies), Decimal(0))
    return Quote(
        amount=amount,
        units=units,
        rate_per_kwh=tariff.rate_per_kwh,
        energy_charge=energy_charge,
        levies=tuple(levies),
        vat=vat,
    )

"""Demo data: one partner with an API key for trying the vending API locally."""

from __future__ import annotations

from decimal import Decimal
from typing import TextIO

from .models import Partner
from .services import partner_api_key_create, partner_create

DEMO_PARTNER = "Demo Bank"


def seed(stdout: TextIO) -> None:
    if Partner.objects.filter(name=DEMO_PARTNER).exists():
        return
    partner = partner_create(name=DEMO_PARTNER, daily_limit=Decimal("1000000.00"), actor_label="seed_demo")
    _api_key, raw_key = partner_api_key_create(partner=partner, name="demo", actor_label="seed_demo")
    stdout.write(f"Partner API: '{DEMO_PARTNER}' key (shown once): {raw_key}\n")
    stdout.write(f"  try: curl -H 'Authorization: Api-Key {raw_key}' http://127.0.0.1:8000/api/v1/meters/<meter>/\n")

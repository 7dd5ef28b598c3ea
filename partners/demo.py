"""Demo data: one partner with an API key for trying the vending API locally."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import TextIO

from .models import Partner
from .services import partner_api_key_create, partner_create

DEMO_PARTNER = "Demo Bank"
DEMO_METER = "54000000015"  # the first demo meter (meters.demo), in the first batch


def seed(stdout: TextIO) -> None:
    if Partner.objects.filter(name=DEMO_PARTNER).exists():
        return
    partner = partner_create(name=DEMO_PARTNER, daily_limit=Decimal("1000000.00"), actor_label="seed_demo")
    _api_key, raw_key = partner_api_key_create(partner=partner, name="demo", actor_label="seed_demo")
    stdout.write(f"Partner API: '{DEMO_PARTNER}' key (shown once): {raw_key}\n")
    port = os.environ.get("PORT") or "8000"  # the port `make run` serves on
    stdout.write(
        f"  try: curl -H 'Authorization: Api-Key {raw_key}' http://127.0.0.1:{port}/api/v1/meters/{DEMO_METER}/\n"
    )

"""Create a vending partner and its first API key; the key is printed alone on the last line."""

from __future__ import annotations

import getpass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from partners.services import partner_api_key_create, partner_create


def _kes(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"not an amount in KES: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise CommandError(f"the amount must be positive: {value!r}")
    return amount.quantize(Decimal("0.01"))


class Command(BaseCommand):
    help = "Create a partner and print its new API key (shown once) alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--daily-limit", type=_kes, help="KES per day (default: no limit)")
        parser.add_argument("--min-amount", type=_kes, help="smallest vend in KES")
        parser.add_argument("--max-amount", type=_kes, help="largest vend in KES")
        parser.add_argument("--allowed-ips", default="", help="comma-separated addresses or CIDR networks")
        parser.add_argument("--throttle-rate", default="", help='request rate such as "6000/min"')

    def handle(self, *args: Any, **options: Any) -> None:
        actor_label = f"command:create_partner:{getpass.getuser()}"
        try:
            partner = partner_create(
                name=options["name"],
                daily_limit=options["daily_limit"],
                min_vend_amount=options["min_amount"],
                max_vend_amount=options["max_amount"],
                allowed_ips=options["allowed_ips"],
                throttle_rate=options["throttle_rate"],
                actor_label=actor_label,
            )
        except IntegrityError:
            raise CommandError(
                f"cannot create partner {options['name']!r}: the name is taken or the amount limits are inconsistent"
            ) from None
        _api_key, raw_key = partner_api_key_create(partner=partner, name="initial", actor_label=actor_label)
        self.stdout.write(f"Created partner {partner.name} (id {partner.pk}). Its API key, shown only now:")
        self.stdout.write(raw_key)

"""Give an existing partner a new API key (its other keys keep working); the key is printed alone on
the last line. The demo's restart hint: `manage.py new_partner_key "Demo Bank"`."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from partners.models import Partner
from partners.services import partner_api_key_create


class Command(BaseCommand):
    help = "Create a new API key for an existing partner and print it (shown once) alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("partner", help="the partner's name, e.g. 'Demo Bank'")
        parser.add_argument("--key-name", default="", help="a label for the key (default: new key N)")

    def handle(self, *args: Any, **options: Any) -> None:
        partner = Partner.objects.filter(name=options["partner"]).first()
        if partner is None:
            names = ", ".join(Partner.objects.order_by("name").values_list("name", flat=True)[:10]) or "none"
            raise CommandError(f"no partner named {options['partner']!r} (partners: {names})")
        name = options["key_name"] or f"new key {partner.api_keys.count() + 1}"
        _api_key, raw_key = partner_api_key_create(
            partner=partner, name=name, actor_label=f"command:new_partner_key:{getpass.getuser()}"
        )
        self.stdout.write(f"New API key {name!r} for partner {partner.name} (id {partner.pk}), shown only now:")
        self.stdout.write(raw_key)

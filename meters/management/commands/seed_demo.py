"""Load the demo data set when the database holds no meters yet.

Each installed app may contribute a `<app>/demo.py` with `seed(stdout)`; they run in
INSTALLED_APPS order, so meters exist before campaigns and partners are built on them.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from meters.models import Meter


class Command(BaseCommand):
    help = "Seed demo data (meters, vending keys, a campaign, a partner, staff users) into an empty database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="seed even if meters already exist")

    def handle(self, *args: Any, **options: Any) -> None:
        if Meter.objects.exists() and not options["force"]:
            manage = f"{os.path.relpath(sys.executable)} manage.py"
            password = os.environ.get("DEMO_PASSWORD", "demo-pass-2024")
            self.stdout.write(
                f"Demo data already loaded ({Meter.objects.count():,} meters). Staff logins as before: admin, "
                f"manager, agent, supervisor, auditor (password {password!r} unless it was changed).\n"
                f"Partner API keys are shown only once: for a new one, run {manage} new_partner_key 'Demo Bank'"
            )
            return
        for app_config in apps.get_app_configs():
            try:
                module = importlib.import_module(f"{app_config.name}.demo")
            except ModuleNotFoundError as exc:
                if exc.name != f"{app_config.name}.demo":
                    raise
                continue
            with transaction.atomic():
                module.seed(self.stdout)
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))

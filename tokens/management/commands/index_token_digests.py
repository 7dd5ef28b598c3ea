"""Rebuild the token digest index (after a database restore or a SECRET_KEY rotation)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from tokens.digests import token_digests_reindex


class Command(BaseCommand):
    help = "Rebuild the HMAC index care uses to find a token from its digits; prints the digests written."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            written = token_digests_reindex()
        self.stdout.write(f"{written} token digests written")

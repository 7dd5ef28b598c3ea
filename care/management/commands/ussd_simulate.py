"""Play a *977# session against the USSD callback, scripted or interactively.

manage.py ussd_simulate --phone +254712345678 1*54000000015   # URL from USSD_CALLBACK_SECRET
manage.py ussd_simulate --url http://127.0.0.1:8000/ussd/SECRET/ --phone 0712345678      # interactive

Without --url it calls the local server on $PORT (what `make run` serves on; 8000 by default).
"""

from __future__ import annotations

import os
import urllib.error
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from care.ussd_simulator import UssdSession, http_poster, split_steps


class Command(BaseCommand):
    help = "Play a USSD *977# session against our callback, as Africa's Talking would."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("steps", nargs="?", default=None, help="Inputs joined by * (omit for interactive)")
        parser.add_argument(
            "--url", default=None, help="the callback (default: /ussd/<USSD_CALLBACK_SECRET>/ of this install on $PORT)"
        )
        parser.add_argument("--phone", default="+254700000001")
        parser.add_argument("--service-code", default="*977#")
        parser.add_argument("--session-id", default=None, help="Reuse a session id (to replay a session)")

    def handle(self, *args: Any, **options: Any) -> None:
        secret = settings.USSD_CALLBACK_SECRET
        path = reverse("ussd-secret", args=[secret]) if secret else reverse("ussd")
        url = options["url"] or f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}{path}"
        try:
            self._play(url, options)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(
                f"no USSD callback answers at {url} ({reason}): start the server with `make run` "
                "(PORT=… if it runs on another port) or pass --url"
            ) from None

    def _play(self, url: str, options: dict[str, Any]) -> None:
        session = UssdSession(post=http_poster(url), phone=options["phone"])
        session.service_code = options["service_code"]
        if options["session_id"]:
            session.session_id = options["session_id"]
        self._show(session.dial())
        if options["steps"] is not None:
            for step in split_steps(options["steps"]):
                if session.ended:
                    break
                self.stdout.write(f"> {step}")
                self._show(session.send(step))
            return
        while not session.ended:
            try:
                value = input("> ")
            except EOFError:
                return
            self._show(session.send(value.strip()))

    def _show(self, screen: str) -> None:
        self.stdout.write(screen)
        self.stdout.write(f"[{len(screen)} chars]")
        self.stdout.write("")

"""Play a *977# session against the USSD callback, scripted or interactively.

manage.py ussd_simulate --phone +254712345678 1*54000000015   # URL from USSD_CALLBACK_SECRET
manage.py ussd_simulate --url http://127.0.0.1:8000/ussd/SECRET/ --phone 0712345678      # interactive
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from care.ussd_simulator import UssdSession, http_poster, split_steps


class Command(BaseCommand):
    help = "Play a USSD *977# session against our callback, as Africa's Talking would."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("steps", nargs="?", default=None, help="Inputs joined by * (omit for interactive)")
        parser.add_argument(
            "--url", default=None, help="the callback (default: this settings' /ussd/<USSD_CALLBACK_SECRET>/ on :8000)"
        )
        parser.add_argument("--phone", default="+254700000001")
        parser.add_argument("--service-code", default="*977#")
        parser.add_argument("--session-id", default=None, help="Reuse a session id (to replay a session)")

    def handle(self, *args: Any, **options: Any) -> None:
        secret = settings.USSD_CALLBACK_SECRET
        url = options["url"] or (f"http://127.0.0.1:8000/ussd/{secret}/" if secret else "http://127.0.0.1:8000/ussd/")
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

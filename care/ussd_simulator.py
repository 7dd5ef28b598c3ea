"""Play a *977# session the way Africa's Talking does: one form POST per step, `text` growing.

Used by `manage.py ussd_simulate` (against a running server) and by the tests (through Django's
test client), so both exercise exactly the callback the gateway calls.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Poster = Callable[[dict[str, str]], str]


def http_poster(url: str, *, timeout: float = 10.0) -> Poster:
    def post(form: dict[str, str]) -> str:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 - operator-given URL
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.read().decode()

    return post


@dataclass
class UssdSession:
    post: Poster
    phone: str
    service_code: str = "*977#"
    network_code: str = "63902"
    session_id: str = field(default_factory=lambda: "ATUid_" + uuid.uuid4().hex)
    inputs: list[str] = field(default_factory=list)
    screens: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "*".join(self.inputs)

    @property
    def ended(self) -> bool:
        return bool(self.screens) and self.screens[-1].startswith("END ")

    def request(self, text: str) -> str:
        screen = self.post(
            {
                "sessionId": self.session_id,
                "serviceCode": self.service_code,
                "phoneNumber": self.phone,
                "networkCode": self.network_code,
                "text": text,
            }
        )
        self.screens.append(screen)
        return screen

    def dial(self) -> str:
        self.inputs = []
        return self.request("")

    def send(self, value: str) -> str:
        self.inputs.append(value)
        return self.request(self.text)

    def play(self, steps: Iterable[str]) -> list[str]:
        """Dial, then type each step; returns every screen (the dial screen first)."""
        screens = [self.dial()]
        for step in steps:
            screens.append(self.send(step))
        return screens


def split_steps(text: str) -> list[str]:
    """'1*54000000015' -> ['1', '54000000015'] (the form AT uses in `text`)."""
    return text.split("*") if text else []

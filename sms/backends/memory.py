from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from .base import BaseBackend, SendResult


@dataclass(frozen=True)
class SentSms:
    recipient: str
    body: str
    purpose: str
    provider_message_id: str


class MemoryBackend(BaseBackend):
    """Keeps sent messages in `MemoryBackend.outbox` (class-level, like Django's mail.outbox).

    Tests can queue outcomes in `MemoryBackend.script` (SendResult objects, used in order)
    to exercise retries and permanent failures.
    """

    outbox: list[SentSms] = []
    script: list[SendResult] = []
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.outbox = []
            cls.script = []

    def send(self, *, recipient: str, body: str, purpose: str) -> SendResult:
        with self._lock:
            if self.script:
                result = self.script.pop(0)
                if result.outcome != "sent":
                    return result
            provider_id = f"mem-{uuid.uuid4().hex}"
            self.outbox.append(SentSms(recipient, body, purpose, provider_id))
        return SendResult.sent(provider_id)

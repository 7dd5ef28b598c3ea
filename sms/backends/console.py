from __future__ import annotations

import sys
import uuid

from .base import BaseBackend, SendResult


class ConsoleBackend(BaseBackend):
    """Writes each SMS to standard output (development without a gateway)."""

    def send(self, *, recipient: str, body: str, purpose: str) -> SendResult:
        # Codes and token SMS carry token digits: show only that one was sent, never the digits.
        shown = body if purpose == "notice" else f"<{purpose} message, {len(body)} characters>"
        sys.stdout.write(f"SMS to {recipient} [{purpose}]: {shown}\n")
        sys.stdout.flush()
        return SendResult.sent(f"console-{uuid.uuid4().hex}")

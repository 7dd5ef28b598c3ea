from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class SendResult:
    """What the gateway said about one message.

    outcome: "sent" (accepted), "retry" (transient: try again later) or "rejected" (permanent:
    invalid number, blacklisted...; never retried).
    """

    outcome: str
    provider_message_id: str | None = None
    cost: Decimal | None = None
    currency: str = ""
    failure_reason: str = ""
    error: str = ""

    @classmethod
    def sent(cls, provider_message_id: str, cost: Decimal | None = None, currency: str = "") -> SendResult:
        return cls("sent", provider_message_id=provider_message_id, cost=cost, currency=currency)

    @classmethod
    def retry(cls, error: str, failure_reason: str = "") -> SendResult:
        return cls("retry", error=error[:500], failure_reason=failure_reason)

    @classmethod
    def rejected(cls, failure_reason: str, error: str = "") -> SendResult:
        return cls("rejected", failure_reason=failure_reason, error=error[:500])


class BaseBackend:
    def send(self, *, recipient: str, body: str, purpose: str) -> SendResult:
        raise NotImplementedError

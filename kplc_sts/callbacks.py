"""Guards for Africa's Talking's callbacks (USSD, delivery reports), which AT does not sign.

What AT lets us configure is the URL it calls: a secret path segment makes the URL a credential,
and a source-network allowlist (AT's published callback addresses, set by the operator) narrows who
may present it. Both are checked before any work; a refusal is a bare 404 that says nothing about
whether the path exists, and the secret is compared in constant time.
"""

from __future__ import annotations

import hmac
import logging

from django.http import HttpRequest

from .clientip import address_in, client_ip

logger = logging.getLogger(__name__)


def callback_allowed(request: HttpRequest, *, offered: str | None, secret: str, networks: list[str], name: str) -> bool:
    """True when `offered` (the path segment; None for the bare path) matches `secret` and the client
    is in `networks` (any client when the list is empty). With no secret configured (the demo, the
    tests) the bare path is accepted and a segment is not."""
    if secret:
        if offered is None or not hmac.compare_digest(offered.encode(), secret.encode()):
            logger.warning("%s callback refused: wrong or missing secret (from %s)", name, client_ip(request))
            return False
    elif offered is not None:
        return False
    if networks and not address_in(client_ip(request), networks):
        logger.warning("%s callback refused: %s is not in the allowed networks", name, client_ip(request))
        return False
    return True

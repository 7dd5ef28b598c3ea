"""Who is calling: the client address, believing X-Forwarded-For only from our own proxies.

Behind a reverse proxy every request's REMOTE_ADDR is the proxy. The proxy appends the address it
saw to X-Forwarded-For, so the header reads "client, proxy1, proxy2" with the nearest hop last.
Walking it from the right and skipping addresses in TRUSTED_PROXIES gives the first address that
no proxy of ours vouches for: the client. Anything further left was written by the client itself
and is ignored. A request that does not come from a trusted proxy is judged by REMOTE_ADDR alone
(TrustedProxyMiddleware has already dropped its forwarding headers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from django.conf import settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def address_in(ip: str, networks: Iterable[str]) -> bool:
    """True if `ip` lies in one of `networks` (strings like "10.0.0.0/8"); False for a malformed ip."""
    return _address_in(ip, tuple(networks))


@lru_cache(maxsize=4096)
def _address_in(ip: str, networks: tuple[str, ...]) -> bool:
    # Asked three or four times a request (proxy headers, partner allowlist, access log, lockout)
    # about the few addresses that call: parsing each time was a measurable part of a vend.
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    return any(address in network for network in _networks(networks))


def is_trusted_proxy(ip: str) -> bool:
    return address_in(ip, getattr(settings, "TRUSTED_PROXIES", ()))


def client_ip(request: Any) -> str:
    """The client's address (a string, "" when unknown). Also django-axes' AXES_CLIENT_IP_CALLABLE."""
    meta = request.META
    remote = meta.get("REMOTE_ADDR", "") or ""
    if not is_trusted_proxy(remote):
        return remote
    hops = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return remote  # a garbled hop our proxy passed on: fall back to what we know
    return hops[0] if hops else remote  # every hop is ours (a health check from inside)

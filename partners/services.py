"""Partners, their API keys and their daily vend totals."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from datetime import date
from decimal import Decimal

from cachetools import TTLCache
from django.db import IntegrityError, transaction

from audit.services import audit_record
from kplc_sts import clock
from kplc_sts.db import by_vendor

from . import _pg, _portable
from .keyversion import api_key_version_bump
from .models import Partner, PartnerApiKey, PartnerDailyTotal

statements = by_vendor(pg=_pg, portable=_portable)

KEY_SCHEME = "kplc"
_PREFIX_BYTES = 4  # 8 hex characters in clear: enough to find the row, useless to an attacker


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def partner_create(
    *,
    name: str,
    daily_limit: Decimal | None = None,
    min_vend_amount: Decimal | None = None,
    max_vend_amount: Decimal | None = None,
    allowed_ips: str = "",
    throttle_rate: str = "",
    actor_label: str = "system",
) -> Partner:
    fields: dict[str, object] = {"name": name, "daily_limit": daily_limit, "allowed_ips": allowed_ips}
    if min_vend_amount is not None:
        fields["min_vend_amount"] = min_vend_amount
    if max_vend_amount is not None:
        fields["max_vend_amount"] = max_vend_amount
    if throttle_rate:
        fields["throttle_rate"] = throttle_rate
    with transaction.atomic():
        partner = Partner.objects.create(**fields)
        audit_record(action="partner.created", actor_label=actor_label, target=partner, name=name)
    return partner


def partner_api_key_create(
    *, partner: Partner, name: str = "", actor: object = None, actor_label: str = ""
) -> tuple[PartnerApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored and cannot be shown again."""
    for _attempt in range(5):
        prefix = secrets.token_hex(_PREFIX_BYTES)
        raw_key = f"{KEY_SCHEME}_{prefix}.{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                api_key = PartnerApiKey.objects.create(
                    partner=partner,
                    name=name,
                    prefix=prefix,
                    key_hash=_digest(raw_key),
                    created_by=actor_label or getattr(actor, "username", "") or "system",
                )
                audit_record(
                    action="partner.api_key_created",
                    actor=actor,
                    actor_label=actor_label,
                    target=api_key,
                    partner=partner.pk,
                    prefix=prefix,
                )
        except IntegrityError:
            continue  # prefix collision: 1 in 4 billion per existing key, try another
        return api_key, raw_key
    raise RuntimeError("could not allocate a unique API key prefix")


def partner_api_key_revoke(*, api_key: PartnerApiKey, actor: object = None, actor_label: str = "") -> bool:
    """Revoke a key (effective on the next request). False if it was already revoked."""
    with transaction.atomic():
        revoked = PartnerApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
        if revoked:
            audit_record(
                action="partner.api_key_revoked",
                actor=actor,
                actor_label=actor_label,
                target=api_key,
                partner=api_key.partner_id,
                prefix=api_key.prefix,
            )
    partner_api_key_cache_clear()
    transaction.on_commit(partner_api_key_cache_clear)  # in case a request cached it before the commit
    api_key.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


# Authenticated keys are remembered in each process for a few seconds: the lookup would otherwise
# be a query on every partner request. A revocation, suspension or limit change made in this process
# clears it at once (revoke below, post_save signals in apps.py); other processes see it within
# API_KEY_CACHE_SECONDS. Only successes are kept (an unknown key costs a query, and cannot fill memory).
API_KEY_CACHE_SECONDS = 5.0
# A TTLCache is not thread-safe (gunicorn's gthread workers serve requests on several threads):
# concurrent expiry raised KeyError, a 500 the campaign rehearsal found. Every access holds this.
_api_keys_lock = threading.Lock()
_api_keys: TTLCache[str, PartnerApiKey] = TTLCache(
    maxsize=1000, ttl=API_KEY_CACHE_SECONDS, timer=lambda: time.monotonic()
)


def partner_api_key_cache_clear(**_kwargs: object) -> None:
    with _api_keys_lock:
        _api_keys.clear()
    if not _kwargs.get("local_only"):  # a change made here: every other process drops its copy too
        api_key_version_bump()


def partner_api_key_authenticate(*, raw_key: str) -> PartnerApiKey | None:
    """The active key matching `raw_key`, with its partner loaded, or None."""
    scheme, _, rest = raw_key.partition("_")
    prefix, dot, _secret = rest.partition(".")
    if scheme != KEY_SCHEME or not dot or len(prefix) != _PREFIX_BYTES * 2:
        return None
    digest = _digest(raw_key)
    with _api_keys_lock:
        cached = _api_keys.get(digest)
    if cached is not None:
        return cached
    api_key = PartnerApiKey.objects.select_related("partner").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, digest):
        return None
    with _api_keys_lock:
        if api_key.revoked_at is not None:
            _api_keys.pop(digest, None)
            return None
        _api_keys[digest] = api_key
    return api_key


def partner_ip_allowed(*, partner: Partner, ip: str) -> bool:
    entries = [line.strip() for line in partner.allowed_ips.replace(",", "\n").splitlines() if line.strip()]
    if not entries:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a malformed line allows nothing; the admin form validates new entries
    return False


def partner_daily_reserve(*, partner: Partner, amount: Decimal, day: date) -> bool:
    """Add `amount` to the partner's total for `day` if it stays within the daily limit.

    Must run inside the vend's transaction: the conditional UPDATE locks the day's row until
    commit, so concurrent vends cannot both squeeze under the limit, and a vend that fails later
    rolls its reservation back. Callers do this last to keep that lock short. (Plain SQL: it runs
    for every vend.)
    """
    if partner.daily_limit is None:
        return True
    headroom = partner.daily_limit - amount
    if headroom < 0:
        return False
    if statements.daily_total_add(partner_id=partner.pk, day=day, amount=amount, headroom=headroom):
        return True
    if PartnerDailyTotal.objects.filter(partner=partner, day=day).exists():
        return False
    PartnerDailyTotal.objects.bulk_create([PartnerDailyTotal(partner=partner, day=day)], ignore_conflicts=True)
    return statements.daily_total_add(partner_id=partner.pk, day=day, amount=amount, headroom=headroom)

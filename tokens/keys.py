"""A meter's decoder keys: which key it holds, and the key bytes derived on demand, never stored."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from django.utils import timezone

from meters.models import Meter

from . import errors
from .custody import VendingKeyError, VendingKeyNotFound, vending_key_get
from .sts import TidOutOfRange, derive_decoder_key, pan_from_meter_number, tid_from_datetime

if TYPE_CHECKING:
    from campaigns.models import Campaign

    from .models import KeyChangeSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterKey:
    """One decoder key of a meter, as the parameters it is derived from (never the key itself)."""

    sgc: str
    krn: int
    base_date: int
    ken: int

    @classmethod
    def register(cls, meter: Meter) -> MeterKey:
        """The key the register row describes (the key the meter was loaded with)."""
        return cls(sgc=meter.sgc, krn=meter.krn, base_date=meter.base_date, ken=meter.ken)

    @classmethod
    def campaign_target(cls, meter: Meter, campaign: Campaign) -> MeterKey:
        """The key a campaign moves the meter to (same supply group, the campaign's revision)."""
        return cls(sgc=meter.sgc, krn=campaign.to_krn, base_date=campaign.new_base_date, ken=campaign.new_ken)

    @classmethod
    def set_target(cls, key_change_set: KeyChangeSet) -> MeterKey:
        """The key a key change set moves the meter to."""
        return cls(
            sgc=key_change_set.to_sgc,
            krn=key_change_set.to_krn,
            base_date=key_change_set.to_base_date,
            ken=key_change_set.to_ken,
        )


def wall_clock(now: dt.datetime) -> dt.datetime:
    """TIDs count wall-clock minutes; the vending system's wall clock is Nairobi time."""
    return timezone.localtime(now).replace(tzinfo=None)


def key_usable(key: MeterKey, now: dt.datetime) -> bool:
    """Whether a credit token made now under `key` has a TID that fits and is not past the KEN."""
    try:
        tid = tid_from_datetime(wall_clock(now), key.base_date)
    except TidOutOfRange:
        return False
    return (tid >> 16) <= key.ken


# Unwrapped vending keys, kept in this process for a short while: unwrapping costs a query and an
# AES-GCM setup per token otherwise (research B.7: unwrap once per process or batch). A replaced
# key is dropped at once in this process (signal, in apps.py) and within VENDING_KEY_TTL in others.
VENDING_KEY_TTL = 60.0
_vending_keys: TTLCache[tuple[str, int], bytes] = TTLCache(maxsize=512, ttl=VENDING_KEY_TTL)
_vending_keys_lock = threading.Lock()  # a TTLCache is not thread-safe; gunicorn threads share it


def vending_key_cached(sgc: str, krn: int) -> bytes:
    """The vending key of a supply group and revision, unwrapped once per process and TTL."""
    return _vending_key(sgc, krn)


def _vending_key(sgc: str, krn: int) -> bytes:
    with _vending_keys_lock:
        key = _vending_keys.get((sgc, krn))
    if key is None:
        key = vending_key_get(sgc=sgc, krn=krn)
        with _vending_keys_lock:
            _vending_keys[(sgc, krn)] = key
    return key


def vending_key_cache_clear(**_kwargs: Any) -> None:
    with _vending_keys_lock:
        _vending_keys.clear()


def meter_decoder_key(*, meter: Meter, key: MeterKey, pan: str | None = None) -> bytes:
    """The meter's decoder key under `key` (derived now, never stored: drop it after use).

    Raises errors.VendingUnavailable when the vending key for the key's supply group and revision
    is not loaded or cannot be unwrapped. `pan` may be passed when the caller already has it.
    """
    try:
        vending_key = _vending_key(key.sgc, key.krn)
    except VendingKeyNotFound:
        raise errors.VendingUnavailable(f"Vending is not set up for supply group {key.sgc} key {key.krn}.") from None
    except VendingKeyError:
        logger.error("vending key SGC %s KRN %s failed to unwrap", key.sgc, key.krn)
        raise errors.VendingUnavailable("Vending is temporarily unavailable.") from None
    return derive_decoder_key(
        dkga=meter.dkga,
        vending_key=vending_key,
        pan=pan or pan_from_meter_number(meter.meter_number),
        sgc=key.sgc,
        ti=meter.ti,
        krn=key.krn,
        kt=meter.kt,
        base_date=key.base_date,
        ea=meter.ea,
    )

"""Vending-health counters, bumped by the vend (after commit) and the partner API's error handler."""

from __future__ import annotations

import datetime as dt
import random

from kplc_sts import clock
from kplc_sts.db import upsert_increment

from .models import VEND_STAT_SHARDS, ApiErrorStat, VendMinuteStat


def _minute_floor(at: dt.datetime) -> dt.datetime:
    return at.replace(second=0, microsecond=0)


def vend_minute_record(*, with_codes: bool, at: dt.datetime | None = None) -> None:
    """Count one vend. Call it after the vend commits (transaction.on_commit): inside the vend's
    transaction the row lock would be held until commit."""
    shard = random.randrange(VEND_STAT_SHARDS)
    upsert_increment(
        VendMinuteStat,
        {"minute": _minute_floor(at or clock.now()), "shard": shard},
        vends=1,
        vends_with_codes=1 if with_codes else 0,
    )


def api_error_record(code: str, *, at: dt.datetime | None = None) -> None:
    """Count one partner-API error response by its error code (UNKNOWN_METER, AMOUNT_TOO_LOW...)."""
    upsert_increment(ApiErrorStat, {"minute": _minute_floor(at or clock.now()), "code": code[:40]}, count=1)

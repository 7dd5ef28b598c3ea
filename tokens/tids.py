"""Token identifiers: minutes on the vending system's clock, strictly increasing per meter and key.

Every token to a meter under a key, and every key change set to it, is made while holding that
meter-and-key's TidCounter row lock (`tid_counter_lock`), so concurrent vends to one meter get
distinct, increasing TIDs.
"""

from __future__ import annotations

import datetime as dt

from kplc_sts import clock
from kplc_sts.db import by_vendor
from meters.models import Meter

from . import _pg, _portable, errors
from .keys import MeterKey, wall_clock
from .models import TidCounter
from .sts import KeyExpired, TidOutOfRange, next_tid

statements = by_vendor(pg=_pg, portable=_portable)


def tid_counter_lock(*, meter: Meter, key: MeterKey) -> TidCounter:
    """Lock (creating if needed) the meter's TID counter for `key`, until the transaction ends.

    Returns an instance carrying only id and last_tid (a row lock, not a record to save)."""
    return statements.tid_counter_lock(meter_id=meter.pk, key=key, now=clock.now())


def tid_next(*, counter: TidCounter, key: MeterKey, now: dt.datetime) -> int:
    """The next TID for the locked `counter` (not yet written back)."""
    try:
        return next_tid(counter.last_tid, wall_clock(now), key.base_date, key.ken)
    except (TidOutOfRange, KeyExpired):
        raise errors.KeyChangeRequired(
            f"The meter's key (revision {key.krn}) can no longer carry tokens: its TIDs ran out "
            "(the STS rollover). The customer must type the update codes 1 and 2 first."
        ) from None


def tid_allocate(*, counter: TidCounter, key: MeterKey, now: dt.datetime) -> int:
    """The next TID for the locked `counter`, written back."""
    tid = tid_next(counter=counter, key=key, now=now)
    TidCounter.objects.filter(pk=counter.pk).update(last_tid=tid, updated_at=clock.now())
    counter.last_tid = tid
    return tid

"""What campaigns does when the apps it builds on report an event (connected in apps.py).

meters and sms know nothing of campaigns: they send a signal and campaigns, which depends on them,
listens. Both run inside the sender's transaction, so the counts change with the rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from .services import batches_open_finished, pushed_codes_delivered, register_recount
from .services import notices_sent as enrollments_notified


def register_imported(sender: Any, **kwargs: Any) -> None:
    """The meter import changed the register: recount the segments and the campaign targets."""
    register_recount()


def notices_sent(sender: Any, *, by_batch: Mapping[int, Sequence[int]], at: dt.datetime, **kwargs: Any) -> None:
    """Notices were accepted by the gateway: their enrollments become notified."""
    for batch_id, meter_ids in sorted(by_batch.items()):
        enrollments_notified(batch_id=batch_id, meter_ids=meter_ids, at=at)


def notices_out(sender: Any, *, batch_ids: Sequence[int], **kwargs: Any) -> None:
    """Notices went out, or the outbox gave up on them (refused for good, or out of attempts): a
    batch whose last notice that was opens at once instead of at the next sweep."""
    batches_open_finished(batch_ids=list(batch_ids))


def codes_delivered(sender: Any, *, meter_ids: Sequence[int], at: dt.datetime, **kwargs: Any) -> None:
    """Codes SMS reached their phones: a pushed meter's codes count as issued from now."""
    pushed_codes_delivered(meter_ids=meter_ids, at=at)

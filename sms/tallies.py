"""Per-batch SMS tallies (sent, delivered, failed), written only by the outbox as messages settle."""

from __future__ import annotations

from collections.abc import Sequence

from kplc_sts.db import upsert_increment

from .models import MessageTally


def tally_add(batch_id: int | None, *, sent: int = 0, delivered: int = 0, failed: int = 0) -> None:
    if batch_id is not None:
        upsert_increment(MessageTally, {"batch_id": batch_id}, sent=sent, delivered=delivered, failed=failed)


def batch_tallies(*, batch_ids: Sequence[int]) -> dict[int, MessageTally]:
    """The tallies of these batches (a batch with no SMS yet gets an empty one)."""
    found = {tally.batch_id: tally for tally in MessageTally.objects.filter(batch_id__in=list(batch_ids))}
    return {batch_id: found.get(batch_id) or MessageTally(batch_id=batch_id) for batch_id in batch_ids}

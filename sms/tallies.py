"""Per-batch SMS tallies (sent, delivered, failed), written only by the outbox as messages settle.

A batch's tally is TALLY_SHARDS rows at most, summed on read. A connection adds to the row of its
own shard (its PostgreSQL backend pid modulo TALLY_SHARDS), so concurrent delivery reports and
workers of one batch each lock a different row and commit side by side instead of one after the
other (docs/benchmarks.md, issue 10: the reports waited on the one row's lock through each
other's commits). SQLite has one writer at a time and uses shard 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Sum

from kplc_sts.db import upsert_increment

from .models import MessageTally

TALLY_SHARDS = 16
# The same choice inside a statement (the delivery report's one-statement upsert).
TALLY_SHARD_SQL = f"mod(pg_backend_pid(), {TALLY_SHARDS})"


def tally_shard() -> int:
    if connection.vendor != "postgresql":
        return 0
    connection.ensure_connection()
    return int(connection.connection.get_backend_pid()) % TALLY_SHARDS


def tally_add(batch_id: int | None, *, sent: int = 0, delivered: int = 0, failed: int = 0) -> None:
    if batch_id is not None:
        upsert_increment(
            MessageTally, {"batch_id": batch_id, "shard": tally_shard()}, sent=sent, delivered=delivered, failed=failed
        )


def batch_tallies(*, batch_ids: Sequence[int]) -> dict[int, MessageTally]:
    """The tallies of these batches, their shards summed (a batch with no SMS yet gets an empty one)."""
    found = {
        row["batch_id"]: MessageTally(
            batch_id=row["batch_id"], sent=row["sent"], delivered=row["delivered"], failed=row["failed"]
        )
        for row in MessageTally.objects.filter(batch_id__in=list(batch_ids))
        .values("batch_id")
        .annotate(sent=Sum("sent"), delivered=Sum("delivered"), failed=Sum("failed"))
        .order_by()
    }
    return {batch_id: found.get(batch_id) or MessageTally(batch_id=batch_id) for batch_id in batch_ids}

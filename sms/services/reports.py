"""Delivery reports: store each once (idempotent on the provider id) and settle its message.

A report can arrive before the worker has stored the provider id of its message; it then waits,
unapplied, until the worker stores the id or the sweep matches it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from kplc_sts import clock
from kplc_sts.db import by_vendor

from .. import _pg, _portable
from ..models import REPORT_FINAL_STATUS, DeliveryReport, Message
from .log import log_archive_cutoff, log_reports_apply, report_match_since

logger = logging.getLogger(__name__)

Status = Message.Status
REPORT_STATUS = REPORT_FINAL_STATUS
statements = by_vendor(pg=_pg, portable=_portable)


def delivery_report_receive(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str = "",
    phone_number: str = "",
    network_code: str = "",
    retry_count: int | None = None,
) -> None:
    """Store a report (idempotent on the provider id) and apply it if it is final: to its message
    in the outbox, or, when the message has already moved to the log (a report later than
    SMS_LOG_UNREPORTED_SECONDS, or a race with the mover), there."""
    final = REPORT_STATUS.get(status[:16])
    now = clock.now()
    look_in_log = statements.report_receive(
        provider_message_id=provider_message_id[:64],
        status=status[:16],
        failure_reason=failure_reason[:64],
        phone_number=phone_number[:16],
        network_code=network_code[:8],
        retry_count=retry_count,
        final=final,
        now=now,
        log_since=log_archive_cutoff(now=now),
    )
    if look_in_log:
        log_reports_apply(provider_message_ids=[provider_message_id[:64]])


def delivery_reports_apply_pending(
    *, provider_message_ids: Sequence[str] | None = None, provider_message_id: str | None = None, limit: int = 5000
) -> int:
    """Apply final reports to their messages (those whose message id is known by now)."""
    if provider_message_id is not None:
        provider_message_ids = [provider_message_id]
    if provider_message_ids is not None and not provider_message_ids:
        return 0
    now = clock.now()
    return int(
        statements.reports_apply(
            provider_message_ids=provider_message_ids,
            limit=limit,
            report_status=REPORT_STATUS,
            now=now,
            since=report_match_since(now) if provider_message_ids is None else None,
        )
    )


def delivery_reports_prune(*, now: dt.datetime | None = None, chunk: int = 10_000) -> int:
    """Delete the delivery reports received before the SMS log's retention cutoff (phone numbers:
    kept no longer than the messages they report on, whose outcome the archived log keeps), a chunk
    at a time so that no transaction holds many rows. Returns the reports deleted."""
    cutoff = log_archive_cutoff(now=now)
    old = DeliveryReport.objects.filter(received_at__lt=cutoff).order_by()
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:chunk])
        if not ids:
            break
        deleted += DeliveryReport.objects.filter(pk__in=ids).delete()[0]
    if deleted:
        logger.info("delivery reports before %s deleted: %d", cutoff.isoformat(), deleted)
    return deleted

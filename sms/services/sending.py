"""Sending: claim a chunk of queued messages, send each through the gateway, store what it said.

Life of a message: queued -> sending (claimed by exactly one worker with a conditional UPDATE)
-> sent (gateway accepted) -> delivered / failed / rejected (delivery report). A transient gateway
failure puts it back to queued with a later next_attempt_at (exponential backoff, capped, at most
SMS_MAX_ATTEMPTS); permanent ones (invalid or blacklisted number) end as rejected at once. A
notice of a paused batch is held and is not claimed until its batch resumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from kplc_sts import clock
from kplc_sts.db import by_vendor, sql_value

from .. import _pg, _portable
from ..backends import SendResult, get_backend
from ..events import notices_out, notices_sent
from ..models import Message
from ..quiet import quiet_hours, quiet_hours_end
from ..ratelimit import acquire_many
from ..tallies import tally_add
from .outbox import message_dispatch, queue_for
from .reports import delivery_reports_apply_pending

logger = logging.getLogger(__name__)

Status = Message.Status
Purpose = Message.Purpose
statements = by_vendor(pg=_pg, portable=_portable)


def messages_claim(message_ids: Sequence[int], *, now: dt.datetime | None = None) -> list[Message]:
    """Compare-and-set queued -> sending, in one UPDATE ... RETURNING (PostgreSQL and SQLite).
    Skips messages another worker has, that are not due yet, or that are held."""
    if not message_ids:
        return []
    now = now or clock.now()
    id_list = ", ".join(["%s"] * len(message_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Message._meta.db_table} SET status = %s, claimed_at = %s, attempts = attempts + 1 "  # noqa: S608
            f"WHERE id IN ({id_list}) AND status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s) "
            "RETURNING id, recipient, body, purpose, attempts, batch_id, meter_id",
            [Status.SENDING, sql_value(now), *message_ids, Status.QUEUED, sql_value(now)],
        )
        rows = sorted(cursor.fetchall())
    return [
        Message(
            pk=pk,
            recipient=recipient,
            body=body,
            purpose=purpose,
            attempts=attempts,
            batch_id=batch_id,
            meter_id=meter_id,
            status=Status.SENDING,
        )
        for pk, recipient, body, purpose, attempts, batch_id, meter_id in rows
    ]


def messages_count_sent(*, ids: Sequence[int]) -> int:
    """Count sent messages not counted yet (set-based, once): the batches' tallies grow, and the
    notices among them are reported (`sms.events.notices_sent`) in the same transaction."""
    if not ids:
        return 0
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update()
            .filter(pk__in=ids, sent_counted=False, sent_at__isnull=False)
            .values_list("pk", "batch_id", "meter_id", "purpose", "sent_at")
        )
        if not rows:
            return 0
        notices: dict[int, list[int]] = {}
        per_batch: dict[int, int] = {}
        for _, batch_id, meter_id, purpose, _ in rows:
            if batch_id is None:
                continue
            per_batch[batch_id] = per_batch.get(batch_id, 0) + 1
            if purpose == Purpose.NOTICE:
                notices.setdefault(batch_id, []).append(meter_id)
        if notices:
            notices_sent.send(sender=Message, by_batch=notices, at=max(row[4] for row in rows if row[4] is not None))
        Message.objects.filter(pk__in=[row[0] for row in rows]).update(sent_counted=True)
        # The batch's tally row is the one every delivery report of the batch also updates: lock it
        # last, just before the commit, so the reports do not wait out the enrollments' bookkeeping.
        for batch_id, count in sorted(per_batch.items()):
            tally_add(batch_id, sent=count)
    if notices:
        notices_out.send(sender=Message, batch_ids=sorted(notices))
    return len(rows)


def _quiet_hold(claimed: list[Message]) -> list[Message]:
    """Put reminders claimed in quiet hours back in the queue until the morning (the sweep sends
    them then), their attempt not counted; return the rest."""
    now = clock.now()
    if not claimed or not quiet_hours(now):
        return claimed
    held = [message.pk for message in claimed if message.purpose in Message.QUIET_PURPOSES]
    if held:
        Message.objects.filter(pk__in=held, status=Status.SENDING).update(
            status=Status.QUEUED, next_attempt_at=quiet_hours_end(now), claimed_at=None, attempts=F("attempts") - 1
        )
    return [message for message in claimed if message.pk not in held]


def _backoff_seconds(attempts: int) -> float:
    base = settings.SMS_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return float(min(base, settings.SMS_RETRY_MAX_SECONDS) * random.uniform(0.8, 1.0))  # jitter: no herd


def message_record_failure(*, message: Message, result: SendResult, now: dt.datetime | None = None) -> str:
    """Store a send the gateway did not accept: back to the queue with a backoff, or final.
    Returns the message's new status."""
    now = now or clock.now()
    live = Message.objects.filter(pk=message.pk, status__in=[Status.SENDING, Status.QUEUED])
    if result.outcome == "retry" and message.attempts < settings.SMS_MAX_ATTEMPTS:
        delay = _backoff_seconds(message.attempts)
        live.update(
            status=Status.QUEUED,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            last_error=result.error,
            failure_reason=result.failure_reason,
        )
        # The back-off is clock time (next_attempt_at); Celery's countdown waits in wall seconds.
        message_dispatch([message.pk], queue=queue_for(message.purpose), countdown=clock.to_wall(delay))
        return Status.QUEUED
    final = Status.REJECTED if result.outcome == "rejected" else Status.FAILED
    reason = result.failure_reason or ("MaxAttempts" if result.outcome == "retry" else "Rejected")
    with transaction.atomic():
        ended = live.update(status=final, failure_reason=reason, last_error=result.error, delivered_at=now)
        if ended:
            tally_add(message.batch_id, failed=1)
    # After that commit, so that of two workers ending a batch's last notices at once, the later
    # one sees the other's outcome and opens the batch.
    if ended and message.purpose == Purpose.NOTICE and message.batch_id is not None:
        notices_out.send(sender=Message, batch_ids=[message.batch_id])
    return final


def _backend_send(message: Message) -> SendResult:
    try:
        return get_backend().send(recipient=message.recipient, body=message.body, purpose=message.purpose)
    except Exception as exc:
        logger.exception("SMS backend failed on message %s", message.pk)
        return SendResult.retry(f"{exc.__class__.__name__}: {exc}", "BackendError")


def _messages_settle_sent(accepted: Sequence[tuple[Message, SendResult]]) -> int:
    """After a chunk: store the accepted ids, count them, apply reports that beat us to it."""
    if not accepted:
        return 0
    stored = statements.messages_mark_sent(
        accepted=[(message.pk, result) for message, result in accepted], now=clock.now()
    )
    if stored:
        messages_count_sent(ids=stored)
        kept = set(stored)
        provider_ids = [str(result.provider_message_id) for message, result in accepted if message.pk in kept]
        delivery_reports_apply_pending(provider_message_ids=provider_ids)
    return len(stored)


def messages_send(*, ids: Sequence[int], queue: str, time_budget: float | None = None) -> int:
    """Send the given messages: claim a chunk (SMS_CLAIM_CHUNK), send each through the gateway,
    then store the chunk's accepted ids in one statement and count them set-based.

    Crash windows: the results of a chunk are stored in a `finally`, so a soft time limit, an
    exception or a warm shutdown loses nothing. Only a hard kill (SIGKILL, power) between the
    gateway's answer and that statement loses provider ids; those messages stay in 'sending' and
    the sweep adopts the delivery report the gateway sends for their number (messages_reconcile)
    instead of sending them again.

    Stops after `time_budget` seconds and hands the rest back to the queue, so one task never
    outlives Celery's time limit however slow the gateway is.
    """
    budget = settings.SMS_TASK_TIME_BUDGET if time_budget is None else time_budget
    step = max(settings.SMS_CLAIM_CHUNK, 1)
    started = time.monotonic()
    sent = 0
    for index in range(0, len(ids), step):
        if time.monotonic() - started > budget:
            message_dispatch(list(ids[index:]), queue=queue)
            break
        claimed = _quiet_hold(messages_claim(list(ids[index : index + step])))
        accepted: list[tuple[Message, SendResult]] = []
        allowance = 0
        try:
            for position, message in enumerate(claimed):
                if allowance == 0:
                    allowance = acquire_many(len(claimed) - position)
                if allowance == 0:
                    result = SendResult.retry("the send-rate window stayed full", "RateLimited")
                else:
                    allowance -= 1
                    result = _backend_send(message)
                if result.outcome == "sent":
                    accepted.append((message, result))
                else:
                    message_record_failure(message=message, result=result)
        finally:
            sent += _messages_settle_sent(accepted)
    return sent

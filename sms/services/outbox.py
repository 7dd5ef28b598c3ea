"""Writing messages into the outbox and handing their ids to Celery.

A message is written in the caller's business transaction and published only after commit; with
the broker down it simply stays queued and the periodic sweep publishes it later.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from kplc_sts import clock
from kplc_sts.db import sql_value
from meters.models import Meter
from meters.phones import InvalidPhoneNumber, normalize_kenyan_phone

from ..models import Message
from ..quiet import quiet_hours, quiet_hours_end
from ..tallies import tally_add
from ..tasks import send_messages_task

logger = logging.getLogger(__name__)

Status = Message.Status
Purpose = Message.Purpose
# Notices not yet out: a batch with none of these has sent all of its notices.
PENDING_STATUSES = (Status.QUEUED, Status.HELD, Status.SENDING)


def queue_for(purpose: str) -> str:
    """Notices have their own queue so a million of them never delay a customer's codes."""
    return str(settings.SMS_NOTICE_QUEUE if purpose in Message.BULK_PURPOSES else settings.SMS_CODES_QUEUE)


def message_dispatch(ids: Sequence[int], *, queue: str, countdown: float | None = None) -> bool:
    """Hand message ids to Celery. Never raises: with the broker down the messages stay queued
    and the periodic sweep sends them later. No publish retries here (and the broker transport
    gives up after one quick reconnect, see CELERY_BROKER_TRANSPORT_OPTIONS): a vend must not
    wait on a dead Redis."""
    if not ids:
        return True
    try:
        send_messages_task.apply_async(args=[list(ids)], queue=queue, countdown=countdown, retry=False)
    except Exception:
        logger.exception("could not hand %d SMS to the broker (queue %s); the sweep will retry", len(ids), queue)
        return False
    return True


def message_queue(
    *,
    recipient: str,
    body: str,
    purpose: str,
    meter: Meter | None = None,
    batch_id: int | None = None,
    vend_id: int | None = None,
) -> Message:
    """Write a message in the caller's transaction; it goes to Celery only after commit.

    A number that is not a Kenyan mobile number is rejected at once (kept, for care to see).
    """
    if purpose not in Purpose.values:
        raise ValueError(f"unknown SMS purpose {purpose!r}")
    try:
        number = normalize_kenyan_phone(recipient)
    except InvalidPhoneNumber:
        number = None
    message = Message.objects.create(
        recipient=(number or recipient or "")[:16],
        body=body,
        purpose=purpose,
        status=Status.QUEUED if number else Status.REJECTED,
        failure_reason="" if number else "InvalidPhoneNumber",
        delivered_at=None if number else clock.now(),
        meter=meter,
        batch_id=batch_id,
        vend_id=vend_id,
    )
    if number is None:
        tally_add(batch_id, failed=1)
        return message
    transaction.on_commit(lambda: message_dispatch([message.pk], queue=queue_for(purpose)))
    return message


def messages_queue_many(
    *, rows: Sequence[tuple[str, str, int | None, int | None]], purpose: str, queue: str | None = None
) -> list[int]:
    """Write many messages at once in the caller's transaction: rows of (recipient, body, meter_id,
    batch_id). Published after commit in chunks, on `queue` (default: the purpose's); a purpose in
    `Message.QUIET_PURPOSES` written in quiet hours waits, queued, for the morning (the sweep sends
    it then). Numbers that are not Kenyan mobiles are rejected at once, as message_queue does.
    Returns the ids of the queued messages."""
    if purpose not in Purpose.values:
        raise ValueError(f"unknown SMS purpose {purpose!r}")
    now = clock.now()
    hold_until = quiet_hours_end(now) if purpose in Message.QUIET_PURPOSES and quiet_hours(now) else None
    messages = []
    for recipient, body, meter_id, batch_id in rows:
        try:
            number: str | None = normalize_kenyan_phone(recipient)
        except InvalidPhoneNumber:
            number = None
        messages.append(
            Message(
                recipient=(number or recipient or "")[:16],
                body=body,
                purpose=purpose,
                status=Status.QUEUED if number else Status.REJECTED,
                failure_reason="" if number else "InvalidPhoneNumber",
                delivered_at=None if number else now,
                next_attempt_at=hold_until if number else None,
                meter_id=meter_id,
                batch_id=batch_id,
                created_at=now,
            )
        )
    created = Message.objects.bulk_create(messages, batch_size=1000)
    for message in created:
        if message.status == Status.REJECTED:
            tally_add(message.batch_id, failed=1)
    ids = [message.pk for message in created if message.status == Status.QUEUED]
    if ids and hold_until is None:
        target = queue or queue_for(purpose)
        chunk = settings.SMS_DISPATCH_CHUNK

        def publish() -> None:
            for start in range(0, len(ids), chunk):
                message_dispatch(ids[start : start + chunk], queue=target)

        transaction.on_commit(publish)
    return ids


# --- A batch's notices --------------------------------------------------------------------------


def notices_insert_from(
    *,
    rows_sql: str,
    rows_params: Sequence[Any],
    at: dt.datetime,
    with_sql: str = "",
    with_params: Sequence[Any] = (),
) -> int:
    """Write one queued notice per row of `rows_sql` (columns: recipient, body, meter_id, batch_id)
    in one INSERT ... SELECT; `with_sql` is a WITH clause the SELECT may use. Returns the rows.

    The WITH goes inside the INSERT: SQLite reports no rowcount for a statement starting with WITH.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Message._meta.db_table} "  # noqa: S608 - table name from the model, values bound
            "(recipient, body, meter_id, batch_id, purpose, status, attempts, last_error, failure_reason, "
            f"currency, sent_counted, created_at) {with_sql}"
            f"SELECT r.*, %s, %s, 0, '', '', '', %s, %s FROM ({rows_sql}) r",
            [*with_params, Purpose.NOTICE, Status.QUEUED, False, sql_value(at), *rows_params],
        )
        return int(cursor.rowcount)


def notices_dispatch(*, batch_id: int, chunk: int | None = None) -> int:
    """Publish a batch's queued notices in chunks of ids (keyset pages, never one huge list)."""
    chunk = chunk or settings.SMS_DISPATCH_CHUNK
    queued = Message.objects.filter(batch_id=batch_id, purpose=Purpose.NOTICE, status=Status.QUEUED)
    last_id, total = 0, 0
    while True:
        ids = list(queued.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:chunk])
        if not ids:
            return total
        message_dispatch(ids, queue=settings.SMS_NOTICE_QUEUE)
        total += len(ids)
        last_id = ids[-1]


def notices_hold(*, batch_id: int) -> int:
    """Hold the batch's queued notices (its batch is paused): no worker claims a held message.
    A notice already claimed finishes, retries included."""
    return Message.objects.filter(batch_id=batch_id, purpose=Purpose.NOTICE, status=Status.QUEUED).update(
        status=Status.HELD
    )


def notices_release(*, batch_id: int) -> int:
    """Queue the batch's held notices again and publish them after commit."""
    released = Message.objects.filter(batch_id=batch_id, purpose=Purpose.NOTICE, status=Status.HELD).update(
        status=Status.QUEUED
    )
    transaction.on_commit(lambda: notices_dispatch(batch_id=batch_id))
    return released


def notices_cancel(*, batch_id: int, reason: str) -> int:
    """Cancel the batch's notices not sent yet (queued or held)."""
    return Message.objects.filter(
        batch_id=batch_id, purpose=Purpose.NOTICE, status__in=[Status.QUEUED, Status.HELD]
    ).update(status=Status.CANCELLED, failure_reason=reason[:64], delivered_at=clock.now())


def batches_with_notices_pending(*, batch_ids: Sequence[int]) -> set[int]:
    """Which of these batches still have notices queued, held or being sent: one EXISTS per batch,
    which stops at the first such notice (a DISTINCT over the batch read every one of them)."""
    notices = Message.objects.filter(purpose=Purpose.NOTICE, status__in=PENDING_STATUSES)
    return {batch_id for batch_id in sorted(set(batch_ids)) if notices.filter(batch_id=batch_id).exists()}

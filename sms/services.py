"""The SMS outbox: queue in the business transaction, send from Celery, settle on delivery reports.

Life of a message: queued -> sending (claimed by exactly one worker with a conditional UPDATE)
-> sent (gateway accepted) -> delivered / failed / rejected (delivery report). A transient gateway
failure puts it back to queued with a later next_attempt_at (exponential backoff, capped, at most
SMS_MAX_ATTEMPTS); permanent ones (invalid or blacklisted number) end as rejected at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from meters.phones import InvalidPhoneNumber, normalize_kenyan_phone

from .backends import SendResult, get_backend
from .models import DeliveryReport, Message
from .ratelimit import acquire

logger = logging.getLogger(__name__)

Status = Message.Status
Purpose = Message.Purpose
SENDABLE_BATCH_STATUSES = ("notifying", "open", "closed")
REPORT_STATUS = {"Success": Status.DELIVERED, "Failed": Status.FAILED, "Rejected": Status.REJECTED}


def queue_for(purpose: str) -> str:
    """Notices have their own queue so a million of them never delay a customer's codes."""
    return settings.SMS_NOTICE_QUEUE if purpose == Purpose.NOTICE else settings.SMS_CODES_QUEUE


def _batch_counters(batch_id: int | None, **deltas: int) -> None:
    if batch_id is not None:
        from campaigns.services import batch_messages_counted

        batch_messages_counted(batch_id=batch_id, **deltas)


# --- queueing and dispatch -------------------------------------------------------------------


def message_dispatch(ids: Sequence[int], *, queue: str, countdown: float | None = None) -> bool:
    """Hand message ids to Celery. Never raises: with the broker down the messages stay queued
    and the periodic sweep sends them later."""
    from .tasks import send_messages

    if not ids:
        return True
    try:
        send_messages.apply_async(args=[list(ids)], queue=queue, countdown=countdown)
    except Exception:  # noqa: BLE001 - any broker failure; the rows are safe in the outbox
        logger.exception("could not hand %d SMS to the broker (queue %s); the sweep will retry", len(ids), queue)
        return False
    return True


def message_queue(
    *,
    recipient: str,
    body: str,
    purpose: str,
    meter: Any = None,
    batch: Any = None,
    vend_id: int | None = None,
) -> Message:
    """Write a message in the caller's transaction; it goes to Celery only after commit."""
    if purpose not in Purpose.values:
        raise ValueError(f"unknown SMS purpose {purpose!r}")
    try:
        number = normalize_kenyan_phone(recipient)
    except InvalidPhoneNumber:
        number = None
    batch_id = getattr(batch, "pk", batch)
    message = Message.objects.create(
        recipient=(number or recipient or "")[:16],
        body=body,
        purpose=purpose,
        status=Status.QUEUED if number else Status.REJECTED,
        failure_reason="" if number else "InvalidPhoneNumber",
        delivered_at=None if number else timezone.now(),
        meter=meter,
        batch_id=batch_id,
        vend_id=vend_id,
    )
    if number is None:
        _batch_counters(batch_id, failed=1)
        return message
    transaction.on_commit(lambda: message_dispatch([message.pk], queue=queue_for(purpose)))
    return message


def message_dispatch_batch(*, batch_id: int, chunk: int | None = None) -> int:
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


# --- sending ---------------------------------------------------------------------------------


def messages_claim(message_ids: Sequence[int], *, now: dt.datetime | None = None) -> list[Message]:
    """Compare-and-set queued -> sending. Skips messages another worker has, that are not due yet,
    or that are notices of a paused or cancelled batch."""
    from campaigns.models import Batch

    if not message_ids:
        return []
    now = now or timezone.now()
    table, batch_table = Message._meta.db_table, Batch._meta.db_table
    statuses = ", ".join(["%s"] * len(SENDABLE_BATCH_STATUSES))
    id_list = ", ".join(["%s"] * len(message_ids))
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, claimed_at = %s, attempts = attempts + 1 "  # noqa: S608
            f"WHERE id IN ({id_list}) AND status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s) "
            f"AND (purpose <> %s OR batch_id IS NULL OR EXISTS (SELECT 1 FROM {batch_table} b "
            f"WHERE b.id = {table}.batch_id AND b.status IN ({statuses}))) "
            "RETURNING id, recipient, body, purpose, attempts, batch_id, meter_id",
            [
                Status.SENDING,
                adapt(now),
                *message_ids,
                Status.QUEUED,
                adapt(now),
                Purpose.NOTICE,
                *SENDABLE_BATCH_STATUSES,
            ],
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


def message_claim(message_id: int, *, now: dt.datetime | None = None) -> Message | None:
    claimed = messages_claim([message_id], now=now)
    return claimed[0] if claimed else None


def messages_count_sent(*, ids: Sequence[int]) -> int:
    """Bump counters and notify enrollments for sent messages not counted yet (set-based, once)."""
    if not ids:
        return 0
    from campaigns.services import notices_sent

    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update()
            .filter(pk__in=ids, sent_counted=False, sent_at__isnull=False)
            .values_list("pk", "batch_id", "meter_id", "purpose", "sent_at")
        )
        if not rows:
            return 0
        notices: dict[int, list[int]] = {}
        others: dict[int, int] = {}
        for _, batch_id, meter_id, purpose, _ in rows:
            if batch_id is None:
                continue
            if purpose == Purpose.NOTICE:
                notices.setdefault(batch_id, []).append(meter_id)
            else:
                others[batch_id] = others.get(batch_id, 0) + 1
        at = max(row[4] for row in rows)
        for batch_id, meter_ids in sorted(notices.items()):
            notices_sent(batch_id=batch_id, meter_ids=meter_ids, at=at)
        for batch_id, count in sorted(others.items()):
            _batch_counters(batch_id, sent=count)
        Message.objects.filter(pk__in=[row[0] for row in rows]).update(sent_counted=True)
    return len(rows)


def _backoff_seconds(attempts: int) -> float:
    base = settings.SMS_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return min(base, settings.SMS_RETRY_MAX_SECONDS) * random.uniform(0.8, 1.0)  # jitter: no herd


def _mark_sent(message: Message, result: SendResult, now: dt.datetime) -> int:
    return Message.objects.filter(pk=message.pk, status__in=[Status.SENDING, Status.QUEUED]).update(
        status=Status.SENT,
        provider_message_id=result.provider_message_id,
        cost=result.cost,
        currency=result.currency,
        sent_at=now,
        last_error="",
    )


def message_record_result(*, message: Message, result: SendResult, now: dt.datetime | None = None) -> str:
    """Store what the gateway said; returns the message's new status."""
    now = now or timezone.now()
    live = Message.objects.filter(pk=message.pk, status__in=[Status.SENDING, Status.QUEUED])
    if result.outcome == "sent":
        with transaction.atomic():
            updated = _mark_sent(message, result, now)
            if updated:
                messages_count_sent(ids=[message.pk])
        if (
            updated
            and DeliveryReport.objects.filter(
                provider_message_id=result.provider_message_id, applied_at__isnull=True
            ).exists()
        ):
            delivery_reports_apply_pending(provider_message_id=result.provider_message_id)
        return Status.SENT
    if result.outcome == "retry" and message.attempts < settings.SMS_MAX_ATTEMPTS:
        delay = _backoff_seconds(message.attempts)
        live.update(
            status=Status.QUEUED,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            last_error=result.error,
            failure_reason=result.failure_reason,
        )
        message_dispatch([message.pk], queue=queue_for(message.purpose), countdown=delay)
        return Status.QUEUED
    final = Status.REJECTED if result.outcome == "rejected" else Status.FAILED
    reason = result.failure_reason or ("MaxAttempts" if result.outcome == "retry" else "Rejected")
    with transaction.atomic():
        updated = live.update(status=final, failure_reason=reason, last_error=result.error, delivered_at=now)
        if updated:
            _batch_counters(message.batch_id, failed=1)
    return final


def message_send(message_id: int) -> str | None:
    """Claim one message, send it through the configured backend, store the outcome."""
    message = message_claim(message_id)
    if message is None:
        return None
    return message_record_result(message=message, result=_send_claimed(message))


def _send_claimed(message: Message) -> SendResult:
    if not acquire():
        return SendResult.retry("the send-rate window stayed full", "RateLimited")
    try:
        return get_backend().send(recipient=message.recipient, body=message.body, purpose=message.purpose)
    except Exception as exc:  # noqa: BLE001 - a backend bug must not leave the row in 'sending'
        logger.exception("SMS backend failed on message %s", message.pk)
        return SendResult.retry(f"{exc.__class__.__name__}: {exc}", "BackendError")


def messages_send(*, ids: Sequence[int], queue: str, time_budget: float | None = None) -> int:
    """Send the given messages: claim a few at a time, store each gateway answer as soon as it
    arrives (so a killed worker can have at most the one in-flight message sent twice), and count
    them set-based per handful.

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
        to_count = []
        for message in messages_claim(list(ids[index : index + step])):
            result = _send_claimed(message)
            now = timezone.now()
            if result.outcome == "sent":
                if _mark_sent(message, result, now):
                    to_count.append(message.pk)
                    sent += 1
            else:
                message_record_result(message=message, result=result, now=now)
        if to_count:
            messages_count_sent(ids=to_count)
            provider_ids = list(
                DeliveryReport.objects.filter(
                    applied_at__isnull=True,
                    provider_message_id__in=Message.objects.filter(pk__in=to_count).values("provider_message_id"),
                ).values_list("provider_message_id", flat=True)
            )
            for provider_id in provider_ids:
                delivery_reports_apply_pending(provider_message_id=provider_id)
    return sent


# --- delivery reports ------------------------------------------------------------------------


def delivery_report_receive(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str = "",
    phone_number: str = "",
    network_code: str = "",
    retry_count: int | None = None,
) -> DeliveryReport:
    """Store a report (idempotent on the provider id) and apply it if it is final."""
    with transaction.atomic():
        report, created = DeliveryReport.objects.select_for_update().get_or_create(
            provider_message_id=provider_message_id[:64],
            defaults={
                "status": status[:16],
                "failure_reason": failure_reason[:64],
                "phone_number": phone_number[:16],
                "network_code": network_code[:8],
                "retry_count": retry_count,
            },
        )
        if not created and report.status not in REPORT_STATUS and status in REPORT_STATUS:
            # An intermediate report (Sent, Buffered...) followed by the final one.
            report.status, report.failure_reason, report.applied_at = status[:16], failure_reason[:64], None
            report.save(update_fields=["status", "failure_reason", "applied_at"])
    if report.status in REPORT_STATUS and report.applied_at is None:
        delivery_reports_apply_pending(provider_message_id=report.provider_message_id)
    return report


def delivery_reports_apply_pending(*, provider_message_id: str | None = None, limit: int = 5000) -> int:
    """Apply final reports to their messages (those whose message id is known by now)."""
    pending = DeliveryReport.objects.filter(applied_at__isnull=True, status__in=list(REPORT_STATUS))
    if provider_message_id is not None:
        pending = pending.filter(provider_message_id=provider_message_id)
    applied = 0
    for report in pending.order_by("pk")[:limit]:
        with transaction.atomic():
            message = (
                Message.objects.select_for_update()
                .filter(provider_message_id=report.provider_message_id)
                .only("pk", "status", "batch_id")
                .first()
            )
            if message is None:
                continue  # the worker has not stored the id yet; the sweep tries again
            final = REPORT_STATUS[report.status]
            if message.status in (Status.SENDING, Status.SENT, Status.QUEUED):
                Message.objects.filter(pk=message.pk).update(
                    status=final,
                    failure_reason=report.failure_reason if final != Status.DELIVERED else "",
                    delivered_at=timezone.now(),
                )
                if final == Status.DELIVERED:
                    _batch_counters(message.batch_id, delivered=1)
                else:
                    _batch_counters(message.batch_id, failed=1)
            DeliveryReport.objects.filter(pk=report.pk).update(applied_at=timezone.now())
            applied += 1
    return applied


# --- the periodic sweep ----------------------------------------------------------------------


def _broker_queue_length(queue: str) -> int:
    """Tasks waiting in the broker queue (0 when tasks run eagerly or the broker is down)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return 0
    from kplc_sts.celery import app

    try:
        with app.connection_for_read() as conn:
            client = getattr(conn.default_channel, "client", None)
            return int(client.llen(queue)) if client is not None else 0
    except Exception:  # noqa: BLE001
        logger.warning("could not read the length of broker queue %s", queue)
        return 0


def messages_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Recover from crashes and broker outages. Safe to run any number of times, anywhere.

    - messages stuck in 'sending' longer than SMS_SENDING_STALE_SECONDS (a worker died mid-send)
      go back to queued;
    - final delivery reports that arrived before their message id was stored are applied;
    - when a queue has drained, due queued messages (lost tasks, retries, broker outages) are
      published again; claiming makes a second task for the same message harmless.
    """
    now = now or timezone.now()
    stale_before = now - dt.timedelta(seconds=settings.SMS_SENDING_STALE_SECONDS)
    requeued = Message.objects.filter(status=Status.SENDING, claimed_at__lt=stale_before).update(
        status=Status.QUEUED, next_attempt_at=now, last_error="requeued by the sweep: the worker was lost mid-send"
    )
    if requeued:
        logger.warning("sweep: %d SMS were stuck in 'sending' and are queued again", requeued)
    uncounted = list(
        Message.objects.filter(sent_counted=False, sent_at__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)[: settings.SMS_SWEEP_LIMIT]
    )
    for start in range(0, len(uncounted), 1000):
        messages_count_sent(ids=uncounted[start : start + 1000])
    reports = delivery_reports_apply_pending()
    due = (
        Message.objects.filter(status=Status.QUEUED, created_at__lt=now - dt.timedelta(seconds=2))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(~Q(purpose=Purpose.NOTICE) | Q(batch__isnull=True) | Q(batch__status__in=SENDABLE_BATCH_STATUSES))
    )
    dispatched = 0
    for queue, purposes in (
        (settings.SMS_CODES_QUEUE, [p for p in Purpose.values if p != Purpose.NOTICE]),
        (settings.SMS_NOTICE_QUEUE, [Purpose.NOTICE]),
    ):
        if _broker_queue_length(queue) > 0:
            continue  # workers are still busy with this queue; its messages have tasks
        ids = list(
            due.filter(purpose__in=purposes).order_by("pk").values_list("pk", flat=True)[: settings.SMS_SWEEP_LIMIT]
        )
        for start in range(0, len(ids), settings.SMS_DISPATCH_CHUNK):
            message_dispatch(ids[start : start + settings.SMS_DISPATCH_CHUNK], queue=queue)
        dispatched += len(ids)
    from campaigns.services import batches_open_finished

    opened = batches_open_finished()
    return {"requeued": requeued, "reports": reports, "dispatched": dispatched, "batches_opened": opened}

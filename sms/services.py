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
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from meters.phones import InvalidPhoneNumber, normalize_kenyan_phone

from .backends import SendResult, get_backend
from .models import DeliveryReport, Message
from .ratelimit import acquire, acquire_many

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
    and the periodic sweep sends them later. No publish retries here (and the broker transport
    gives up after one quick reconnect, see CELERY_BROKER_TRANSPORT_OPTIONS): a vend must not
    wait on a dead Redis."""
    from .tasks import send_messages

    if not ids:
        return True
    try:
        send_messages.apply_async(args=[list(ids)], queue=queue, countdown=countdown, retry=False)
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


def _backend_send(message: Message) -> SendResult:
    try:
        return get_backend().send(recipient=message.recipient, body=message.body, purpose=message.purpose)
    except Exception as exc:  # noqa: BLE001 - a backend bug must not leave the row in 'sending'
        logger.exception("SMS backend failed on message %s", message.pk)
        return SendResult.retry(f"{exc.__class__.__name__}: {exc}", "BackendError")


def _send_claimed(message: Message) -> SendResult:
    if not acquire():
        return SendResult.retry("the send-rate window stayed full", "RateLimited")
    return _backend_send(message)


def _messages_mark_sent(accepted: Sequence[tuple[Message, SendResult]], now: dt.datetime) -> list[int]:
    """Store what the gateway accepted, one UPDATE ... FROM (VALUES ...) for the lot."""
    if not accepted:
        return []
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return [message.pk for message, result in accepted if _mark_sent(message, result, now)]
    table = Message._meta.db_table
    values = ", ".join(["(%s::bigint, %s::varchar, %s::numeric, %s::varchar)"] * len(accepted))
    params: list[Any] = []
    for message, result in accepted:
        params += [message.pk, result.provider_message_id, result.cost, result.currency or ""]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS m SET status = %s, provider_message_id = v.pid, cost = v.cost, "  # noqa: S608
            "currency = v.currency, sent_at = %s, last_error = '' "
            f"FROM (VALUES {values}) AS v (id, pid, cost, currency) "
            "WHERE m.id = v.id AND m.status IN (%s, %s) RETURNING m.id",
            [Status.SENT, connection.ops.adapt_datetimefield_value(now), *params, Status.SENDING, Status.QUEUED],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _messages_settle_sent(accepted: Sequence[tuple[Message, SendResult]]) -> int:
    """After a chunk: store the accepted ids, count them, apply reports that beat us to it."""
    stored = _messages_mark_sent(accepted, timezone.now())
    if stored:
        messages_count_sent(ids=stored)
        provider_ids = [result.provider_message_id for message, result in accepted if message.pk in set(stored)]
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
        claimed = messages_claim(list(ids[index : index + step]))
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
                    message_record_result(message=message, result=result)
        finally:
            sent += _messages_settle_sent(accepted)
    return sent


# --- delivery reports ------------------------------------------------------------------------


def _report_receive_postgresql(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str,
    phone_number: str,
    network_code: str,
    retry_count: int | None,
) -> None:
    """The whole report in one statement: store it (idempotent on the provider id), settle its
    message if the id is known, bump the batch and campaign counters. At hundreds of reports a
    second the endpoint must cost one round trip, not a dozen."""
    from campaigns.models import Batch, Campaign

    final = REPORT_STATUS.get(status)
    message_table, report_table = Message._meta.db_table, DeliveryReport._meta.db_table
    finals = list(REPORT_STATUS)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    report_values = [provider_message_id, status, failure_reason, phone_number, network_code, retry_count, now]
    with connection.cursor() as cursor:
        if final is None:
            # An intermediate report (Sent, Submitted, Buffered): kept as evidence the gateway took
            # the message (the sweep's reconciliation reads it), nothing to settle.
            cursor.execute(
                f"INSERT INTO {report_table} (provider_message_id, status, failure_reason, phone_number, "  # noqa: S608
                "network_code, retry_count, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (provider_message_id) DO NOTHING",
                report_values,
            )
            return
        column = "messages_delivered" if final == Status.DELIVERED else "messages_failed"
        cursor.execute(
            f"WITH known AS (SELECT 1 FROM {message_table} WHERE provider_message_id = %s), "  # noqa: S608
            f"settled AS (UPDATE {message_table} SET status = %s, failure_reason = %s, delivered_at = %s "
            "WHERE provider_message_id = %s AND status IN (%s, %s, %s) RETURNING batch_id), "
            f"report AS (INSERT INTO {report_table} (provider_message_id, status, failure_reason, phone_number, "
            "network_code, retry_count, received_at, applied_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN EXISTS (SELECT 1 FROM known) THEN %s::timestamptz END) "
            "ON CONFLICT (provider_message_id) DO UPDATE SET status = EXCLUDED.status, "
            "failure_reason = EXCLUDED.failure_reason, applied_at = EXCLUDED.applied_at "
            f"WHERE {report_table}.status NOT IN (%s, %s, %s) RETURNING 1), "
            f"batch AS (UPDATE {Batch._meta.db_table} SET {column} = {column} + 1 "
            "WHERE id IN (SELECT batch_id FROM settled) RETURNING campaign_id) "
            f"UPDATE {Campaign._meta.db_table} SET {column} = {column} + 1 "
            "WHERE id IN (SELECT campaign_id FROM batch)",
            [
                provider_message_id,
                final,
                "" if final == Status.DELIVERED else failure_reason,
                now,
                provider_message_id,
                Status.SENDING,
                Status.SENT,
                Status.QUEUED,
                *report_values,
                now,
                *finals,
            ],
        )


def delivery_report_receive(
    *,
    provider_message_id: str,
    status: str,
    failure_reason: str = "",
    phone_number: str = "",
    network_code: str = "",
    retry_count: int | None = None,
) -> None:
    """Store a report (idempotent on the provider id) and apply it if it is final."""
    values = {
        "provider_message_id": provider_message_id[:64],
        "status": status[:16],
        "failure_reason": failure_reason[:64],
        "phone_number": phone_number[:16],
        "network_code": network_code[:8],
        "retry_count": retry_count,
    }
    if connection.vendor == "postgresql":
        _report_receive_postgresql(**values)
        return
    with transaction.atomic():
        report, created = DeliveryReport.objects.select_for_update().get_or_create(
            provider_message_id=values.pop("provider_message_id"), defaults=values
        )
        if not created and report.status not in REPORT_STATUS and status in REPORT_STATUS:
            # An intermediate report (Sent, Buffered...) followed by the final one.
            report.status, report.failure_reason, report.applied_at = status[:16], failure_reason[:64], None
            report.save(update_fields=["status", "failure_reason", "applied_at"])
    if report.status in REPORT_STATUS and report.applied_at is None:
        delivery_reports_apply_pending(provider_message_ids=[report.provider_message_id])


def _reports_apply_postgresql(provider_message_ids: Sequence[str] | None, limit: int) -> int:
    """Set-based: settle the messages of final reports whose message id is known by now."""
    message_table, report_table = Message._meta.db_table, DeliveryReport._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    only = "AND d.provider_message_id = ANY(%s) " if provider_message_ids is not None else ""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "WITH r AS (SELECT d.id, d.provider_message_id, d.status, d.failure_reason "  # noqa: S608
            f"FROM {report_table} d WHERE d.applied_at IS NULL AND d.status IN (%s, %s, %s) {only}"
            f"AND EXISTS (SELECT 1 FROM {message_table} x WHERE x.provider_message_id = d.provider_message_id) "
            "ORDER BY d.id LIMIT %s FOR UPDATE OF d SKIP LOCKED), "
            f"settled AS (UPDATE {message_table} m SET "
            "status = CASE r.status WHEN %s THEN %s WHEN %s THEN %s ELSE %s END, "
            "failure_reason = CASE WHEN r.status = %s THEN '' ELSE r.failure_reason END, delivered_at = %s "
            "FROM r WHERE m.provider_message_id = r.provider_message_id AND m.status IN (%s, %s, %s) "
            "RETURNING m.batch_id, m.status), "
            f"applied AS (UPDATE {report_table} d SET applied_at = %s FROM r WHERE d.id = r.id RETURNING 1) "
            "SELECT batch_id, status, COUNT(*) FROM settled GROUP BY batch_id, status "
            "UNION ALL SELECT NULL, 'applied', COUNT(*) FROM applied",
            [
                *REPORT_STATUS,
                *([list(provider_message_ids)] if provider_message_ids is not None else []),
                limit,
                "Success",
                Status.DELIVERED,
                "Failed",
                Status.FAILED,
                Status.REJECTED,
                "Success",
                now,
                Status.SENDING,
                Status.SENT,
                Status.QUEUED,
                now,
            ],
        )
        rows = cursor.fetchall()
        applied = 0
        for batch_id, status, count in sorted(rows, key=lambda row: (row[0] is None, row[0] or 0, row[1])):
            if status == "applied":
                applied = count
            elif status == Status.DELIVERED:
                _batch_counters(batch_id, delivered=count)
            else:
                _batch_counters(batch_id, failed=count)
    return applied


def delivery_reports_apply_pending(
    *, provider_message_ids: Sequence[str] | None = None, provider_message_id: str | None = None, limit: int = 5000
) -> int:
    """Apply final reports to their messages (those whose message id is known by now)."""
    if provider_message_id is not None:
        provider_message_ids = [provider_message_id]
    if provider_message_ids is not None and not provider_message_ids:
        return 0
    if connection.vendor == "postgresql":
        return _reports_apply_postgresql(provider_message_ids, limit)
    pending = DeliveryReport.objects.filter(applied_at__isnull=True, status__in=list(REPORT_STATUS))
    if provider_message_ids is not None:
        pending = pending.filter(provider_message_id__in=list(provider_message_ids))
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


def messages_reconcile(*, now: dt.datetime | None = None) -> int:
    """Adopt the delivery reports of messages a lost worker sent but never recorded.

    Africa's Talking has no idempotency key, so re-sending a message stuck in 'sending' would
    send it twice if the gateway took it before the worker died. The gateway reports on every
    message it took, with the recipient's number; a report nobody claimed (its id is on no
    message), for the number of a stuck message, received after that message was claimed, is
    that message's. Pairs are made per number in time order, so two stuck messages to one number
    take two reports. Returns the number of messages adopted (now sent, and settled if final).
    """
    now = now or timezone.now()
    stale_before = now - dt.timedelta(seconds=settings.SMS_SENDING_STALE_SECONDS)
    stuck = list(
        Message.objects.filter(status=Status.SENDING, claimed_at__lt=stale_before)
        .order_by("claimed_at", "pk")
        .values_list("pk", "recipient", "claimed_at")[: settings.SMS_SWEEP_LIMIT]
    )
    if not stuck:
        return 0
    orphans = (
        DeliveryReport.objects.filter(
            applied_at__isnull=True,
            phone_number__in=sorted({recipient for _, recipient, _ in stuck}),
            received_at__gte=min(claimed_at for _, _, claimed_at in stuck),
        )
        .filter(~Exists(Message.objects.filter(provider_message_id=OuterRef("provider_message_id"))))
        .order_by("received_at", "pk")
        .values_list("provider_message_id", "phone_number", "received_at")
    )
    reports: dict[str, list[tuple[str, dt.datetime]]] = {}
    for provider_id, phone, received_at in orphans:
        reports.setdefault(phone, []).append((provider_id, received_at))
    adopted: list[int] = []
    adopted_ids: list[str] = []
    for pk, recipient, claimed_at in stuck:
        candidates = reports.get(recipient) or []
        while candidates and candidates[0][1] < claimed_at:
            candidates.pop(0)  # before this claim: not this send (an earlier, recorded, attempt)
        if not candidates:
            continue
        provider_id, received_at = candidates.pop(0)
        # Conditional: a worker that was only slow, not dead, may have stored it meanwhile.
        if Message.objects.filter(pk=pk, status=Status.SENDING).update(
            status=Status.SENT,
            provider_message_id=provider_id,
            sent_at=received_at,
            last_error="adopted by the sweep: the gateway reported on it after its worker was lost",
        ):
            adopted.append(pk)
            adopted_ids.append(provider_id)
    if adopted:
        logger.warning("sweep: %d SMS stuck in 'sending' were taken by the gateway; not sending again", len(adopted))
        messages_count_sent(ids=adopted)
        delivery_reports_apply_pending(provider_message_ids=adopted_ids)
    return len(adopted)


def messages_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Recover from crashes and broker outages. Safe to run any number of times, anywhere.

    - messages stuck in 'sending' longer than SMS_SENDING_STALE_SECONDS (a worker died mid-send)
      whose number has an unclaimed delivery report since their claim are adopted (the gateway
      took them: messages_reconcile); those without one after SMS_DLR_GRACE_SECONDS go back to
      queued and are sent again;
    - final delivery reports that arrived before their message id was stored are applied;
    - when a queue has drained, due queued messages (lost tasks, retries, broker outages) are
      published again; claiming makes a second task for the same message harmless.
    """
    now = now or timezone.now()
    adopted = messages_reconcile(now=now)
    wait = max(settings.SMS_SENDING_STALE_SECONDS, settings.SMS_DLR_GRACE_SECONDS)
    requeued = Message.objects.filter(status=Status.SENDING, claimed_at__lt=now - dt.timedelta(seconds=wait)).update(
        status=Status.QUEUED, next_attempt_at=now, last_error="requeued by the sweep: the worker was lost mid-send"
    )
    if requeued:
        logger.warning("sweep: %d SMS were stuck in 'sending' with no report from the gateway; queued again", requeued)
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
    return {
        "adopted": adopted,
        "requeued": requeued,
        "reports": reports,
        "dispatched": dispatched,
        "batches_opened": opened,
    }
